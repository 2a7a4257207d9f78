"""The grader on whole notebooks: own kernel, time limit, crash, tampering, command line.

Each notebook here starts a Jupyter kernel and a test process (seconds each), so this file
grades only a few representative notebooks; the many wrong answers are in test_grading.py.
"""

from __future__ import annotations

import csv
import json

import nbformat
from grading_fixtures import ASSIGNMENT, SOLUTION, hanging, tampering

from course_utils import grade


def test_command_line_grades_the_solution_full_and_the_student_version_zero(tmp_path, capsys):
    out_json, out_csv = tmp_path / "results.json", tmp_path / "grades.csv"
    code = grade.main([str(SOLUTION), str(ASSIGNMENT), "--json", str(out_json),
                       "--csv", str(out_csv), "--timeout", "300"])
    assert code == 0
    text = capsys.readouterr().out
    assert "total (auto-graded) 85 / 85" in text and "total (auto-graded) 0 / 85" in text
    solution, student = json.loads(out_json.read_text())
    assert solution["score"] == 85 and student["score"] == 0
    assert solution["output"] == "Notebook ran and was graded."  # no errors, no time-out
    assert all(t["status"] == "passed" for t in solution["tests"])
    assert [t["score"] for t in student["tests"]] == [0, 0, 0, 0, 0, 0]
    assert "not written yet" in student["tests"][0]["output"]
    assert "Model answer" in solution["tests"][5]["output"]  # the written answer, for a human
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["auto_total"] for r in rows] == ["85.0", "0.0"]


def test_a_hanging_notebook_is_stopped_and_still_graded(tmp_path):
    path = tmp_path / "01_optimizers.ipynb"
    nbformat.write(hanging(), path)
    report = grade.grade_notebook(path, timeout=8, question_timeout=3)
    assert any("timed out" in note and "time limit 8 s" in note for note in report.notes)
    scores = report.scores()
    assert scores["q2"] == 0
    assert "stopped after 3 s" in report.results[1].note
    assert [scores[q] for q in ("q1", "q3", "q4", "q5")] == [15, 20, 20, 15]


def test_tampering_gains_nothing_and_a_crashed_kernel_is_reported(tmp_path):
    path = tmp_path / "01_optimizers.ipynb"
    nbformat.write(tampering(), path)
    report = grade.grade_notebook(path, timeout=120, executed_dir=tmp_path / "executed")
    assert any("kernel died" in note for note in report.notes)
    assert report.score == 0 and report.max_score == 85
    assert all(r.points < 1000 for r in report.results)
    q1 = report.results[0]
    assert q1.status == "failed" and "expected param" in q1.feedback()
    # Inside the notebook, the tampering did work: the fake check printed full marks.
    executed = nbformat.read(tmp_path / "executed" / path.name, as_version=4)
    outputs = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "q1: 15/15 points" in outputs


def test_json_for_one_notebook_is_a_single_results_object(tmp_path, monkeypatch):
    monkeypatch.setattr(grade, "probe", lambda *args: ({}, []))  # no test process needed here
    out = tmp_path / "results.json"
    assert grade.main([str(ASSIGNMENT), "--no-run", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert isinstance(results, dict) and results["extra_data"]["assignment"] == "01_optimizers"
