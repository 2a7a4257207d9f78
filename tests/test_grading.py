"""The grader is tested: outcomes from the grader's own probe path, judged as it judges them.

Here a notebook's answer cells are executed in this process and each question's tests run
through ``probe.probe_question`` -- the forked, time-limited, policy-enforcing child that
both ``check()`` and the grader's sandboxed runner use -- and are judged against the
grader's expected values. Whole notebooks through the sandboxed runner (cell magics, hangs,
attacks on the grader, a modified environment) are in test_grading_notebooks.py.
"""

from __future__ import annotations

import json

import nbformat
import pytest
import torch
from grading_fixtures import (
    ASSIGNMENT,
    SOLUTION,
    VARIANTS,
    definitions,
    solution,
    student,
    with_bug,
)

from course_utils import assign, grade
from course_utils.grading import Checker, RuleOptimizer, load_assignment, surface_update
from course_utils.grading.core import judge
from course_utils.grading.notebook import answers
from course_utils.grading.policy import policy_problems
from course_utils.grading.probe import OUTPUT_CAP, probe_question, run_question

A1 = load_assignment("01_optimizers")




def grade_in_process(nb, seed: int = grade.GRADE_SEED, namespace=None, fork: bool = True):
    """What the grader does with a notebook's names: a probe child per question, then judge.

    ``fork=False`` runs the child's function (``run_question``: policy check, then the
    cases) in this process, without the fork and the run-time block -- four times faster,
    for the many wrong answers, whose point is the cases and comparisons.
    """
    namespace = namespace if namespace is not None else definitions(nb)
    cases = grade.prepared_cases(A1, seed)
    results = {}
    for q in A1.questions:
        if q.manual:
            continue
        # Fresh cases for the child, as in the grader's runner: no expected value in them.
        report = probe_question(namespace, q, q.cases(seed), timeout=60) if fork else \
            run_question(namespace, q, q.cases(seed), enforce=False)
        results[q.id] = judge(q, cases[q.id], report["outcomes"], note=report["note"])
        results[q.id].output = report["output"]
    return results


@pytest.fixture(scope="module")
def solution_results():
    return grade_in_process(solution())


def test_solution_scores_full_marks(solution_results):
    for result in solution_results.values():
        assert result.score == result.points, result.feedback()
        assert result.status == "passed"


def test_student_notebook_scores_zero_and_says_not_answered():
    results = grade_in_process(student())
    for result in results.values():
        assert result.score == 0
        assert result.status == "not answered", result.feedback()
        assert "not written yet" in result.feedback()


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_wrong_answer_loses_marks_only_on_its_question(variant):
    results = grade_in_process(with_bug(solution(), variant), fork=False)
    broken = results[variant.breaks]
    assert broken.score < broken.points, f"{variant.name} was not caught"
    feedback = broken.feedback()
    assert "Traceback" not in feedback
    assert any(word in feedback for word in ("expected", "raised", "must return",
                                             "policy", "should")), feedback
    for qid, result in results.items():
        if qid != variant.breaks:
            assert result.score == result.points, f"{variant.name} also broke {qid}"


def test_there_are_enough_wrong_answers_for_every_question():
    assert len(VARIANTS) >= 12
    assert {v.breaks for v in VARIANTS} == {q.id for q in A1.questions if not q.manual}


# --------------------------------------------------------------------------------------
# Edge values, kinds of values, policy
# --------------------------------------------------------------------------------------

def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def test_rmsprop_without_eps_loses_marks_on_zero_gradients():
    q3 = grade_in_process(with_bug(solution(), _variant("rmsprop without eps")))["q3"]
    failed = [c for c in q3.cases if not c.passed]
    assert q3.score <= q3.points - 4, q3.feedback()  # the zero-gradient case weighs
    assert any("exactly 0" in c.label and "nan" in c.message for c in failed), q3.feedback()
    assert any("(8, 3, 3, 3), 200 steps" in c.label for c in failed)  # 4-D, a long run


def test_wrong_kinds_of_values_say_what_was_expected():
    q5 = grade_in_process(with_bug(solution(), _variant("step decay returns a string")))["q5"]
    assert q5.score <= q5.points / 2
    assert "should return a real number (a Python float), got str '0." in q5.feedback()
    q5 = grade_in_process(with_bug(solution(), _variant("warm-up cosine returns a tensor")))["q5"]
    assert "got Tensor" in q5.feedback() and ".item()" in q5.feedback()
    q4 = grade_in_process(with_bug(solution(), _variant("adam returns float64 parameters")))["q4"]
    assert q4.score == 0 and "dtype torch.float64, expected torch.float32" in q4.feedback()


def test_library_optimizers_in_an_answer_score_zero_with_the_policy_message():
    delegate = _variant("adam delegates to torch.optim.Adam")
    q4 = grade_in_process(with_bug(solution(), delegate))["q4"]
    assert q4.score == 0
    assert "Grading policy" in q4.feedback() and "torch.optim" in q4.feedback()
    helper = _variant("step decay through a helper that uses StepLR")
    q5 = grade_in_process(with_bug(solution(), helper))["q5"]
    assert q5.score < q5.points and "Grading policy" in q5.feedback(), q5.feedback()


def test_hidden_library_use_is_stopped_at_run_time():
    namespace = definitions(solution())
    # No `optim` in the source: the inspection cannot see it, the probe child still stops it.
    exec("def step_decay(epoch, base_lr, step_size, gamma):\n"
         "    mod = __import__('torch').__dict__['op' + 'tim']\n"
         "    sched = getattr(mod, 'lr_' + 'scheduler').StepLR\n"
         "    p = __import__('torch').zeros(1, requires_grad=True)\n"
         "    o = getattr(mod, 'SG' + 'D')([p], lr=base_lr)\n"
         "    s = sched(o, step_size, gamma)\n"
         "    for _ in range(epoch):\n"
         "        o.step(); s.step()\n"
         "    return o.param_groups[0]['lr']", namespace)
    assert policy_problems(namespace, ("step_decay",), A1.question("q5").forbidden) == []
    q5 = grade_in_process(None, namespace=namespace)["q5"]
    assert q5.score <= q5.points / 2 and "grading policy" in q5.feedback(), q5.feedback()
    # The parent (the grader) keeps working optimizers: only the child is affected.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step()


def test_the_policy_sees_through_helpers_and_saved_references_but_not_honest_code():
    namespace = definitions(solution())
    for q in A1.questions:  # the solution, which uses torch but no library optimizer
        assert policy_problems(namespace, q.functions, q.forbidden) == []
    exec("from torch.optim import Adam as _A\n"
         "def _helper(p):\n    return _A([p])\n"
         "class Rule:\n    def __call__(self, param, grad, state, lr, beta1, beta2, eps):\n"
         "        return _helper(param), state\n"
         "adam = Rule()", namespace)
    (problem,) = policy_problems(namespace, ("adam",), A1.question("q4").forbidden)
    assert "torch.optim.adam.Adam" in problem and "write it yourself" in problem
    assert policy_problems(namespace, ("adam",), ()) == []  # no policy, no problem


def test_answers_precomputed_for_known_seeds_fail_on_the_graders_secret_seed():
    from grading_fixtures import PRECOMPUTED_TABLE

    namespace = definitions(solution())
    exec(PRECOMPUTED_TABLE, namespace)
    warmup = [c for c in grade_in_process(None, seed=0, namespace=namespace)["q5"].cases
              if c.label.startswith("warmup")]
    assert all(c.passed for c in warmup)  # the trick works where the seed is known (check)
    secret = grade.new_seed() + 6  # never in the table
    warmup = [c for c in grade_in_process(None, seed=secret, namespace=namespace)["q5"].cases
              if c.label.startswith("warmup")]
    assert not any(c.passed for c in warmup)


def test_printed_output_is_capped():
    namespace = definitions(solution())
    exec("def step_decay(epoch, base_lr, step_size, gamma):\n"
         "    print('x' * 100_000)\n"
         "    return base_lr * gamma ** (epoch // step_size)", namespace)
    q5 = grade_in_process(None, namespace=namespace)["q5"]
    assert q5.score == q5.points
    assert OUTPUT_CAP <= len(q5.output) < OUTPUT_CAP + 100 and "more characters" in q5.output
    assert len(q5.feedback()) < 4 * OUTPUT_CAP


def test_a_hang_that_swallows_exceptions_costs_its_question_only():
    namespace = definitions(solution())
    exec("def nesterov(param, grad, state, lr, momentum):\n"
         "    while True:\n        try:\n            while True:\n                pass\n"
         "        except BaseException:\n            pass", namespace)
    q = A1.question("q2")
    cases = q.cases(0)
    report = probe_question(namespace, q, cases, timeout=1.5)
    assert "stopped after 1.5 s" in report["note"] and report["outcomes"] == []
    q1 = A1.question("q1")
    assert judge(q1, q1.cases(0), probe_question(namespace, q1, q1.cases(0))["outcomes"]).score \
        == q1.points


def test_stack_inspection_finds_no_expected_value():
    from grading_fixtures import STACK_INSPECTION

    namespace = definitions(solution())
    exec(STACK_INSPECTION, namespace)
    q4 = grade_in_process(None, namespace=namespace)["q4"]
    assert q4.score == 0, q4.feedback()


# --------------------------------------------------------------------------------------
# check() in the notebook
# --------------------------------------------------------------------------------------

def test_check_reports_expected_vs_got_on_a_wrong_answer(capsys):
    variant = next(v for v in VARIANTS if v.name == "adam without bias correction")
    Checker("01_optimizers")("q4", namespace=definitions(with_bug(solution(), variant)))
    out = capsys.readouterr().out
    assert "q4" in out and "FAIL" in out
    assert "after step 1 of 30: expected param" in out and ", got " in out
    assert "bias correction" in out  # the hint for a wrong first step


def test_check_on_stubs_says_not_answered_without_raising(capsys):
    check = Checker("01_optimizers")
    namespace = definitions(student())
    check(namespace=namespace)
    out = capsys.readouterr().out
    assert out.count("not answered") >= 5
    assert "auto-graded total: 0/85" in out


def test_check_uses_the_callers_globals_and_rejects_unknown_questions(capsys):
    namespace = definitions(solution())
    exec("check('q5')", {**namespace, "check": Checker("01_optimizers")})
    assert "q5  Learning-rate schedules: passed" in capsys.readouterr().out
    with pytest.raises(ValueError, match="valid questions are q1, q2"):
        Checker("01_optimizers")("q9", namespace=namespace)


def test_check_and_grader_draw_different_inputs():
    q = A1.question("q1")
    assert [c.label for c in q.cases(0)] != [c.label for c in q.cases(grade.GRADE_SEED)]


def test_check_and_the_grader_see_the_same_names():
    """check() runs the grader's probe on the notebook's globals, whatever bound them."""
    namespace = definitions(solution())
    exec("PI = math.pi\nwarmup_cosine = lambda step, base_lr, warmup_steps, total_steps, "
         "min_lr=0.0: (base_lr * (step + 1) / (warmup_steps + 1) if step < warmup_steps else "
         "min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(PI * (step - warmup_steps) / "
         "(total_steps - warmup_steps))))", namespace)
    assert Checker("01_optimizers").run("q5", namespace).score == 15
    assert grade_in_process(None, namespace=namespace)["q5"].score == 15


def test_garbage_outcomes_are_failed_tests_not_crashes():
    q = A1.question("q1")
    cases = q.cases(grade.GRADE_SEED)
    junk = [{"value": "a string"}, {"value": torch.zeros(2)}, {"value": None}, None, 42]
    result = judge(q, cases, junk)
    assert result.score == 0 and len(result.cases) == len(cases)
    assert "did not run" in result.feedback()


# --------------------------------------------------------------------------------------
# Generating the student notebooks
# --------------------------------------------------------------------------------------

def test_committed_assignment_equals_a_fresh_generation(tmp_path):
    assert assign.generate(SOLUTION.parent, ASSIGNMENT.parent, check=True) == []
    written = assign.generate(SOLUTION.parent, tmp_path)  # every assignment in solutions/
    assert str(tmp_path / SOLUTION.name) in written and len(written) >= 2
    for path in map(assign.Path, written):
        assert path.read_text() == (ASSIGNMENT.parent / path.name).read_text()
    assert assign.generate(SOLUTION.parent, tmp_path) == []  # a second run changes nothing


def test_generated_notebook_has_stubs_no_solutions_and_no_outputs():
    text = ASSIGNMENT.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("raise NotImplementedError" in "".join(c["source"]) for c in code) == 7
    assert nb["cells"][1]["metadata"]["tags"] == ["nbval-skip", "colab-setup"]


def test_markers_become_stubs_with_hints_and_indentation():
    source = ("def f(x):\n    ### BEGIN SOLUTION hint: use x\n    return x\n"
              "    ### END SOLUTION\n")
    assert assign.strip_solutions(source, "code", "t") == (
        'def f(x):\n    # YOUR CODE HERE -- use x\n    raise NotImplementedError("not answered '
        'yet")\n')
    assert "YOUR ANSWER HERE" in assign.strip_solutions(
        "### BEGIN SOLUTION\nsecret\n### END SOLUTION", "markdown", "t")
    with pytest.raises(assign.MarkerError, match="never closed"):
        assign.strip_solutions("### BEGIN SOLUTION\nx = 1", "code", "cell 3")
    with pytest.raises(assign.MarkerError, match="without BEGIN"):
        assign.strip_solutions("x = 1\n### END SOLUTION", "code", "cell 3")


def test_written_answers_are_collected_and_stubs_ignored():
    assert len(answers(solution())["q6"].split()) > 100
    assert answers(student()) == {}


# --------------------------------------------------------------------------------------
# Bridges to torch.optim and to the surfaces
# --------------------------------------------------------------------------------------

def test_rule_optimizer_matches_torch_adam_with_a_scheduler():
    namespace = definitions(solution())
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    opt_a = RuleOptimizer(ours.parameters(), namespace["adam"], lr=0.01, beta1=0.9,
                          beta2=0.999, eps=1e-8)
    opt_b = torch.optim.Adam(theirs.parameters(), lr=0.01)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=3, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=3, gamma=0.5)
    x = torch.randn(16, 4)
    for _ in range(10):
        for model, opt, sched in ((ours, opt_a, sched_a), (theirs, opt_b, sched_b)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            sched.step()
    # Adam's state is per step, so a changing lr gives the same iterates in both forms.
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_surface_update_runs_a_rule_on_a_surface():
    from course_utils.surfaces import get_surface, run_optimizer

    namespace = definitions(solution())
    surface = get_surface("taco")
    path = run_optimizer(surface, surface_update(namespace["sgd_momentum"], lr=0.1,
                                                 momentum=0.9), 50)
    reference = run_optimizer(surface, lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 50)
    torch.testing.assert_close(path.points, reference.points)


# --------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------

class _FakeEnvironment:
    """An environment fingerprint whose successive checks return ``changes`` in turn."""

    def __init__(self, *changes):
        self._changes = iter(changes)

    def changes(self):
        return next(self._changes, [])


def _no_run(*args, **kwargs):
    return grade.RunResult(cell_notes=["runner not started (test)"])


def test_reports_are_gradescope_json_and_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "run_submission", _no_run)
    report = grade.grade_notebook(ASSIGNMENT, environment=_FakeEnvironment(), seed=grade.GRADE_SEED)
    results = report.gradescope()
    json.dumps(results)
    assert results["score"] == 0 and len(results["tests"]) == 6
    assert {"name", "score", "max_score", "output"} <= set(results["tests"][0])
    assert results["tests"][5]["max_score"] == 0  # graded by hand, outside the autograder
    grade.write_csv([report], tmp_path / "grades.csv")
    header, row = (tmp_path / "grades.csv").read_text().splitlines()
    assert header.startswith("notebook,q1,q2,q3,q4,q5,q6,auto_total,auto_max")
    assert ",manual," in row


def test_written_answers_are_capped_in_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "run_submission", _no_run)
    nb = solution()
    cell = next(c for c in nb.cells if "answer:q6" in c.metadata.get("tags", []))
    cell.source = "word " * 20_000
    path = tmp_path / "01_optimizers.ipynb"
    nbformat.write(nb, path)
    report = grade.grade_notebook(path, environment=_FakeEnvironment(), seed=grade.GRADE_SEED)
    assert grade.ANSWER_CAP < len(report.answers["q6"]) < grade.ANSWER_CAP + 100
    assert "more characters" in report.gradescope()["tests"][5]["output"]


def test_unreadable_notebook_is_reported_not_raised(tmp_path):
    bad = tmp_path / "01_optimizers.ipynb"
    bad.write_text("{ not json")
    report = grade.grade_notebook(bad, environment=_FakeEnvironment(), seed=grade.GRADE_SEED)
    assert report.score == 0 and "could not read the notebook" in report.notes[0]
    assert len(report.results) == 6


def test_a_modified_environment_refuses_the_next_submission_and_voids_this_one(monkeypatch):
    monkeypatch.setattr(grade, "run_submission", _no_run)
    before = grade.grade_notebook(SOLUTION, environment=_FakeEnvironment(["modified: x.py"]),
                                  seed=grade.GRADE_SEED)
    assert before.refused and before.score == 0 and len(before.results) == 6
    assert "changed since grading started (modified: x.py)" in before.notes[0]
    after = grade.grade_notebook(SOLUTION, environment=_FakeEnvironment([], ["added: y.pth"]),
                                 seed=grade.GRADE_SEED)
    assert after.refused and after.score == 0
    assert any("this submission modified the grading environment (added: y.pth)" in n
               for n in after.notes)


def test_the_environment_fingerprint_sees_a_new_pth_file_and_an_edited_file(tmp_path):
    from course_utils.grading.sandbox import Environment

    site, package = tmp_path / "site-packages", tmp_path / "pkg"
    site.mkdir()
    package.mkdir()
    (package / "core.py").write_text("X = 1\n")
    env = Environment({str(site): "stat", str(package): "content",
                       str(tmp_path / "user-site"): "stat"})
    assert env.changes() == []
    (site / "evil.pth").write_text("import os\n")
    (package / "core.py").write_text("X = 2\n")
    (tmp_path / "user-site").mkdir()
    changes = env.changes()
    assert f"added: {site / 'evil.pth'}" in changes
    assert f"modified: {package / 'core.py'}" in changes
    assert f"added: {tmp_path / 'user-site'}" in changes


# --------------------------------------------------------------------------------------
# The student-facing release
# --------------------------------------------------------------------------------------

def test_the_release_has_no_solutions(tmp_path):
    dest = tmp_path / "release"
    written = assign.release(assign.Path(SOLUTION.parents[1]), dest)
    assert not (dest / "solutions").exists()
    assert sorted((dest / "tests").glob("*grading*")) == []  # every assignment's, harness too
    assert (dest / "assignments" / SOLUTION.name).read_text() == ASSIGNMENT.read_text()
    assert (dest / "course_utils" / "grading" / "a01_optimizers.py").exists()
    assert (dest / "chapters" / "assignments" / "index.md").exists()
    assert "instructors" not in (dest / "_toc.yml").read_text()
    secret = assign.solution_texts(SOLUTION.parent)
    assert len(secret) >= 15  # the check below has something to find
    for rel in written:
        try:
            text = (dest / rel).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        assert assign.solution_lines(text) == [], rel
        leaked = [line for line in secret if line in text]
        assert leaked == [], f"{rel} contains solution lines: {leaked[:3]}"
    with pytest.raises(FileExistsError):
        assign.release(assign.Path(SOLUTION.parents[1]), dest)
    assert "m_hat = m / (1 - beta1**t)" in secret  # Adam's solution is among what is checked
    # The released copy's own checks run without solutions/.
    assert "solutions" not in next(line for line in (dest / "Makefile").read_text().splitlines()
                                   if line.startswith("NOTEBOOK_DIRS"))
    assert assign.main(["--check", "--solutions", str(dest / "solutions"),
                        "--assignments", str(dest / "assignments")]) == 0


def test_the_release_can_point_at_the_students_repository(tmp_path):
    url = "https://github.com/example-university/convnets-for-students"
    assign.release(assign.Path(SOLUTION.parents[1]), tmp_path / "r", repo_url=url)
    colab_cell = json.loads((tmp_path / "r" / "assignments" / SOLUTION.name).read_text())
    assert f"git+{url}" in "".join(colab_cell["cells"][1]["source"])
    assert "colab.research.google.com/github/example-university/convnets-for-students" in (
        tmp_path / "r" / "chapters" / "assignments" / "index.md").read_text()


# --------------------------------------------------------------------------------------
# The sandbox itself
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(__import__("course_utils.grading.sandbox", fromlist=["x"]).landlock_abi()
                    < 6, reason="needs Landlock with signal scoping (Linux 6.12+)")
def test_the_sandbox_allows_writes_only_in_its_folder_and_no_signals_out(tmp_path):
    import os

    from course_utils.grading.sandbox import restrict_self

    inside, report = tmp_path / "scratch", tmp_path / "report.txt"
    inside.mkdir()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child locks itself, tries, and reports through the pipe
        results = [",".join(restrict_self([inside]))]
        targets = (inside / "ok.txt", report, "/dev/null", f"/dev/shm/course-test-{os.getpid()}")
        for target in targets if results[0] == "files,network,signals" else ():
            try:
                with open(target, "a") as f:
                    f.write("x")
                results.append(f"wrote {target}")
            except OSError as error:
                results.append(f"blocked {target} {error.errno}")
        try:
            os.kill(os.getppid(), 0)
            results.append("signalled the parent")
        except OSError:
            results.append("no signal out")
        os.write(write_end, "\n".join(results).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    lines = os.read(read_end, 65536).decode().splitlines()
    assert lines[0] == "files,network,signals"
    assert lines[1] == f"wrote {inside / 'ok.txt'}"
    assert lines[2].startswith("blocked") and not report.exists()
    assert lines[3] == "wrote /dev/null" and lines[4].startswith("blocked /dev/shm/")
    assert lines[5] == "no signal out"
