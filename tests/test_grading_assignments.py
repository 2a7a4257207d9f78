"""What every assignment's grader must do, tested once for Assignments 2-5: the solution gets
full marks and the student notebook zero; each classic bug (the fixtures' variants) loses marks
on its own question only, with feedback that says why; the check() inputs differ from the
grader's; junk outcomes are failed tests, not crashes; a hang that swallows the timer's
exceptions costs its question only; the generated notebook has stubs and no solutions; and a
whole notebook with a hang and an attack on the grader goes through the sandboxed runner with
nothing else changed.

Answer cells run in this process and each question's tests through
``probe.probe_question`` (forked, as ``check()`` and the grader run them) or, for the many wrong
answers, the child's function ``run_question`` in this process (``fork=False``), judged
against expected values computed once per assignment. What is particular to one assignment
(its honest other forms, the wording of its feedback, its library policy) stays in
``test_grading_aNN.py``; Assignment 1 keeps its own, older module (test_grading.py).
"""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest
import torch
from grading_fixtures import GRADER_TAMPERING, defining_cell, with_bug
from grading_harness import SPECS, expected, grade_in_process
from nbformat.v4 import new_code_cell

from course_utils import grade
from course_utils.grading import sandbox
from course_utils.grading.core import judge
from course_utils.grading.notebook import answers
from course_utils.grading.probe import probe_question, run_question

IDS = [s.name for s in SPECS]
VARIANTS = [(s, v) for s in SPECS for v in s.fixtures.VARIANTS]

# Words one of which any feedback on a wrong answer contains: it says what went wrong.
EXPLAINS = ("expected", "raised", "must return", "policy", "should", "do not match", "Hint",
            "no gradient")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_solution_scores_full_marks(spec):
    for result in grade_in_process(spec, spec.definitions(spec.solution())).values():
        assert result.status == "passed", result.feedback()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_solution_scores_full_marks_on_the_inputs_check_shows(spec):
    namespace = spec.definitions(spec.solution())
    for q in spec.auto:
        cases = q.cases(0)
        report = run_question(namespace, q, cases, enforce=False)
        assert judge(q, cases, report["outcomes"]).status == "passed", q.id


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_student_notebook_scores_zero_and_says_not_answered(spec):
    results = grade_in_process(spec, spec.definitions(spec.student()), fork=False)
    assert set(results) == set(spec.full)
    for result in results.values():
        assert result.score == 0 and result.status == "not answered", result.feedback()
        assert "not written yet" in result.feedback()


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # A2's float(penalty)
@pytest.mark.parametrize(("spec", "variant"), VARIANTS,
                         ids=[f"{s.name[:2]}: {v.name}" for s, v in VARIANTS])
def test_wrong_answer_loses_marks_only_on_its_question(spec, variant):
    namespace = spec.definitions(with_bug(spec.solution(), variant))
    results = grade_in_process(spec, namespace, fork=False)
    broken = results[variant.breaks]
    assert broken.score < broken.points, f"{variant.name} was not caught"
    feedback = broken.feedback()
    assert "Traceback" not in feedback
    assert any(word in feedback for word in EXPLAINS), feedback
    for qid, result in results.items():
        if qid != variant.breaks:
            assert result.score == result.points, f"{variant.name} also broke {qid}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_there_are_enough_wrong_answers_for_every_question(spec):
    variants = spec.fixtures.VARIANTS
    assert len(variants) >= 15
    assert {v.breaks for v in variants} == set(spec.full)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_check_and_grader_draw_different_inputs_the_same_for_a_seed(spec):
    for q in spec.auto:
        if spec.labels_vary:
            assert [c.label for c in q.cases(0)] != [c.label for c in q.cases(grade.GRADE_SEED)]
        assert [c.label for c in q.cases(3)] == [c.label for c in q.cases(3)]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_garbage_outcomes_are_failed_tests_not_crashes(spec):
    junk = [{"value": "a string"}, {"value": torch.zeros(2)}, {"value": None}, None,
            {"value": [1.5]}, {"value": {"a": 1}}, {"value": [[1]]}, 42, {"value": 3},
            {"value": [torch.zeros(2), "x"]}, {"value": {"changed": [], "head": {}}},
            {"value": {"logits": torch.zeros(2)}}, {"value": {"x": 1.0}}]
    for q in spec.auto:
        result = judge(q, expected(spec.name)[q.id], junk)
        assert result.score == 0 and len(result.cases) == len(expected(spec.name)[q.id])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_hang_that_swallows_exceptions_costs_its_question_only(spec):
    source, _, hung_id, spared_id = spec.hang
    namespace = spec.definitions(spec.solution())
    exec(getattr(spec.fixtures, source), namespace)
    hung, spared = spec.assignment.question(hung_id), spec.assignment.question(spared_id)
    report = probe_question(namespace, hung, hung.cases(0), timeout=1.5)
    assert "stopped after 1.5 s" in report["note"] and report["outcomes"] == []
    outcomes = probe_question(namespace, spared, spared.cases(grade.GRADE_SEED))["outcomes"]
    assert judge(spared, expected(spec.name)[spared_id], outcomes).score == spared.points


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_generated_notebook_has_stubs_and_a_written_question(spec):
    text = spec.fixtures.FILES.assignment_path.read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("".join(c["source"]).count("raise NotImplementedError") for c in code) == \
        spec.stubs
    assert nb["cells"][1]["metadata"]["tags"] == ["nbval-skip", "colab-setup"]
    assert nb["metadata"]["course"] == {"assignment": spec.name}
    assert len(answers(spec.solution())[spec.written].split()) > spec.min_words
    assert answers(spec.student()) == {}


@pytest.mark.skipif(sandbox.landlock_abi() < 6, reason="needs Landlock with signal scoping "
                    "(Linux 6.12+); without it, grade untrusted work in a container")
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_hang_and_an_attack_on_the_grader_change_nothing_else(spec, tmp_path):
    """The solution's answers, except one question hangs; a cell patches the grader in its
    process, writes fake results and a .pth, and starts a daemon to try again later."""
    source, function, hung_id, _ = spec.hang
    results, pth = tmp_path / "r.json", tmp_path / "userbase" / "course_evil.pth"
    results.write_text("{}")
    nb = spec.fixtures.FILES.answers_only(spec.solution())
    cell = defining_cell(nb, function)  # what the cell defines before `function` stays
    at = min(i for i in (cell.source.find(f"def {function}("),
                         cell.source.find(f"class {function}(")) if i >= 0)
    cell.source = cell.source[:at] + getattr(spec.fixtures, source).strip()
    attack = (GRADER_TAMPERING.strip().replace("TARGETS", repr([str(results), str(pth)]))
              .replace("STOP_AT", str(os.getpid())).replace("DELAY", "1.0"))
    nb.cells.insert(3, new_code_cell(attack))
    path = tmp_path / f"{spec.name}.ipynb"
    nbformat.write(nb, path)
    start = time.monotonic()
    limit = spec.question_timeout
    report = grade.grade_notebook(path, timeout=60, cell_timeout=5, question_timeout=limit,
                                  environment=sandbox.Environment({}), seed=grade.GRADE_SEED)
    assert report.scores() == {**spec.full, hung_id: 0, spec.written: None}, \
        (report.notes, report.text())
    assert f"stopped after {limit:g} s" in next(r for r in report.results if r.id == hung_id).note
    assert time.monotonic() - start < 60
    time.sleep(1.5)  # past the daemon's delay
    assert "forged" not in results.read_text() and "daemon" not in results.read_text()
    assert not pth.exists()
