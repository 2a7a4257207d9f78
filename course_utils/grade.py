"""Grade submitted notebooks: ``python -m course_utils.grade NOTEBOOK_OR_FOLDER...``.

For each notebook:

1. the expected values are computed here, from the package's tests, before any student code
   runs; this process never imports or runs student code;
2. the grading environment is verified against the fingerprint taken when grading started
   (``grading/sandbox.py``): if an earlier submission changed it, this one is refused;
3. a sandboxed child (``grading/runner.py``: own session, clean environment, Landlock
   write/network/signal lock where the kernel has it) runs the notebook's code cells as
   IPython does, each cell under ``--cell-timeout``, the whole under ``--timeout``; then,
   given the seed, each question's tests in a child of their own, killed after
   ``--question-timeout``; it hands back only the student's outputs, in files;
4. every process of the submission is killed (process groups, marked processes, orphans),
   the environment is verified again, and only then are the outputs read and judged here.
   With ``--executed DIR``, the notebook is also run in a sandboxed Jupyter kernel and saved
   with its outputs, for the parts graded by hand.

Output: a score per question and a total on stdout; ``--json FILE`` writes a Gradescope
``results.json`` (a list of them for several notebooks); ``--csv FILE`` one row per notebook;
both are written only at the end, by this process. The grader never crashes on a bad
notebook: it reports what went wrong and scores the questions it could. Exit status 3: some
notebook was refused because the environment had been modified.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .grading import sandbox
from .grading.core import Assignment, Case, QuestionResult, judge, load_assignment, manual_result
from .grading.notebook import answers, code_cells, execute
from .grading.probe import OUTPUT_CAP

GRADE_SEED = 1  # a fixed seed, for reproducible tests of the grader; see new_seed()


def new_seed() -> int:
    """A fresh, secret seed for a grading run's inputs (recorded in every report).

    The package, and with it any fixed seed, is public; a notebook that knew the grading
    inputs could compute the expected values with the library in a cell. ``check()`` uses 0.
    """
    return secrets.randbelow(10**9) + 1
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
    sandbox: list[str] | None = None  # what the runner's sandbox covered (None: no run)
    refused: bool = False  # not graded: the grading environment was modified

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


@dataclass
class RunResult:
    """What came back from a submission's sandboxed run: outcomes per question, notes."""

    outcomes: dict[str, list[Any]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    cell_notes: list[str] = field(default_factory=list)
    output: dict[str, str] = field(default_factory=dict)
    sandbox: list[str] | None = None
    killed: int = 0


ANSWER_CAP = 10_000  # characters of a written answer copied into the report
OUTCOME_FILE_CAP = 64 * 2**20  # bytes of one question's outcomes file the grader reads


def run_submission(assignment: Assignment, cells: list[dict[str, Any]], seed: int, *,
                   timeout: float = 300, cell_timeout: float = 120,
                   question_timeout: float = 60, profile: str | None = "smoke") -> RunResult:
    """Run a notebook's cells and its questions' tests in a sandboxed child; raw outcomes.

    The child (``grading/runner.py``) gets the cells, then -- once they have run -- the seed
    of the inputs; it returns outcomes in files. This process enforces the time limits by
    killing, waits until every process of the submission is gone (:func:`sandbox.sweep`),
    and only then reads the files.
    """
    import torch

    result = RunResult()
    questions = [q.id for q in assignment.questions if not q.manual]
    hard_limit = timeout + len(questions) * (question_timeout + 5) + 90
    scratch = tempfile.mkdtemp(prefix="course-grade-")
    os.chmod(scratch, 0o700)
    marker, since = sandbox.new_marker(), sandbox.boot_ticks()
    sandbox.become_subreaper()
    events_r, events_w = os.pipe()
    control_r, control_w = os.pipe()
    process = None
    try:
        Path(scratch, "cells.json").write_text(json.dumps(cells), encoding="utf-8")
        command = sandbox.python_command(
            "course_utils.grading.runner", "--scratch", scratch, "--events", str(events_w),
            "--control", str(control_r), "--assignment", assignment.id,
            "--cell-timeout", str(cell_timeout), "--deadline", str(timeout),
            "--question-timeout", str(question_timeout))
        with open(Path(scratch, "output.txt"), "ab") as log:
            process = subprocess.Popen(
                command, cwd=scratch, env=sandbox.child_env(scratch, marker, profile),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(events_w, control_r), start_new_session=True)
        os.close(events_w)
        os.close(control_r)
        events_w = control_r = -1
        deadline = time.monotonic() + hard_limit
        buffer = b""
        finished = False
        while not finished:
            left = deadline - time.monotonic()
            if left <= 0:
                result.cell_notes.append(f"the submission was stopped after {hard_limit:g} s")
                break
            ready, _, _ = select.select([events_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(events_r, 65536)
            if not chunk:
                break  # every process holding the pipe has ended
            buffer = (buffer + chunk)[-2**20:]
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line.decode(errors="replace"))
                except ValueError:
                    continue
                finished = _handle_event(event, result, questions, seed, control_w)
                if finished:
                    break
    finally:
        # Kill every process of the submission before anything is read or recorded.
        groups = {process.pid} if process is not None else set()
        result.killed = sandbox.sweep(marker, groups, since)
        if process is not None:
            process.wait()
        for fd in (events_r, events_w, control_r, control_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        try:
            if result.sandbox is None:  # the runner never started: say why, for the instructor
                log_path = Path(scratch, "output.txt")
                tail = "" if log_path.is_symlink() else \
                    log_path.read_bytes()[-600:].decode(errors="replace")
                result.cell_notes.append("the test process did not start: "
                                         + " | ".join(tail.strip().splitlines()[-3:])[-300:])
            for qid in questions:
                path = Path(scratch, f"{qid}.pt")
                # Only the files the child wrote: no links out of the scratch folder.
                if path.is_symlink() or not path.is_file() or \
                        path.stat().st_size > OUTCOME_FILE_CAP:
                    continue
                try:
                    loaded = torch.load(path, weights_only=True)
                except Exception as error:  # noqa: BLE001 - garbled: no outcomes
                    result.notes[qid] = f"unreadable outcomes ({type(error).__name__})"
                    continue
                if isinstance(loaded, dict):
                    outcomes = loaded.get("outcomes")
                    result.outcomes[qid] = outcomes if isinstance(outcomes, list) else []
                    output = loaded.get("output")
                    if isinstance(output, str) and output.strip():
                        result.output[qid] = output[: OUTPUT_CAP + 200]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def _handle_event(event: Any, result: RunResult, questions: list[str], seed: int,
                  control_w: int) -> bool:
    """Record one event of the runner; True when the run is over."""
    if not isinstance(event, dict):
        return False
    kind = event.get("event")
    text = str(event.get("error") or event.get("note") or "")[:300]
    if kind == "sandbox" and isinstance(event.get("layers"), list):
        result.sandbox = [str(x) for x in event["layers"]][:3]
    elif kind == "cell" and event.get("status") != "ok" and len(result.cell_notes) < 8:
        result.cell_notes.append(f"code cell {event.get('cell')}: {text}")
    elif kind == "cells-done":
        try:
            os.write(control_w, json.dumps({"seed": seed, "questions": questions}).encode())
        except OSError:  # the runner is gone: its questions count as not run
            return True
    elif kind == "question" and event.get("id") in questions and text:
        result.notes[str(event["id"])] = text
    elif kind == "done":
        return True
    return False


# --------------------------------------------------------------------------------------
# Grading one notebook
# --------------------------------------------------------------------------------------

def grade_notebook(path: str | Path, *, assignment: str | None = None, timeout: float = 300,
                   cell_timeout: float = 120, question_timeout: float = 60,
                   seed: int | None = None, profile: str | None = "smoke",
                   executed_dir: str | Path | None = None,
                   environment: sandbox.Environment | None = None) -> NotebookReport:
    """Grade one notebook; never raises because of what the notebook contains.

    ``environment`` is the fingerprint taken when grading started (a batch shares one); it
    is verified before the submission runs (a change means an earlier submission altered
    the grader: this one is refused) and after (this one altered it: not graded). Without
    it, a fingerprint is taken now. ``seed``: the inputs' seed (default: a fresh secret one;
    a batch shares one, and the expected values are computed once per seed).
    """
    start = time.monotonic()
    path = Path(path)
    seed = new_seed() if seed is None else seed
    report = NotebookReport(str(path), None, seed=seed)
    try:
        _grade_into(report, path, assignment, timeout, cell_timeout, question_timeout, seed,
                    profile, executed_dir, environment)
    except Exception as error:  # noqa: BLE001 - a grader bug must not sink a whole batch
        report.notes.append(f"grader error: {type(error).__name__}: {error}")
    if report.assignment is not None:
        done = {r.id for r in report.results}
        for q in report.assignment.questions:
            if q.id not in done:
                report.results.append(manual_result(q) if q.manual else
                                      judge(q, prepared_cases(report.assignment, seed)[q.id],
                                            [], note="not graded (see the notes above)"))
        order = [q.id for q in report.assignment.questions]
        report.results.sort(key=lambda r: order.index(r.id))
    report.seconds = time.monotonic() - start
    return report


ENVIRONMENT_CHANGED = ("not graded: the grading environment has changed since grading started "
                       "({changes}). A submission graded earlier on this machine may have "
                       "modified it. Reinstall the course package (and check site-packages) "
                       "before grading again.")
TAMPERED = ("not graded: this submission modified the grading environment ({changes}). "
            "Reinstall the course package before grading further.")


def _grade_into(report: NotebookReport, path: Path, assignment_id: str | None, timeout: float,
                cell_timeout: float, question_timeout: float, seed: int, profile: str | None,
                executed_dir: str | Path | None,
                environment: sandbox.Environment | None) -> None:
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
    prepared_cases(assignment, seed)  # expected values, before any student code runs
    if nb is None:
        return
    environment = environment or sandbox.Environment()
    changes = environment.changes()
    if changes:
        report.refused = True
        report.notes.append(ENVIRONMENT_CHANGED.format(changes="; ".join(changes)))
        return
    report.answers = {qid: text if len(text) <= ANSWER_CAP else
                      text[:ANSWER_CAP] + f"\n... ({len(text) - ANSWER_CAP} more characters)"
                      for qid, text in answers(nb).items()}
    run = run_submission(assignment, code_cells(nb), seed, timeout=timeout,
                         cell_timeout=cell_timeout, question_timeout=question_timeout,
                         profile=profile)
    report.sandbox = run.sandbox
    if run.sandbox is not None and "files" not in run.sandbox:
        report.notes.append("the sandbox was not active for this notebook (no Landlock): only "
                            "the environment checks protected the grader")
    report.notes += run.cell_notes
    if executed_dir is not None:
        executed = execute(nb, timeout, profile)
        Path(executed_dir).mkdir(parents=True, exist_ok=True)
        nbformat.write(executed.nb, Path(executed_dir, path.name))
    changes = environment.changes()
    if changes:
        report.refused = True
        report.notes.append(TAMPERED.format(changes="; ".join(changes)))
        return
    for q in assignment.questions:
        if q.manual:
            report.results.append(manual_result(q))
            continue
        note = run.notes.get(q.id, "")
        if q.id not in run.outcomes and not note:
            note = "not run (see the notes above)"
        result = judge(q, prepared_cases(assignment, seed)[q.id], run.outcomes.get(q.id, []),
                       note=note)
        result.output = run.output.get(q.id, "")
        report.results.append(result)


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
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the tests' random inputs (default: a fresh secret seed "
                        "for the whole batch, printed and saved in the results)")
    parser.add_argument("--profile", default="smoke",
                        help="COURSE_PROFILE for running the notebook (default smoke)")
    parser.add_argument("--cell-timeout", type=float, default=120,
                        help="seconds one code cell may run before it is stopped and skipped "
                        "(default 120)")
    parser.add_argument("--executed", help="folder to save the executed notebooks in")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every failing test")
    args = parser.parse_args(argv)

    if not sys.platform.startswith("linux"):
        parser.error("the grader runs on Linux (elsewhere, in a Linux container: see the "
                     "instructor page); check() in the notebook works everywhere")
    paths = _notebooks(args.notebooks)
    if not paths:
        parser.error("no notebooks found")
    outputs = [Path(p) for p in (args.json, args.csv) if p]
    for output in outputs:  # a stale file must never pass for this run's results
        output.unlink(missing_ok=True)
    sandbox.harden_grader()
    sys.dont_write_bytecode = True  # the grader itself must not change what it watches
    environment = sandbox.Environment()  # the baseline every submission is checked against
    seed = new_seed() if args.seed is None else args.seed
    layers = sandbox.landlock_abi()
    print("sandbox: " + (f"Landlock ABI {layers} (student code cannot write outside its "
                         "scratch folder)" if layers else
                         "no Landlock on this kernel: the environment is verified before each "
                         "submission; grade untrusted work in a container"), flush=True)
    print(f"inputs: seed {seed} (pass --seed {seed} to grade again on the same inputs)",
          flush=True)
    reports = []
    for path in paths:
        report = grade_notebook(path, assignment=args.assignment, timeout=args.timeout,
                                cell_timeout=args.cell_timeout,
                                question_timeout=args.question_timeout, seed=seed,
                                profile=args.profile, executed_dir=args.executed,
                                environment=environment)
        print(report.text(args.verbose), flush=True)
        reports.append(report)
    if len(reports) > 1:
        print(f"\n{len(reports)} notebooks graded.")
    # Written only here, by this process, after every submission's processes are gone.
    if args.json:
        payload = [r.gradescope() for r in reports]
        _write_atomic(Path(args.json), json.dumps(payload[0] if len(payload) == 1 else payload,
                                                  indent=1))
    if args.csv:
        tmp = Path(args.csv).with_name(Path(args.csv).name + ".tmp")
        write_csv(reports, tmp)
        os.replace(tmp, args.csv)
    if any(r.refused for r in reports):
        print("Some notebooks were not graded because the grading environment was modified; "
              "see their notes.", file=sys.stderr)
        return 3
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

if __name__ == "__main__":
    sys.exit(main())
