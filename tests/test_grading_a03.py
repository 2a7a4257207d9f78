"""Assignment 3 (architectures) is graded right: the solution full, the stubs zero, each
classic bug only on its own question, a hang and an attack on the grader contained.

As in test_grading.py, answer cells run in this process and each question's tests through
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
from grading_fixtures_a03 import (
    ASSIGNMENT,
    FILES,
    HANGING_BLOCK,
    VARIANTS,
    answers_only,
    solution,
    student,
)
from nbformat.v4 import new_code_cell

from course_utils import grade
from course_utils.grading import Checker, load_assignment, sandbox
from course_utils.grading.core import judge
from course_utils.grading.notebook import answers
from course_utils.grading.probe import probe_question, run_question

A3 = load_assignment("03_architectures")
AUTO = [q for q in A3.questions if not q.manual]
FULL = {q.id: q.points for q in AUTO}
definitions = FILES.definitions



@pytest.fixture(scope="module")
def expected():
    """The grader's cases at its test seed, with the library's values computed once."""
    cases = grade.prepared_cases(A3, grade.GRADE_SEED)
    for qcases in cases.values():
        for case in qcases:
            case.expected()
    return cases


def grade_in_process(namespace: dict, expected: dict, fork: bool = True) -> dict:
    """Each question as the grader runs it (``fork=False``: the child's work, in-process)."""
    results = {}
    for q in AUTO:
        fresh = q.cases(grade.GRADE_SEED)  # no expected value in the child's cases
        report = probe_question(namespace, q, fresh, timeout=60) if fork else \
            run_question(namespace, q, fresh, enforce=False)
        results[q.id] = judge(q, expected[q.id], report["outcomes"], note=report["note"])
    return results


def test_solution_scores_full_marks(expected):
    for result in grade_in_process(definitions(solution()), expected).values():
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
                                             "do not match")), feedback
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
        "groups misread as the width of each group": ("q2", "number of groups"),
        "receptive field ignores the strides": ("q3", "product of the strides"),
        "no projection when only the stride changes": ("q5", "projection `downsample`"),
        "true division returns a float": ("q1", "should return an int, got float"),
        "stride on the second convolution": ("q5", "stride goes on the first 3x3"),
    }
    for name, (qid, text) in cases.items():
        result = grade_in_process(definitions(with_bug(solution(), _variant(name))),
                                  expected, fork=False)[qid]
        assert text in result.feedback() or text in A3.question(qid).title, result.feedback()


def test_library_blocks_in_an_answer_score_zero_with_the_policy_message(expected):
    for name, qid, library in (("residual block delegates to torchvision", "q5",
                                "torchvision.models"),
                               ("Inception count through the flop counter", "q4",
                                "torch.utils.flop_counter")):
        namespace = definitions(with_bug(solution(), _variant(name)))
        result = grade_in_process(namespace, expected)[qid]  # through the probe child
        assert result.score == 0 and "Grading policy" in result.feedback(), result.feedback()
        assert library in result.feedback()


def test_check_in_the_notebook_says_what_differs(capsys):
    namespace = definitions(with_bug(solution(), _variant("ReLU before the addition")))
    Checker("03_architectures")("q5", namespace=namespace)
    out = capsys.readouterr().out
    assert "q5  A residual basic block: partial" in out or "failed" in out
    assert "FAIL" in out and "the last ReLU after the addition" in out


def test_check_and_grader_draw_different_inputs():
    for q in AUTO:
        assert [c.label for c in q.cases(0)] != [c.label for c in q.cases(grade.GRADE_SEED)]


def test_garbage_outcomes_are_failed_tests_not_crashes(expected):
    for q in AUTO:
        junk = [{"value": "a string"}, {"value": torch.zeros(2)}, {"value": None}, None,
                {"value": [1.5]}, {"value": {"a": 1}}, {"value": [[1]]}, 42, {"value": 3}]
        result = judge(q, expected[q.id], junk)
        assert result.score == 0 and len(result.cases) == len(expected[q.id])


def test_a_hang_that_swallows_exceptions_costs_its_question_only(expected):
    namespace = definitions(solution())
    exec(HANGING_BLOCK, namespace)
    q5 = A3.question("q5")
    report = probe_question(namespace, q5, q5.cases(0), timeout=1.5)
    assert "stopped after 1.5 s" in report["note"] and report["outcomes"] == []
    q6 = A3.question("q6")
    assert judge(q6, expected["q6"], probe_question(namespace, q6, q6.cases(grade.GRADE_SEED))[
        "outcomes"]).score == q6.points


def test_generated_notebook_has_stubs_and_a_written_question():
    text = ASSIGNMENT.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("".join(c["source"]).count("raise NotImplementedError") for c in code) == 12
    assert nb["cells"][1]["metadata"]["tags"] == ["nbval-skip", "colab-setup"]
    assert len(answers(solution())["q8"].split()) > 150 and answers(student()) == {}


# --------------------------------------------------------------------------------------
# A whole notebook through the sandboxed runner: a hang and an attack on the grader
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(sandbox.landlock_abi() < 6, reason="needs Landlock with signal scoping "
                    "(Linux 6.12+); without it, grade untrusted work in a container")
def test_a_hang_and_an_attack_on_the_grader_change_nothing_else(tmp_path):
    """The solution's answers, except q5 hangs; a cell patches the grader in its process,
    writes fake results and a .pth, and starts a daemon to try again later."""
    results, pth = tmp_path / "r.json", tmp_path / "userbase" / "course_evil.pth"
    results.write_text("{}")
    nb = answers_only(solution())
    replace_cell(nb, "ResidualBlock", HANGING_BLOCK.strip())
    attack = (GRADER_TAMPERING.strip().replace("TARGETS", repr([str(results), str(pth)]))
              .replace("STOP_AT", str(os.getpid())).replace("DELAY", "1.0"))
    nb.cells.insert(3, new_code_cell(attack))
    path = tmp_path / "03_architectures.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    report = grade.grade_notebook(path, timeout=60, cell_timeout=3, question_timeout=3,
                                  environment=sandbox.Environment({}), seed=grade.GRADE_SEED)
    assert report.scores() == {**FULL, "q5": 0, "q8": None}, (report.notes, report.text())
    assert "stopped after 3 s" in next(r for r in report.results if r.id == "q5").note
    assert time.monotonic() - start < 50
    time.sleep(1.5)  # past the daemon's delay
    assert "forged" not in results.read_text() and "daemon" not in results.read_text()
    assert not pth.exists()
