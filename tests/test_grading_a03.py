"""Assignment 3 (architectures), what is particular to it: the feedback names each classic
mistake, library blocks in an answer score zero under the grading policy, and check() in the
notebook says what differs. What every assignment must pass (full marks, zero for the stubs,
each bug on its own question, hangs, the sandboxed runner) is in test_grading_assignments.py.
"""

from __future__ import annotations

from grading_fixtures import with_bug
from grading_fixtures_a03 import VARIANTS, solution
from grading_harness import grade_in_process, spec

from course_utils.grading import Checker

A3 = spec("03_architectures")
definitions = A3.definitions


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def test_feedback_names_the_mistake():
    """What a student reads: where the value differs, and a hint at the likely cause."""
    cases = {
        "groups misread as the width of each group": ("q2", "number of groups"),
        "receptive field ignores the strides": ("q3", "product of the strides"),
        "no projection when only the stride changes": ("q5", "projection `downsample`"),
        "true division returns a float": ("q1", "should return an int, got float"),
        "stride on the second convolution": ("q5", "stride goes on the first 3x3"),
    }
    for name, (qid, text) in cases.items():
        result = grade_in_process(A3, definitions(with_bug(solution(), _variant(name))),
                                  fork=False, only=(qid,))[qid]
        assert text in result.feedback() or text in A3.assignment.question(qid).title, \
            result.feedback()


def test_library_blocks_in_an_answer_score_zero_with_the_policy_message():
    for name, qid, library in (("residual block delegates to torchvision", "q5",
                                "torchvision.models"),
                               ("Inception count through the flop counter", "q4",
                                "torch.utils.flop_counter")):
        namespace = definitions(with_bug(solution(), _variant(name)))
        result = grade_in_process(A3, namespace, only=(qid,))[qid]  # through the probe child
        assert result.score == 0 and "Grading policy" in result.feedback(), result.feedback()
        assert library in result.feedback()


def test_check_in_the_notebook_says_what_differs(capsys):
    namespace = definitions(with_bug(solution(), _variant("ReLU before the addition")))
    Checker("03_architectures")("q5", namespace=namespace)
    out = capsys.readouterr().out
    assert "q5  A residual basic block: partial" in out or "failed" in out
    assert "FAIL" in out and "the last ReLU after the addition" in out
