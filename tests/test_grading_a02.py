"""Assignment 2 (regularization), what is particular to it: honest answers in other forms,
the edge cases that catch the subtle bugs, hidden autograd stopped at run time, stack
inspection and grader patches gaining nothing, and check()'s feedback. What every assignment
must pass (full marks, zero for the stubs, each bug on its own question, hangs, the sandboxed
runner) is in test_grading_assignments.py.
"""

from __future__ import annotations

import pytest
from grading_fixtures import with_bug
from grading_fixtures_a02 import (
    GRADER_PATCH,
    HONEST_FORMS,
    SOLUTION,
    STACK_INSPECTION,
    VARIANTS,
    solution,
)
from grading_harness import grade_in_process, spec

from course_utils.grading import Checker

A2 = spec("02_regularization")
definitions = A2.definitions


@pytest.fixture(scope="module")
def solution_namespace():
    return definitions(solution())


@pytest.mark.parametrize("function", sorted(HONEST_FORMS))
def test_honest_answers_in_other_forms_get_full_marks(solution_namespace, function):
    namespace = dict(solution_namespace)
    exec(HONEST_FORMS[function].strip(), namespace)
    for result in grade_in_process(A2, namespace, fork=False).values():
        assert result.score == result.points, result.feedback()


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def _feedback(name: str) -> str:
    variant = _variant(name)
    namespace = definitions(with_bug(solution(), variant))
    return grade_in_process(A2, namespace, fork=False, only=(variant.breaks,))[
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
    assert grade_in_process(A2, namespace, fork=False, only=("q3",))["q3"].score == 15  # it works
    q3 = grade_in_process(A2, namespace, only=("q3",))["q3"]  # ... but not where tests run
    assert q3.score == 0 and "grading policy" in q3.feedback(), q3.feedback()


def test_stack_inspection_and_grader_patches_gain_nothing(solution_namespace):
    namespace = dict(solution_namespace)
    exec(STACK_INSPECTION, namespace)
    exec(GRADER_PATCH, namespace)
    results = grade_in_process(A2, namespace, only=("q4", "q5", "q6"))
    # Only the decay-0 test passes (where returning the weights is right): nothing was found.
    assert [c.passed for c in results["q6"].cases] == [
        "decay=0)" in c.label for c in results["q6"].cases], results["q6"].feedback()
    assert results["q4"].score == 0, results["q4"].feedback()
    assert results["q5"].score == results["q5"].points  # this process's grader is intact


def test_check_reports_expected_vs_got_on_a_wrong_answer(capsys):
    namespace = definitions(with_bug(solution(), _variant("BN running-mean momentum inverted")))
    Checker("02_regularization")("q2", namespace=namespace)
    out = capsys.readouterr().out
    assert "q2" in out and "FAIL" in out and "running_mean at step 1 of" in out
    assert "running = (1 - momentum) * running + momentum * batch statistic" in out


# --------------------------------------------------------------------------------------
# The notebooks
# --------------------------------------------------------------------------------------

def test_the_notebook_states_each_forbidden_library():
    text = SOLUTION.read_text()
    for name in ("F.dropout", "nn.Dropout", "F.batch_norm", "nn.BatchNorm", ".backward()",
                 "F.group_norm", "F.layer_norm", "torch.optim", "torch.optim.swa_utils"):
        assert name in text, name

