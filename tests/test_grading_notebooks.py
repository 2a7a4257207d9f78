"""The grader on whole notebooks, through its sandboxed runner: honest forms, hangs, attacks.

Each notebook here starts a runner process (a few seconds each), so this file grades few,
representative notebooks, each once (shared through module fixtures); the many wrong answers
are in test_grading.py. Notebooks are cut after question 5 (``answers_only``), except the
solution in the command-line test, which is graded end to end, training runs included.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from grading_fixtures import (
    SOLUTION,
    answers_only,
    attacks,
    environment_tampering,
    honest_forms,
    student,
    swallowed_hang,
)

from course_utils import grade
from course_utils.grading import sandbox

ROOT = Path(__file__).resolve().parents[1]
FULL = {"q1": 15, "q2": 15, "q3": 20, "q4": 20, "q5": 15}
LANDLOCK = sandbox.landlock_abi()
# In-process tests watch nothing: checking the environment is tested on a copy of the package
# (the last two tests), so edits elsewhere in a working tree cannot disturb the others.
QUIET = sandbox.Environment({})


def _write(nb, folder: Path, name: str = "01_optimizers.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def _alive(token: str) -> list[int]:
    """Processes whose command line contains ``token``."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and token in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                    errors="replace"):
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_command_line_grades_the_solution_full_and_the_student_version_zero(tmp_path, capsys,
                                                                           monkeypatch):
    # The fingerprint of a shared working tree changes whenever anyone edits it; it is tested
    # on throw-away copies of the package below.
    monkeypatch.setattr(sandbox, "Environment", lambda: QUIET)
    out_json, out_csv = tmp_path / "results.json", tmp_path / "grades.csv"
    code = grade.main([str(SOLUTION), str(_write(answers_only(student()), tmp_path / "s")),
                       "--json", str(out_json), "--csv", str(out_csv), "--timeout", "300"])
    assert code == 0
    text = capsys.readouterr().out
    assert "total (auto-graded) 85 / 85" in text and "total (auto-graded) 0 / 85" in text
    solution, student_result = json.loads(out_json.read_text())
    assert solution["score"] == 85 and student_result["score"] == 0
    assert solution["output"] == "Notebook ran and was graded."  # no errors, no time-out
    assert all(t["status"] == "passed" for t in solution["tests"])
    assert [t["score"] for t in student_result["tests"]] == [0, 0, 0, 0, 0, 0]
    assert "not written yet" in student_result["tests"][0]["output"]
    assert "Model answer" in solution["tests"][5]["output"]  # the written answer, for a human
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["auto_total"] for r in rows] == ["85.0", "0.0"]


# --------------------------------------------------------------------------------------
# Honest answers in any form get their marks, and check() agrees
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("honest")
    path = _write(honest_forms(), folder)
    report = grade.grade_notebook(path, executed_dir=folder / "executed", timeout=120,
                                  environment=QUIET, seed=grade.GRADE_SEED)
    return report, nbformat.read(folder / "executed" / path.name, as_version=4)


def test_honest_forms_get_full_marks(honest):
    report, _ = honest
    assert report.scores() == {**FULL, "q6": None}, report.text(verbose=True)
    assert report.notes == [], report.notes


def test_check_in_the_notebook_agrees_with_the_grader(honest):
    report, executed = honest
    outputs = {c.source.strip(): "".join(o.get("text", "") for o in c.outputs)
               for c in executed.cells if c.cell_type == "code"}
    for qid, points in FULL.items():
        out = outputs[f'check("{qid}")']
        assert f"{points}/{points} points" in out, out
        assert report.scores()[qid] == points
    assert "defined" not in outputs.get('check("q5")', "")  # %%capture swallowed the print


# --------------------------------------------------------------------------------------
# One question's failure stays in that question
# --------------------------------------------------------------------------------------

def test_a_hang_that_swallows_the_timeout_costs_one_question(tmp_path):
    path = _write(swallowed_hang(), tmp_path)
    start = time.monotonic()
    report = grade.grade_notebook(path, timeout=60, cell_timeout=3, question_timeout=3,
                                  environment=QUIET)
    assert report.scores() == {**FULL, "q2": 0, "q6": None}, report.text(verbose=True)
    assert "stopped after 3 s" in report.results[1].note
    assert any("stopped after 3 s and skipped" in note for note in report.notes)
    assert time.monotonic() - start < 45


# --------------------------------------------------------------------------------------
# Student code cannot reach the grader, its environment, or the next submission
# --------------------------------------------------------------------------------------

def _grade_from_a_copy(tmp_path: Path, sandbox_on: bool,
                       first: nbformat.NotebookNode | None = None):
    """Grade a tampering submission, then a blank one, with a throw-away copy of the package.

    The first submission (default: ``environment_tampering``) writes into the copy's grading
    code and into a temporary user site folder (``PYTHONUSERBASE``), never into the real
    installation. Returns the finished grader process and the files involved.
    """
    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "course_utils", copy / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONUSERBASE": str(tmp_path / "userbase")}
    env.pop("COURSE_GRADE_SANDBOX", None)
    if not sandbox_on:
        env["COURSE_GRADE_SANDBOX"] = "off"
    user_site = subprocess.run(
        [sys.executable, "-c", "import site; print(site.getusersitepackages())"], env=env,
        capture_output=True, text=True, check=True).stdout.strip()
    results = tmp_path / "r.json"
    results.write_text("{}")
    files = {"grading": copy / "course_utils" / "grading" / "a01_optimizers.py",
             "pth": Path(user_site) / "course_evil.pth", "results": results}
    writes = [(str(files["grading"]), "\nASSIGNMENT.questions.clear()\n"),
              (str(files["pth"]), "import os\n")]
    _write(first or environment_tampering(writes), tmp_path / "subs", "a_tamper.ipynb")
    _write(answers_only(student()), tmp_path / "subs", "b_blank.ipynb")
    boot = (f"import sys; sys.path.insert(0, {str(copy)!r}); import course_utils; "
            f"assert course_utils.__file__.startswith({str(copy)!r}), course_utils.__file__; "
            "from course_utils.grade import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", boot, str(tmp_path / "subs"), "--assignment",
                           "01_optimizers", "--json", str(results), "-v"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    return done, files


@pytest.mark.skipif(LANDLOCK < 6, reason="needs Landlock with signal scoping (Linux 6.12+); "
                    "without it, grade untrusted work in a container")
def test_attacks_on_the_grader_and_its_environment_gain_nothing(tmp_path):
    """The first submission patches the grader in its own process, inspects stacks, floods
    its output, writes fake results, tampers with the grading code and the site folder,
    leaves a daemon to try again later, and kills every process above it. The grader
    survives, records the true scores, and grades the next submission unaffected."""
    copy = tmp_path / "pkg" / "course_utils" / "grading" / "a01_optimizers.py"
    userbase = tmp_path / "userbase"
    targets = [str(tmp_path / "r.json"), str(copy), str(userbase / "course_evil.pth")]
    nb = attacks(targets, stop_at=os.getpid(), delay=1.0)
    done, files = _grade_from_a_copy(tmp_path, sandbox_on=True, first=nb)
    assert done.returncode == 0, done.stdout + done.stderr  # the grader survived
    time.sleep(1.5)  # past the daemon's delay: had it survived, it would have written
    text = files["results"].read_text()
    assert "forged" not in text and "daemon" not in text
    grading_code = files["grading"].read_text()
    assert "forged" not in grading_code and "daemon" not in grading_code
    assert not userbase.exists()
    assert _alive("time.sleep(1.0)") == []
    attacker, blank = json.loads(text)
    assert attacker["score"] == 0 and blank["score"] == 0
    assert len(blank["tests"]) == 6 and "not graded" not in blank["output"]
    adam = next(t for t in attacker["tests"] if t["name"].startswith("q4"))
    assert adam["score"] == 0  # stack inspection found no expected value
    schedules = next(t for t in attacker["tests"] if t["name"].startswith("q5"))
    assert schedules["score"] == 0  # nor did answers precomputed for known seeds
    assert "more characters not shown" in schedules["output"]
    assert len(schedules["output"]) < 8000  # 100 KB printed per call, capped


def test_without_the_sandbox_a_modified_environment_is_refused(tmp_path):
    done, files = _grade_from_a_copy(tmp_path, sandbox_on=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert files["pth"].exists()  # the tampering happened (in the throw-away copy) ...
    tamper, blank = json.loads(files["results"].read_text())
    # ... and was caught: the submission that did it is not graded, nor is the next one.
    assert "this submission modified the grading environment" in tamper["output"]
    assert "a01_optimizers.py" in tamper["output"] and "course_evil.pth" in tamper["output"]
    assert "changed since grading started" in blank["output"]
    assert tamper["score"] == 0 and blank["score"] == 0 and len(blank["tests"]) == 6
