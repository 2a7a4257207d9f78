"""Assignment 2's grader is tested as Assignment 1's (test_grading.py): the solution gets full
marks, the student notebook 0, each classic bug loses marks on its own question only, a hang
costs its question only, and neither the grader's verdicts nor its expected values can be
reached from an answer.

The solution is graded once, through the forked probe that ``check()`` and the grader use;
the many wrong answers run the probe's function in this process (``fork=False``), as in
test_grading.py; one notebook goes through the sandboxed runner.
"""

from __future__ import annotations

import json
import time

import pytest
from grading_fixtures import with_bug
from grading_fixtures_a02 import (
    ASSIGNMENT,
    FILES,
    GRADER_PATCH,
    HONEST_FORMS,
    SOLUTION,
    STACK_INSPECTION,
    VARIANTS,
    solution,
    student,
    swallowed_hang,
)

from course_utils import grade
from course_utils.grading import Checker, load_assignment, sandbox
from course_utils.grading.core import judge
from course_utils.grading.notebook import answers
from course_utils.grading.probe import probe_question, run_question

A2 = load_assignment("02_regularization")
AUTO = [q for q in A2.questions if not q.manual]
FULL = {q.id: q.points for q in AUTO}
definitions = FILES.definitions



def grade_in_process(namespace: dict, seed: int = grade.GRADE_SEED, fork: bool = True,
                     only: tuple[str, ...] = ()) -> dict:
    """What the grader does with the names: a probe per question (fresh cases), then judge."""
    cases = grade.prepared_cases(A2, seed)
    results = {}
    for q in AUTO:
        if only and q.id not in only:
            continue
        report = probe_question(namespace, q, q.cases(seed), timeout=60) if fork else \
            run_question(namespace, q, q.cases(seed), enforce=False)
        results[q.id] = judge(q, cases[q.id], report["outcomes"], note=report["note"])
    return results


@pytest.fixture(scope="module")
def solution_namespace():
    return definitions(solution())


def test_solution_scores_full_marks(solution_namespace):
    for result in grade_in_process(solution_namespace).values():
        assert result.score == result.points and result.status == "passed", result.feedback()


def test_student_notebook_scores_zero_and_says_not_answered():
    results = grade_in_process(definitions(student()), fork=False)
    assert set(results) == set(FULL)
    for result in results.values():
        assert result.score == 0 and result.status == "not answered", result.feedback()
        assert "not written yet" in result.feedback()


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # float(penalty)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_wrong_answer_loses_marks_only_on_its_question(variant):
    results = grade_in_process(definitions(with_bug(solution(), variant)), fork=False)
    broken = results[variant.breaks]
    assert broken.score < broken.points, f"{variant.name} was not caught"
    feedback = broken.feedback()
    assert "Traceback" not in feedback
    assert any(word in feedback for word in ("expected", "raised", "must return", "policy",
                                             "should")), feedback
    for qid, result in results.items():
        if qid != variant.breaks:
            assert result.score == result.points, f"{variant.name} also broke {qid}"


def test_there_are_enough_wrong_answers_for_every_question():
    assert len(VARIANTS) >= 15
    assert {v.breaks for v in VARIANTS} == set(FULL)


@pytest.mark.parametrize("function", sorted(HONEST_FORMS))
def test_honest_answers_in_other_forms_get_full_marks(solution_namespace, function):
    namespace = dict(solution_namespace)
    exec(HONEST_FORMS[function].strip(), namespace)
    for result in grade_in_process(namespace, fork=False).values():
        assert result.score == result.points, result.feedback()


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def _feedback(name: str, seed: int = grade.GRADE_SEED) -> str:
    variant = _variant(name)
    namespace = definitions(with_bug(solution(), variant))
    return grade_in_process(namespace, seed, fork=False, only=(variant.breaks,))[
        variant.breaks].feedback()


def test_the_edge_cases_are_what_catch_the_subtle_bugs():
    # eps outside the square root matters next to a channel of tiny variance.
    failed = [line for line in _feedback("BN eps outside the square root").splitlines()
              if "FAIL" in line]
    assert any("eps=0.1)" in line for line in failed), failed
    # Redrawing the mask: caught with a given mask and by the statistics.
    text = _feedback("dropout mask redrawn in backward")
    assert "reuse the forward pass's mask" in text and "keep the mask in the cache" in text
    # Keeping with probability p passes with a given mask; the statistics catch it.
    text = _feedback("dropout keeps with probability p")
    assert "PASS  dropout_forward(x, p=0.99" in text and "expected a fraction" in text
    # Batch statistics in eval mode: the batch of one gives beta, not the running statistics.
    assert "eval mode: normalize with the running statistics" in _feedback(
        "BN eval mode uses the batch statistics")


def test_hidden_autograd_in_batch_norm_backward_is_stopped_at_run_time(solution_namespace):
    namespace = dict(solution_namespace)
    exec("def batch_norm_backward(grad_out, x, gamma, eps):\n"
         "    axes = [0, *range(2, x.dim())]\n"
         "    shape = (1, -1, *[1] * (x.dim() - 2))\n"
         "    x, gamma = x.clone().requires_grad_(True), gamma.clone().requires_grad_(True)\n"
         "    c = x - x.mean(dim=axes, keepdim=True)\n"
         "    y = gamma.view(shape) * c / ((c**2).mean(dim=axes, keepdim=True) + eps).sqrt()\n"
         "    getattr(y, 'back' + 'ward')(grad_out)\n"
         "    return x.grad, gamma.grad, grad_out.sum(dim=axes)", namespace)
    assert grade_in_process(namespace, fork=False, only=("q3",))["q3"].score == 15  # it works
    q3 = grade_in_process(namespace, only=("q3",))["q3"]  # ... but not where tests run
    assert q3.score == 0 and "grading policy" in q3.feedback(), q3.feedback()


def test_stack_inspection_and_grader_patches_gain_nothing(solution_namespace):
    namespace = dict(solution_namespace)
    exec(STACK_INSPECTION, namespace)
    exec(GRADER_PATCH, namespace)
    results = grade_in_process(namespace, only=("q4", "q5", "q6"))
    # Only the decay-0 test passes (where returning the weights is right): nothing was found.
    assert [c.passed for c in results["q6"].cases] == [
        "decay=0)" in c.label for c in results["q6"].cases], results["q6"].feedback()
    assert results["q4"].score == 0, results["q4"].feedback()
    assert results["q5"].score == results["q5"].points  # this process's grader is intact


def test_a_hang_that_swallows_exceptions_costs_its_question_only(solution_namespace):
    namespace = definitions(swallowed_hang())
    q1, q2 = A2.question("q1"), A2.question("q2")
    report = probe_question(namespace, q1, q1.cases(0), timeout=1.5)
    assert "stopped after 1.5 s" in report["note"] and report["outcomes"] == []
    assert judge(q2, q2.cases(0), probe_question(namespace, q2, q2.cases(0))["outcomes"]) \
        .score == q2.points


def test_check_reports_expected_vs_got_on_a_wrong_answer(capsys):
    namespace = definitions(with_bug(solution(), _variant("BN running-mean momentum inverted")))
    Checker("02_regularization")("q2", namespace=namespace)
    out = capsys.readouterr().out
    assert "q2" in out and "FAIL" in out and "running_mean at step 1 of" in out
    assert "running = (1 - momentum) * running + momentum * batch statistic" in out


# --------------------------------------------------------------------------------------
# The notebooks
# --------------------------------------------------------------------------------------

def test_generated_notebook_has_stubs_no_solutions_and_no_outputs():
    text = ASSIGNMENT.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("".join(c["source"]).count("raise NotImplementedError") for c in code) == 8
    assert nb["cells"][1]["metadata"]["tags"] == ["nbval-skip", "colab-setup"]
    assert nb["metadata"]["course"] == {"assignment": "02_regularization"}


def test_the_written_answer_is_collected():
    assert len(answers(solution())["q7"].split()) > 100
    assert answers(student()) == {}


def test_the_notebook_states_each_forbidden_library():
    text = SOLUTION.read_text()
    for name in ("F.dropout", "nn.Dropout", "F.batch_norm", "nn.BatchNorm", ".backward()",
                 "F.group_norm", "F.layer_norm", "torch.optim", "torch.optim.swa_utils"):
        assert name in text, name


def test_the_sandboxed_runner_grades_a_hang_as_zero_on_its_question_only(tmp_path):
    """The whole path: the runner executes the cells (check() included), then each question;
    question 1 hangs and swallows the timer's exceptions."""
    import nbformat

    path = tmp_path / SOLUTION.name
    nbformat.write(swallowed_hang(), path)
    start = time.monotonic()
    report = grade.grade_notebook(path, timeout=60, cell_timeout=3, question_timeout=3,
                                  environment=sandbox.Environment({}))
    assert report.scores() == {**FULL, "q1": 0, "q7": None}, report.text(verbose=True)
    assert "stopped after 3 s" in report.results[0].note
    assert time.monotonic() - start < 45
