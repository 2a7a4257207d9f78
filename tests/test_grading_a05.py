"""Assignment 5 (compression) is graded right: the solution full, the stubs zero, each classic
bug only on its own question, a hang and an attack on the grader contained.

As in test_grading_a03.py, answer cells run in this process and each question's tests through
``probe.probe_question`` (or, for the many wrong answers, the child's function
``run_question`` in this process), judged against expected values computed once per seed.
One whole notebook (a hang plus an attack on the grader) goes through the sandboxed runner.
"""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest
import torch
from grading_fixtures import GRADER_TAMPERING, replace_cell, with_bug
from grading_fixtures_a05 import (
    ASSIGNMENT,
    FILES,
    HANGING_HUFFMAN,
    HONEST_FORMS,
    HONEST_FORMS_2,
    VARIANTS,
    answers_only,
    honest_forms,
    solution,
    student,
)
from nbformat.v4 import new_code_cell

from course_utils import grade
from course_utils.grading import Checker, load_assignment, sandbox
from course_utils.grading.core import judge
from course_utils.grading.notebook import answers
from course_utils.grading.probe import probe_question, run_question

A5 = load_assignment("05_efficiency")
AUTO = [q for q in A5.questions if not q.manual]
FULL = {q.id: q.points for q in AUTO}
definitions = FILES.definitions


@pytest.fixture(scope="module")
def expected():
    """The grader's cases at its test seed, with the libraries' values computed once."""
    cases = grade.prepared_cases(A5, grade.GRADE_SEED)
    for qcases in cases.values():
        for case in qcases:
            case.expected()
    return cases


def grade_in_process(namespace: dict, expected: dict, fork: bool = True,
                     only: tuple[str, ...] = ()) -> dict:
    """Each question (or ``only`` these) as the grader runs it (``fork=False``: the child's
    work, in-process)."""
    results = {}
    for q in AUTO:
        if only and q.id not in only:
            continue
        fresh = q.cases(grade.GRADE_SEED)  # no expected value in the child's cases
        report = probe_question(namespace, q, fresh, timeout=60) if fork else \
            run_question(namespace, q, fresh, enforce=False)
        results[q.id] = judge(q, expected[q.id], report["outcomes"], note=report["note"])
    return results


def test_solution_scores_full_marks(expected):
    for result in grade_in_process(definitions(solution()), expected).values():
        assert result.status == "passed", result.feedback()


def test_solution_scores_full_marks_on_the_check_inputs_too():
    namespace = definitions(solution())
    for q in AUTO:
        cases = q.cases(0)
        report = run_question(namespace, q, cases, enforce=False)
        assert judge(q, cases, report["outcomes"]).status == "passed"


@pytest.mark.parametrize("forms", [HONEST_FORMS, HONEST_FORMS_2], ids=["forms1", "forms2"])
def test_correct_answers_in_other_forms_get_full_marks(forms, expected):
    """A boolean mask, numpy qparams, float32 k-means, the merged-node Huffman total, loops
    over tiles, F.kl_div with probabilities as the target; Python's sorted(), rounding half
    up, int32 dequantization, k-means that stops early, an explicit Huffman tree, einsum
    Winograd, kl_div summed and divided by the batch."""
    for result in grade_in_process(definitions(honest_forms(forms)), expected,
                                   fork=False).values():
        assert result.status == "passed", result.feedback()


def test_student_notebook_scores_zero_and_says_not_answered(expected):
    for result in grade_in_process(definitions(student()), expected).values():
        assert result.score == 0
        assert result.status == "not answered", result.feedback()
        assert "not written yet" in result.feedback()


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_wrong_answer_loses_marks_only_on_its_question(variant, expected):
    results = grade_in_process(definitions(with_bug(solution(), variant)), expected, fork=False)
    broken = results[variant.breaks]
    assert broken.score < broken.points, f"{variant.name} was not caught"
    feedback = broken.feedback()
    assert "Traceback" not in feedback
    assert any(word in feedback for word in ("expected", "raised", "policy", "should",
                                             "no gradient")), feedback
    for qid, result in results.items():
        if qid != variant.breaks:
            assert result.score == result.points, f"{variant.name} also broke {qid}"


def test_there_are_enough_wrong_answers_for_every_question():
    assert len(VARIANTS) >= 15
    assert {v.breaks for v in VARIANTS} == set(FULL)


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def test_feedback_names_the_mistake(expected):
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
        result = grade_in_process(definitions(with_bug(solution(), _variant(name))),
                                  expected, fork=False, only=(qid,))[qid]
        assert text in result.feedback(), result.feedback()


def test_library_answers_score_zero_with_the_policy_message(expected):
    namespace = definitions(with_bug(solution(), _variant("Winograd through F.conv2d")))
    result = grade_in_process(namespace, expected, only=("q5",))["q5"]  # in the probe child
    assert "grading policy" in result.feedback().lower(), result.feedback()
    assert "torch.nn.functional.conv2d" in result.feedback()
    q5 = A5.question("q5")  # in this process: the builtins are unbound, then restored
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
    result = grade_in_process(namespace, expected, only=("q1",))["q1"]
    assert result.score == 0 and "Grading policy" in result.feedback(), result.feedback()


def test_check_in_the_notebook_says_what_differs(capsys):
    namespace = definitions(with_bug(solution(), _variant("distillation without tau^2")))
    Checker("05_efficiency")("q6", namespace=namespace)
    out = capsys.readouterr().out
    assert "q6  The distillation loss: partial" in out or "failed" in out
    assert "FAIL" in out and "tau^2" in out


def test_check_and_grader_draw_different_inputs():
    for q in AUTO:
        assert [c.label for c in q.cases(0)] != [c.label for c in q.cases(grade.GRADE_SEED)]


def test_inputs_are_the_same_for_the_same_seed():
    for q in AUTO:
        first, again = q.cases(3), q.cases(3)
        assert [c.label for c in first] == [c.label for c in again]


def test_garbage_outcomes_are_failed_tests_not_crashes(expected):
    for q in AUTO:
        junk = [{"value": "a string"}, {"value": torch.zeros(2)}, {"value": None}, None,
                {"value": [1.5]}, {"value": {"a": 1}}, {"value": [[1]]}, 42, {"value": 3},
                {"value": [torch.zeros(2), "x"]}]
        result = judge(q, expected[q.id], junk)
        assert result.score == 0 and len(result.cases) == len(expected[q.id])


def test_a_hang_that_swallows_exceptions_costs_its_question_only(expected):
    namespace = definitions(solution())
    exec(HANGING_HUFFMAN, namespace)
    q4 = A5.question("q4")
    report = probe_question(namespace, q4, q4.cases(0), timeout=1.5)
    assert "stopped after 1.5 s" in report["note"] and report["outcomes"] == []
    q5 = A5.question("q5")
    assert judge(q5, expected["q5"], probe_question(namespace, q5, q5.cases(grade.GRADE_SEED))[
        "outcomes"]).score == q5.points


def test_generated_notebook_has_stubs_and_a_written_question():
    text = ASSIGNMENT.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("".join(c["source"]).count("raise NotImplementedError") for c in code) == 9
    assert nb["cells"][1]["metadata"]["tags"] == ["nbval-skip", "colab-setup"]
    assert len(answers(solution())["q7"].split()) > 200 and answers(student()) == {}


# --------------------------------------------------------------------------------------
# A whole notebook through the sandboxed runner: a hang and an attack on the grader
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(sandbox.landlock_abi() < 6, reason="needs Landlock with signal scoping "
                    "(Linux 6.12+); without it, grade untrusted work in a container")
def test_a_hang_and_an_attack_on_the_grader_change_nothing_else(tmp_path):
    """The solution's answers, except q4 hangs; a cell patches the grader in its process,
    writes fake results and a .pth, and starts a daemon to try again later."""
    results, pth = tmp_path / "r.json", tmp_path / "userbase" / "course_evil.pth"
    results.write_text("{}")
    nb = answers_only(solution())
    replace_cell(nb, "huffman_bits", HANGING_HUFFMAN.strip())
    attack = (GRADER_TAMPERING.strip().replace("TARGETS", repr([str(results), str(pth)]))
              .replace("STOP_AT", str(os.getpid())).replace("DELAY", "1.0"))
    nb.cells.insert(3, new_code_cell(attack))
    path = tmp_path / "05_efficiency.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    report = grade.grade_notebook(path, timeout=60, cell_timeout=3, question_timeout=3,
                                  environment=sandbox.Environment({}), seed=grade.GRADE_SEED)
    assert report.scores() == {**FULL, "q4": 0, "q7": None}, (report.notes, report.text())
    assert "stopped after 3 s" in next(r for r in report.results if r.id == "q4").note
    assert time.monotonic() - start < 50
    time.sleep(1.5)  # past the daemon's delay
    assert "forged" not in results.read_text() and "daemon" not in results.read_text()
    assert not pth.exists()
