"""The grader is tested: in this process, through the same definitions-only path as grading.

Kernel-based grading of whole notebooks (time limit, crash, tampering) is in
test_grading_notebooks.py; here every notebook's *definitions* are extracted exactly as the
grader does it and judged against the grader's expected values.
"""

from __future__ import annotations

import json

import pytest
import torch
from grading_fixtures import ASSIGNMENT, SOLUTION, VARIANTS, solution, student, with_bug

from course_utils import assign, grade
from course_utils.grading import Checker, RuleOptimizer, load_assignment, surface_update
from course_utils.grading.core import judge, run_case
from course_utils.grading.definitions import exec_definitions, keep_definitions
from course_utils.grading.feedback import risky_globals
from course_utils.grading.notebook import answers, code_cells

A1 = load_assignment("01_optimizers")


def definitions(nb) -> dict:
    namespace, problems = exec_definitions(code_cells(nb))
    return namespace


def grade_in_process(nb, seed: int = grade.GRADE_SEED):
    """What the grader does with a notebook's definitions, without the extra processes."""
    namespace = definitions(nb)
    cases = grade.prepared_cases(A1, seed)
    return {q.id: judge(q, cases[q.id], [run_case(c, namespace) for c in cases[q.id]])
            for q in A1.questions if not q.manual}


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
    results = grade_in_process(with_bug(solution(), variant))
    broken = results[variant.breaks]
    assert broken.score < broken.points, f"{variant.name} was not caught"
    feedback = broken.feedback()
    assert "Traceback" not in feedback
    assert any(word in feedback for word in ("expected", "raised", "must return")), feedback
    for qid, result in results.items():
        if qid != variant.breaks:
            assert result.score == result.points, f"{variant.name} also broke {qid}"


def test_there_are_enough_wrong_answers_for_every_question():
    assert len(VARIANTS) >= 12
    assert {v.breaks for v in VARIANTS} == {q.id for q in A1.questions if not q.manual}


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


def test_check_warns_about_globals_the_grader_will_not_keep():
    namespace = definitions(solution())
    namespace["ZERO"] = torch.zeros(3)
    exec("def step_decay(epoch, base_lr, step_size, gamma):\n"
         "    return base_lr * gamma ** (epoch // step_size) + float(ZERO.sum())", namespace)
    (warning,) = risky_globals(namespace, ("step_decay",))
    assert "`ZERO`" in warning and "Tensor" in warning


# --------------------------------------------------------------------------------------
# Definitions only
# --------------------------------------------------------------------------------------

def test_only_definitions_are_kept():
    source = (
        "import math\nfrom torch import nn\nEPS = 1e-8\nA, B = 1, (2, 3)\n"
        "def f(x):\n    return x\nclass C:\n    pass\n"
        "import course_utils.grading as g\ng.check = None\nprint('side effect')\n"
        "X = f(3)\nfor i in range(3):\n    pass\ncheck('q1')\n"
    )
    kept = keep_definitions(source)
    names = [type(n).__name__ for n in kept.body]
    assert names == ["Import", "ImportFrom", "Assign", "Assign", "FunctionDef", "ClassDef",
                     "Import"]


def test_magics_and_syntax_errors_do_not_stop_the_other_cells():
    nb = solution()
    nb.cells.insert(3, nbformat_cell("%matplotlib inline\n!echo hi\ndef extra():\n    return 1"))
    nb.cells.insert(4, nbformat_cell("def broken(:\n    pass"))
    namespace, problems = exec_definitions(code_cells(nb))
    assert namespace["extra"]() == 1 and "adam" in namespace
    assert len(problems) == 1 and "syntax error" in problems[0]


def nbformat_cell(source: str):
    from nbformat.v4 import new_code_cell

    return new_code_cell(source)


def test_a_name_error_in_student_code_explains_what_the_grader_keeps():
    namespace = definitions(solution())
    exec("def step_decay(epoch, base_lr, step_size, gamma):\n    return LR_TABLE[epoch]",
         namespace)
    q = A1.question("q5")
    cases = q.cases(0)
    result = judge(q, cases, [run_case(c, namespace) for c in cases])
    assert "NameError" in result.feedback() and "keeps only the imports" in result.feedback()


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
    assert assign.generate(SOLUTION.parent, tmp_path) == [str(tmp_path / SOLUTION.name)]
    assert (tmp_path / SOLUTION.name).read_text() == ASSIGNMENT.read_text()
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

def test_reports_are_gradescope_json_and_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "probe", lambda *args: ({}, ["test process not started"]))
    report = grade.grade_notebook(ASSIGNMENT, run_notebook=False)
    results = report.gradescope()
    json.dumps(results)
    assert results["score"] == 0 and len(results["tests"]) == 6
    assert {"name", "score", "max_score", "output"} <= set(results["tests"][0])
    assert results["tests"][5]["max_score"] == 0  # graded by hand, outside the autograder
    grade.write_csv([report], tmp_path / "grades.csv")
    header, row = (tmp_path / "grades.csv").read_text().splitlines()
    assert header.startswith("notebook,q1,q2,q3,q4,q5,q6,auto_total,auto_max")
    assert ",manual," in row


def test_unreadable_notebook_is_reported_not_raised(tmp_path):
    bad = tmp_path / "01_optimizers.ipynb"
    bad.write_text("{ not json")
    report = grade.grade_notebook(bad, run_notebook=False)
    assert report.score == 0 and "could not read the notebook" in report.notes[0]
    assert len(report.results) == 6


def test_a_notebook_that_rewrites_the_grader_on_disk_is_not_scored(monkeypatch):
    prints = iter(["before", "after"])
    monkeypatch.setattr(grade, "package_fingerprint", lambda: next(prints))
    report = grade.grade_notebook(SOLUTION, run_notebook=False)
    assert report.score == 0
    assert any("modified the grading package" in note for note in report.notes)
