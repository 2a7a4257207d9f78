"""Assignment 4 (transfer learning), what is particular to it: correct answers in other forms, the
feedback that names each classic mistake, the grading policy on library answers, and check()'s
output. What every assignment must pass (full marks, zero for the stubs, each bug on its own
question, hangs, the sandboxed runner) is in test_grading_assignments.py.
"""

from __future__ import annotations

import pytest
from grading_fixtures import with_bug
from grading_fixtures_a04 import (
    HONEST_FORMS,
    HONEST_FORMS_2,
    VARIANTS,
    solution,
)
from grading_harness import grade_in_process, spec

from course_utils.grading import Checker

A4 = spec("04_transfer_learning")
definitions = A4.definitions


@pytest.mark.parametrize("forms", [HONEST_FORMS, HONEST_FORMS_2], ids=["forms1", "forms2"])
def test_honest_answers_in_other_forms_get_full_marks(forms):
    namespace = definitions(solution())
    exec(forms, namespace)
    for result in grade_in_process(A4, namespace, fork=False).values():
        assert result.status == "passed", result.feedback()


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def test_feedback_names_the_mistake():
    """What a student reads: what differs, and a hint at the likely cause."""
    cases = {
        "BN left in train mode while frozen": ("q1", "running statistics"),
        "optimizer built before freezing (still holds frozen parameters)":
            ("q1", "build the optimizer after freezing"),
        "head not replaced (only out_features changed)":
            ("q2", "changing `out_features` does not resize a layer"),
        "softmax added to the new head": ("q2", "should be one nn.Linear"),
        "learning rates swapped between the groups (largest on the stem)":
            ("q3", "the head gets the largest learning rate"),
        "the head's group takes model.parameters() (parameters in two groups)":
            ("q3", "more than one parameter group"),
        "features taken after the head (the logits)": ("q4", "take what goes *into* the head"),
        "source normalization not applied": ("q4", "normalize each channel with the source"),
        "BN in train mode during feature extraction (no model.eval())":
            ("q4", "model.eval()"),
        "autograd left on during extraction": ("q4", "torch.no_grad()"),
        "probe loss summed over the examples, not averaged": ("q5", "summed over the examples"),
        "probe stopped after 3 iterations": ("q5", "run the optimizer to convergence"),
        "SGD without momentum": ("q1", "momentum is [0.0], expected 0.9"),
        "the new head returned instead of the model": ("q2", "got a single Linear"),
        "new head set as a new attribute `fc` (an nn.Sequential appends it)":
            ("q2", "the model gained a module `fc`"),
        "a stage given as a tuple passed to get_submodule whole":
            ("q3", "a tuple of module names"),
        "probe's bias penalized too": ("q5", "the bias is penalized too"),
        "probe penalty without the 1/2": ("q5", "(it is weight_decay / 2 * ||W||^2)"),
        "L-BFGS left at its default max_iter (20)": ("q5", "20 by default"),
    }
    for name, (qid, text) in cases.items():
        result = grade_in_process(A4, definitions(with_bug(solution(), _variant(name))),
                                  fork=False, only=(qid,))[qid]
        assert text in result.feedback(), (name, result.feedback())


def test_library_helpers_in_an_answer_score_zero_with_the_policy_message():
    for name, qid, library in (("probe fitted with scikit-learn", "q5", "sklearn.linear_model"),
                               ("freezing through the course's transfer helper", "q1",
                                "course_utils.transfer")):
        namespace = definitions(with_bug(solution(), _variant(name)))
        result = grade_in_process(A4, namespace)[qid]  # through the probe child
        assert result.score == 0 and "Grading policy" in result.feedback(), result.feedback()
        assert library in result.feedback()


def test_check_in_the_notebook_says_what_differs(capsys):
    namespace = definitions(with_bug(solution(), _variant("BN left in train mode while frozen")))
    Checker("04_transfer_learning")("q1", namespace=namespace)
    out = capsys.readouterr().out
    assert "q1  Freeze all but the head: partial" in out, out
    assert "FAIL" in out and "running_mean" in out


def test_the_notebook_states_the_grading_policy():
    text = "\n".join(c.source for c in solution().cells if c.cell_type == "markdown")
    assert "course_utils.transfer" in text and "scikit-learn" in text


# --------------------------------------------------------------------------------------
# A whole notebook through the sandboxed runner: a hang and an attack on the grader
# --------------------------------------------------------------------------------------
