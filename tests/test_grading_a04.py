"""Assignment 4 (transfer learning) is graded right: the solution full, the stubs zero, each
classic bug only on its own question, a hang and an attack on the grader contained.

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
from grading_fixtures_a04 import (
    ASSIGNMENT,
    FILES,
    HANGING_FREEZE,
    HONEST_FORMS,
    HONEST_FORMS_2,
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

A4 = load_assignment("04_transfer_learning")
AUTO = [q for q in A4.questions if not q.manual]
FULL = {q.id: q.points for q in AUTO}
definitions = FILES.definitions


@pytest.fixture(scope="module")
def expected():
    """The grader's cases at its test seed, with the library's values computed once."""
    cases = grade.prepared_cases(A4, grade.GRADE_SEED)
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


def test_solution_scores_full_marks_on_the_inputs_check_shows():
    checker = Checker("04_transfer_learning")
    namespace = definitions(solution())
    for q in AUTO:
        result = checker.run(q.id, namespace)
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
                                             "Hint")), feedback
    for qid, result in results.items():
        if qid != variant.breaks:
            assert result.score == result.points, f"{variant.name} also broke {qid}"


@pytest.mark.parametrize("forms", [HONEST_FORMS, HONEST_FORMS_2], ids=["forms1", "forms2"])
def test_honest_answers_in_other_forms_get_full_marks(forms, expected):
    namespace = definitions(solution())
    exec(forms, namespace)
    for result in grade_in_process(namespace, expected, fork=False).values():
        assert result.status == "passed", result.feedback()


def test_there_are_enough_wrong_answers_for_every_question():
    assert len(VARIANTS) >= 15
    assert {v.breaks for v in VARIANTS} == set(FULL)


def _variant(name: str):
    return next(v for v in VARIANTS if v.name == name)


def test_feedback_names_the_mistake(expected):
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
        result = grade_in_process(definitions(with_bug(solution(), _variant(name))),
                                  expected, fork=False, only=(qid,))[qid]
        assert text in result.feedback(), (name, result.feedback())


def test_library_helpers_in_an_answer_score_zero_with_the_policy_message(expected):
    for name, qid, library in (("probe fitted with scikit-learn", "q5", "sklearn.linear_model"),
                               ("freezing through the course's transfer helper", "q1",
                                "course_utils.transfer")):
        namespace = definitions(with_bug(solution(), _variant(name)))
        result = grade_in_process(namespace, expected)[qid]  # through the probe child
        assert result.score == 0 and "Grading policy" in result.feedback(), result.feedback()
        assert library in result.feedback()


def test_check_in_the_notebook_says_what_differs(capsys):
    namespace = definitions(with_bug(solution(), _variant("BN left in train mode while frozen")))
    Checker("04_transfer_learning")("q1", namespace=namespace)
    out = capsys.readouterr().out
    assert "q1  Freeze all but the head: partial" in out, out
    assert "FAIL" in out and "running_mean" in out


def test_check_and_grader_draw_different_inputs():
    for q in AUTO:
        assert [c.label for c in q.cases(0)] != [c.label for c in q.cases(grade.GRADE_SEED)]


def test_garbage_outcomes_are_failed_tests_not_crashes(expected):
    for q in AUTO:
        junk = [{"value": "a string"}, {"value": torch.zeros(2)}, {"value": None}, None,
                {"value": [1.5]}, {"value": {"a": 1}}, {"value": [[1]]}, 42, {"value": 3},
                {"value": {"changed": [], "head": {}}}, {"value": {"logits": torch.zeros(2)}},
                {"value": {"features": torch.zeros(1)}}, {"value": {"x": 1.0}}]
        result = judge(q, expected[q.id], junk)
        assert result.score == 0 and len(result.cases) == len(expected[q.id])


def test_a_hang_that_swallows_exceptions_costs_its_question_only(expected):
    namespace = definitions(solution())
    exec(HANGING_FREEZE, namespace)
    q1 = A4.question("q1")
    report = probe_question(namespace, q1, q1.cases(0), timeout=1.5)
    assert "stopped after 1.5 s" in report["note"] and report["outcomes"] == []
    q2 = A4.question("q2")
    assert judge(q2, expected["q2"], probe_question(namespace, q2, q2.cases(grade.GRADE_SEED))[
        "outcomes"]).score == q2.points


def test_generated_notebook_has_stubs_and_a_written_question():
    text = ASSIGNMENT.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("".join(c["source"]).count("raise NotImplementedError") for c in code) == 5
    assert nb["cells"][1]["metadata"]["tags"] == ["nbval-skip", "colab-setup"]
    assert len(answers(solution())["q6"].split()) > 150 and answers(student()) == {}


def test_the_notebook_states_the_grading_policy():
    text = "\n".join(c.source for c in solution().cells if c.cell_type == "markdown")
    assert "course_utils.transfer" in text and "scikit-learn" in text


# --------------------------------------------------------------------------------------
# A whole notebook through the sandboxed runner: a hang and an attack on the grader
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(sandbox.landlock_abi() < 6, reason="needs Landlock with signal scoping "
                    "(Linux 6.12+); without it, grade untrusted work in a container")
def test_a_hang_and_an_attack_on_the_grader_change_nothing_else(tmp_path):
    """The solution's answers, except q1 hangs; a cell patches the grader in its process,
    writes fake results and a .pth, and starts a daemon to try again later."""
    results, pth = tmp_path / "r.json", tmp_path / "userbase" / "course_evil.pth"
    results.write_text("{}")
    nb = answers_only(solution())
    replace_cell(nb, "freeze_all_but_head", HANGING_FREEZE.strip())
    attack = (GRADER_TAMPERING.strip().replace("TARGETS", repr([str(results), str(pth)]))
              .replace("STOP_AT", str(os.getpid())).replace("DELAY", "1.0"))
    nb.cells.insert(3, new_code_cell(attack))
    path = tmp_path / "04_transfer_learning.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    # The questions build and train small networks: 8 s per question is twice what one took
    # on this 2-core machine at load 8 (q1 hangs and costs exactly that).
    report = grade.grade_notebook(path, timeout=60, cell_timeout=5, question_timeout=8,
                                  environment=sandbox.Environment({}), seed=grade.GRADE_SEED)
    assert report.scores() == {**FULL, "q1": 0, "q6": None}, (report.notes, report.text())
    assert "stopped after 8 s" in next(r for r in report.results if r.id == "q1").note
    assert time.monotonic() - start < 60
    time.sleep(1.5)  # past the daemon's delay
    assert "forged" not in results.read_text() and "daemon" not in results.read_text()
    assert not pth.exists()
