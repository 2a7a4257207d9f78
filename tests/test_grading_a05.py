"""Assignment 5 (compression), what is particular to it: correct answers in other forms, the
feedback that names each classic mistake, the grading policy on library answers, and check()'s
output. What every assignment must pass (full marks, zero for the stubs, each bug on its own
question, hangs, the sandboxed runner) is in test_grading_assignments.py.
"""

from __future__ import annotations

import pytest
import torch
from grading_fixtures import with_bug
from grading_fixtures_a05 import (
    HONEST_FORMS,
    HONEST_FORMS_2,
    VARIANTS,
    honest_forms,
    solution,
)
from grading_harness import grade_in_process, spec

from course_utils import grade
from course_utils.grading import Checker
from course_utils.grading.probe import run_question

A5 = spec("05_efficiency")
definitions = A5.definitions


@pytest.mark.parametrize("forms", [HONEST_FORMS, HONEST_FORMS_2], ids=["forms1", "forms2"])
def test_correct_answers_in_other_forms_get_full_marks(forms):
    """A boolean mask, numpy qparams, float32 k-means, the merged-node Huffman total, loops
    over tiles, F.kl_div with probabilities as the target; Python's sorted(), rounding half
    up, int32 dequantization, k-means that stops early, an explicit Huffman tree, einsum
    Winograd, kl_div summed and divided by the batch."""
    for result in grade_in_process(A5, definitions(honest_forms(forms)),
                                   fork=False).values():
        assert result.status == "passed", result.feedback()


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def test_feedback_names_the_mistake():
    """What a student reads: where the value differs, and a hint at the likely cause."""
    cases = {
        "sparsity off by one element (int truncates)": ("q1", "expected round("),
        "ties broken by the last index (unstable order)": ("q1", "prune the first in flatten()"),
        "zero point with the wrong sign": ("q2", "add the zero point"),
        "no floor on the scale (division by zero on an all-zero layer)":
            ("q2", "ZeroDivisionError"),
        "k-means on the pruned zeros": ("q3", "pruned weights (exact zeros) are nonzero"),
        "a single symbol costs no bits": ("q4", "one bit per symbol"),
        "Winograd tiles that do not overlap": ("q5", "has shape"),
        "loss detached from the student's logits": ("q6", "no gradient reaches"),
        "distillation without tau^2": ("q6", "what you get when the factor tau^2 is missing"),
        "softmax instead of log-softmax on the student": ("q6", "not a log-softmax"),
        "Winograd with a flipped filter (convolution, not cross-correlation)":
            ("q5", "convolution with the flipped filter"),
        "dequantize in int8 arithmetic (q - zero_point wraps around)": ("q2", "wraps around"),
        "heap entries that compare the groups when two counts tie":
            ("q4", "put a unique number second"),
        "F.kl_div on log-probabilities without log_target=True": ("q6", "log_target=True"),
        "hard-label term not weighted by (1 - alpha)": ("q6", "not weighted by (1 - alpha)"),
        "k-means: an empty cluster's centroid becomes the mean of nothing (nan)":
            ("q3", "keep its centroid where it is"),
    }
    for name, (qid, text) in cases.items():
        result = grade_in_process(A5, definitions(with_bug(solution(), _variant(name))),
                                  fork=False, only=(qid,))[qid]
        assert text in result.feedback(), result.feedback()


def test_library_answers_score_zero_with_the_policy_message():
    namespace = definitions(with_bug(solution(), _variant("Winograd through F.conv2d")))
    result = grade_in_process(A5, namespace, only=("q5",))["q5"]  # in the probe child
    assert "grading policy" in result.feedback().lower(), result.feedback()
    assert "torch.nn.functional.conv2d" in result.feedback()
    q5 = A5.assignment.question("q5")  # in this process: the builtins are unbound, then restored
    report = run_question(namespace, q5, q5.cases(grade.GRADE_SEED), enforce=False)
    assert "grading policy" in str(report["outcomes"]), report
    assert torch.nn.functional.conv2d is torch.conv2d
    assert type(torch.conv2d).__name__ == "builtin_function_or_method"
    namespace = definitions(solution())
    exec("from torch.nn.utils import prune\n\n\n"
         "def magnitude_prune_mask(weight, sparsity):\n"
         "    holder = torch.nn.Linear(1, 1)\n"
         "    holder.weight = torch.nn.Parameter(weight.clone())\n"
         "    prune.l1_unstructured(holder, 'weight', amount=sparsity)\n"
         "    return holder.weight_mask\n", namespace)
    result = grade_in_process(A5, namespace, only=("q1",))["q1"]
    assert result.score == 0 and "Grading policy" in result.feedback(), result.feedback()


def test_check_in_the_notebook_says_what_differs(capsys):
    namespace = definitions(with_bug(solution(), _variant("distillation without tau^2")))
    Checker("05_efficiency")("q6", namespace=namespace)
    out = capsys.readouterr().out
    assert "q6  The distillation loss: partial" in out or "failed" in out
    assert "FAIL" in out and "tau^2" in out


# --------------------------------------------------------------------------------------
# A whole notebook through the sandboxed runner: a hang and an attack on the grader
# --------------------------------------------------------------------------------------
