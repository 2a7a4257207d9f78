"""Grade submitted notebooks: ``python -m course_utils.grade NOTEBOOK_OR_FOLDER...``.

For each notebook:

1. the expected values are computed here, from the package's tests, before any student code
   runs;
2. the notebook is executed top to bottom in its own Jupyter kernel, in a scratch folder,
   with one time limit for the whole notebook (``--timeout``); errors do not stop the run, a
   hang is killed at the limit (the executed notebook is kept with ``--executed DIR``, for
   the parts graded by hand);
3. only the notebook's *definitions* (imports, functions, classes, constants) are executed
   again, in a fresh Python process, which calls them on the tests' inputs and hands back
   raw values, with a time limit per question (``--question-timeout``);
4. those values are judged here, against the expected values of step 1.

Student code therefore never runs in the process that holds the expected values and the
verdict: redefining ``check``, patching ``course_utils.grading`` or editing expected values
in the notebook changes nothing. (The grader resists tampering from Python; against a
student who attacks the machine itself -- killing processes, rewriting installed files --
run it in a container, as Gradescope does. It refuses to score a notebook that changed the
grading package's files on disk.)

Output: a score per question and a total on stdout; ``--json FILE`` writes a Gradescope
``results.json`` (a list of them for several notebooks); ``--csv FILE`` one row per notebook.
The grader itself never crashes on a bad notebook: it reports what went wrong and scores the
questions it could.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .grading.core import Assignment, Case, QuestionResult, judge, load_assignment, manual_result
from .grading.notebook import answers, child_env, code_cells, execute

GRADE_SEED = 1  # check() in the notebook uses seed 0: grading draws inputs students never saw
CHECKER_CALL = re.compile(r"Checker\(\s*[\"'](\d\d_[a-z0-9_]+)[\"']")


@dataclass
class NotebookReport:
    """The grade of one notebook."""

    notebook: str
    assignment: Assignment | None
    results: list[QuestionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    seed: int = GRADE_SEED

    @property
    def score(self) -> float:
        return round(sum(r.score for r in self.results if r.status != "manual"), 2)

    @property
    def max_score(self) -> float:
        return self.assignment.auto_points if self.assignment else 0.0

    def scores(self) -> dict[str, float | None]:
        return {r.id: (None if r.status == "manual" else r.score) for r in self.results}

    def text(self, verbose: bool = False) -> str:
        name = self.assignment.id if self.assignment else "unknown assignment"
        lines = [f"{self.notebook}  ({name}, graded in {self.seconds:.1f} s)"]
        lines += [f"  ! {note}" for note in self.notes]
        for r in self.results:
            if r.status == "manual":
                words = len(self.answers.get(r.id, "").split())
                lines.append(f"  {r.id:<4} {r.title:<52} {'manual':>7} / {r.points:g}   "
                             + (f"({words} words of written answer)" if words else
                                "(no written answer)"))
                continue
            passed = sum(c.passed for c in r.cases)
            lines.append(f"  {r.id:<4} {r.title:<52} {r.score:>7g} / {r.points:g}   "
                         f"{r.status} ({passed}/{len(r.cases)} tests)")
            if r.note:
                lines.append(f"         {r.note}")
            failures = [c for c in r.cases if not c.passed]
            if r.status == "not answered":
                lines += [f"         {m}" for m in sorted({c.message for c in failures})]
                continue
            if r.note:  # cut off by a time limit: the note says it, skip "did not run" lines
                failures = [c for c in failures if not c.message.startswith("did not run")]
            for c in failures[: None if verbose else 2]:
                lines.append(f"         FAIL {c.label}\n              {c.message}")
            if not verbose and len(failures) > 2:
                lines.append(f"         ... and {len(failures) - 2} more failing tests")
        manual = self.assignment.manual_points if self.assignment else 0
        lines.append(f"  total (auto-graded) {self.score:g} / {self.max_score:g}"
                     + (f"   (+ {manual:g} points graded by hand)" if manual else ""))
        return "\n".join(lines)

    def gradescope(self) -> dict[str, Any]:
        """A Gradescope autograder ``results.json`` object (extra detail in ``extra_data``)."""
        tests = []
        for r in self.results:
            if r.status == "manual":
                answer = self.answers.get(r.id, "")
                tests.append({"name": f"{r.id} {r.title} (graded by hand, {r.points:g} points)",
                              "score": 0, "max_score": 0, "status": "passed",
                              "output": ("Written answer:\n\n" + answer) if answer else
                              "No written answer found (a markdown cell tagged "
                              f"'answer:{r.id}')."})
            else:
                tests.append({"name": f"{r.id} {r.title}", "score": r.score,
                              "max_score": r.points,
                              "status": "passed" if r.status == "passed" else "failed",
                              "output": r.feedback(verbose=True)})
        return {
            "score": self.score,
            "output": "\n".join(self.notes) or "Notebook ran and was graded.",
            "tests": tests,
            "extra_data": {
                "notebook": self.notebook,
                "assignment": self.assignment.id if self.assignment else None,
                "seed": self.seed,
                "max_auto_score": self.max_score,
                "questions": {r.id: {"score": None if r.status == "manual" else r.score,
                                     "points": r.points, "status": r.status}
                              for r in self.results},
                "answers": self.answers,
                "seconds": round(self.seconds, 1),
            },
        }


# --------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------

def find_assignment_id(nb: Any, path: Path) -> str | None:
    """From the notebook's metadata, its file name, or its ``Checker("NN_name")`` call."""
    meta = nb.get("metadata", {}).get("course", {})
    if isinstance(meta, dict) and isinstance(meta.get("assignment"), str):
        return meta["assignment"]
    if re.match(r"^\d\d_[a-z0-9_]+$", path.stem):
        return path.stem
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        match = CHECKER_CALL.search("".join(source) if isinstance(source, list) else source)
        if match:
            return match.group(1)
    return None


def package_fingerprint() -> str:
    """A hash of the grading code on disk, to notice a notebook that rewrote it."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for file in sorted([root / "grade.py", *sorted((root / "grading").glob("*.py"))]):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


_CASES: dict[tuple[str, int], dict[str, list[Case]]] = {}


def prepared_cases(assignment: Assignment, seed: int) -> dict[str, list[Case]]:
    """Every auto-graded question's cases with their expected values computed (cached)."""
    key = (assignment.id, seed)
    if key not in _CASES:
        cases = {q.id: q.cases(seed) for q in assignment.questions if not q.manual}
        for case_list in cases.values():
            for case in case_list:
                case.expected()
        _CASES[key] = cases
    return _CASES[key]


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        process.kill()
    process.wait()


def probe(assignment: Assignment, cells: list[dict[str, Any]], seed: int,
          question_timeout: float, profile: str | None) -> tuple[dict[str, Any], list[str]]:
    """Run the student's definitions on the tests' inputs in a fresh process; raw outcomes."""
    import torch

    notes: list[str] = []
    n_questions = sum(not q.manual for q in assignment.questions)
    limit = question_timeout * (n_questions + 1) + 60  # + importing torch, on a busy machine
    with tempfile.TemporaryDirectory(prefix="course-grade-probe-") as tmp:
        defs, out = Path(tmp, "definitions.json"), Path(tmp, "outcomes.pt")
        defs.write_text(json.dumps(cells), encoding="utf-8")
        log = Path(tmp, "log.txt")
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "course_utils.grading.probe", assignment.id, str(defs),
                 str(out), "--seed", str(seed), "--question-timeout", str(question_timeout)],
                cwd=tmp, env=child_env(profile, headless=True), stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill(process)
                notes.append(f"the test process was stopped after {limit:g} s")
        try:
            report = torch.load(out, weights_only=True) if out.exists() else {}
        except Exception as error:  # noqa: BLE001 - a garbled file counts as no outcomes
            report = {}
            notes.append(f"the test process left unreadable results ({type(error).__name__})")
        if process.returncode not in (0, None) and not notes:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            notes.append(f"the test process ended with code {process.returncode}: "
                         + " | ".join(tail)[-300:])
    return (report if isinstance(report, dict) else {}), notes


# --------------------------------------------------------------------------------------
# Grading one notebook
# --------------------------------------------------------------------------------------

def grade_notebook(path: str | Path, *, assignment: str | None = None, timeout: float = 300,
                   question_timeout: float = 60, seed: int = GRADE_SEED,
                   profile: str | None = "smoke", run_notebook: bool = True,
                   executed_dir: str | Path | None = None) -> NotebookReport:
    """Grade one notebook; never raises because of what the notebook contains."""
    start = time.monotonic()
    path = Path(path)
    report = NotebookReport(str(path), None, seed=seed)
    try:
        _grade_into(report, path, assignment, timeout, question_timeout, seed, profile,
                    run_notebook, executed_dir)
    except Exception as error:  # noqa: BLE001 - a grader bug must not sink a whole batch
        report.notes.append(f"grader error: {type(error).__name__}: {error}")
        if report.assignment is not None:
            done = {r.id for r in report.results}
            for q in report.assignment.questions:
                if q.id not in done:
                    report.results.append(manual_result(q) if q.manual else
                                          judge(q, prepared_cases(report.assignment, seed)[q.id],
                                                [], note="not graded (grader error)"))
    report.seconds = time.monotonic() - start
    return report


def _grade_into(report: NotebookReport, path: Path, assignment_id: str | None, timeout: float,
                question_timeout: float, seed: int, profile: str | None, run_notebook: bool,
                executed_dir: str | Path | None) -> None:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001
        nb = None
        report.notes.append(f"could not read the notebook: {type(error).__name__}: {error}")
    assignment_id = assignment_id or find_assignment_id(nb or {}, path)
    if assignment_id is None:
        report.notes.append("could not tell which assignment this is: pass --assignment")
        return
    assignment = report.assignment = load_assignment(assignment_id)
    cases = prepared_cases(assignment, seed)  # expected values, before any student code runs
    fingerprint = package_fingerprint()

    outcomes: dict[str, Any] = {}
    probe_notes: dict[str, str] = {}
    if nb is not None:
        report.answers = answers(nb)
        if run_notebook:
            run = execute(nb, timeout, profile)
            if run.ended != "completed":
                report.notes.append(run.summary())
            report.notes += [f"error in {e}" for e in run.errors[:5]]
            if len(run.errors) > 5:
                report.notes.append(f"... and {len(run.errors) - 5} more cells raised errors")
            if executed_dir is not None:
                Path(executed_dir).mkdir(parents=True, exist_ok=True)
                nbformat.write(run.nb, Path(executed_dir, path.name))
        if package_fingerprint() != fingerprint:
            report.notes.append("the notebook modified the grading package on disk: not "
                                "graded; reinstall course_utils before grading further")
        else:
            raw, notes = probe(assignment, code_cells(nb), seed, question_timeout, profile)
            report.notes += notes
            report.notes += [str(p) for p in raw.get("definition_problems", [])][:5] \
                if isinstance(raw.get("definition_problems"), list) else []
            outcomes = raw.get("outcomes") if isinstance(raw.get("outcomes"), dict) else {}
            probe_notes = raw.get("notes") if isinstance(raw.get("notes"), dict) else {}

    for q in assignment.questions:
        if q.manual:
            report.results.append(manual_result(q))
            continue
        got = outcomes.get(q.id)
        got = got if isinstance(got, list) else []
        note = str(probe_notes.get(q.id, ""))
        if not note and q.id not in outcomes and nb is not None:
            note = "not run (see the notes above)"
        report.results.append(judge(q, cases[q.id], got, note=note))


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def _notebooks(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(x for x in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in x.parts)
        else:
            found.append(p)
    return found


def write_csv(reports: list[NotebookReport], path: str | Path) -> None:
    """One row per notebook: the score of each question, the auto-graded total, notes."""
    qids = []
    for r in reports:
        for q in r.results:
            if q.id not in qids:
                qids.append(q.id)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", *qids, "auto_total", "auto_max", "notes"])
        for r in reports:
            scores = r.scores()
            writer.writerow([r.notebook, *["manual" if scores.get(q, 0) is None else
                                           scores.get(q, "") for q in qids],
                             r.score, r.max_score, " | ".join(r.notes)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.grade",
        description="Grade assignment notebooks (files, or folders of .ipynb files).")
    parser.add_argument("notebooks", nargs="+", help="notebooks or folders of notebooks")
    parser.add_argument("--json", help="write a Gradescope results.json (a list for several)")
    parser.add_argument("--csv", help="write one row of scores per notebook")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds the whole notebook may run (default 300)")
    parser.add_argument("--question-timeout", type=float, default=60,
                        help="seconds each question's tests may run (default 60)")
    parser.add_argument("--assignment", help="assignment id, e.g. 01_optimizers (default: "
                        "from the notebook's metadata or name)")
    parser.add_argument("--seed", type=int, default=GRADE_SEED,
                        help=f"seed of the tests' random inputs (default {GRADE_SEED})")
    parser.add_argument("--profile", default="smoke",
                        help="COURSE_PROFILE for running the notebook (default smoke)")
    parser.add_argument("--no-run", action="store_true",
                        help="do not execute the notebooks, only test their definitions")
    parser.add_argument("--executed", help="folder to save the executed notebooks in")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every failing test")
    args = parser.parse_args(argv)

    paths = _notebooks(args.notebooks)
    if not paths:
        parser.error("no notebooks found")
    reports = []
    for path in paths:
        report = grade_notebook(path, assignment=args.assignment, timeout=args.timeout,
                                question_timeout=args.question_timeout, seed=args.seed,
                                profile=args.profile, run_notebook=not args.no_run,
                                executed_dir=args.executed)
        print(report.text(args.verbose), flush=True)
        reports.append(report)
    if len(reports) > 1:
        print(f"\n{len(reports)} notebooks graded.")
    if args.json:
        payload = [r.gradescope() for r in reports]
        Path(args.json).write_text(json.dumps(payload[0] if len(payload) == 1 else payload,
                                              indent=1), encoding="utf-8")
    if args.csv:
        write_csv(reports, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
