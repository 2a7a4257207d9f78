"""Run one question's tests on a student's namespace in a forked process, under a hard limit.

:func:`probe_question` is the one place where student functions are called, for the grader
(in its sandboxed runner, see ``runner.py``) and for ``check()`` in the notebook alike, so
both see the same functions and get the same outcomes:

- a child is ``fork``-ed from the process that holds the student's namespace, in its own
  process group; it gets the question's *inputs* only (the cases' ``run`` halves -- the
  expected values are never computed in it) and saves the student's raw *outputs* (values or
  error messages) to a file after each test, printing nothing (what the student's code
  prints is kept, capped at :data:`OUTPUT_CAP` bytes);
- in the child, before any student function runs, the question's grading policy
  (``Question.forbidden``, e.g. ``torch.optim`` for Assignment 1) is checked on the answer's
  code and enforced: every Python function of the forbidden modules raises, so an answer
  cannot delegate to them, however it reaches them;
- the caller kills the child's whole process group when the time limit passes, whatever
  the student's code does with exceptions, and reads what the child saved.

Off Linux (``fork`` is unsafe on macOS and absent on Windows) ``check()`` runs the tests in
the caller's process, with the same policy inspection but no time limit and no run-time
block; the grader itself runs on Linux.
"""

from __future__ import annotations

import io
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .core import _MISSING, Case, Question, describe_exception, run_case
from .policy import block, policy_problems, preload

OUTPUT_CAP = 2048  # bytes of the student's own printed output kept per question
MESSAGE_CAP = 600  # characters of one test's error message


class _CappedText(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters written to it."""

    def __init__(self, cap: int) -> None:
        self.cap, self.parts, self.size, self.dropped = cap, [], 0, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        out = "".join(self.parts)
        return out + (f"\n... ({self.dropped} more characters not shown)" if self.dropped else "")


# --------------------------------------------------------------------------------------
# The child
# --------------------------------------------------------------------------------------

def _save(path: str, report: dict[str, Any]) -> None:
    import torch

    tmp = path + ".tmp"
    torch.save(report, tmp)
    os.replace(tmp, path)


def run_question(namespace: Mapping[str, Any], question: Question, cases: Sequence[Case],
                 path: str | None = None, enforce: bool = True) -> dict[str, Any]:
    """The child's work: policy, then each case; outcomes saved to ``path`` after each test."""
    report: dict[str, Any] = {"outcomes": [], "output": "", "note": ""}
    stdout, stderr = sys.stdout, sys.stderr
    captured = _CappedText(OUTPUT_CAP)
    sys.stdout = sys.stderr = captured
    try:
        problems = policy_problems(namespace, question.functions, question.forbidden)
        if problems:
            report["outcomes"] = [{"error": "; ".join(problems)[:MESSAGE_CAP], "policy": True}
                                  for _ in cases]
            report["note"] = problems[0][:MESSAGE_CAP]
            return report
        for case in cases:  # expected values never exist where student code runs
            case._expected = _MISSING
        if enforce and question.forbidden:
            block(question.forbidden)
        saved = time.monotonic()
        for case in cases:
            outcome = run_case(case, namespace)
            if "error" in outcome:
                outcome["error"] = str(outcome["error"])[:MESSAGE_CAP]
            report["outcomes"].append(outcome)
            if path and time.monotonic() - saved > 0.25:  # what is done survives a kill
                report["output"] = captured.value()
                _save(path, report)
                saved = time.monotonic()
    except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from student code
        report["note"] = f"stopped: {describe_exception(error)}"[:MESSAGE_CAP]
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        report["output"] = captured.value()
    return report


def _child(namespace: Mapping[str, Any], question: Question, cases: Sequence[Case],
           path: str) -> None:
    """In the forked child: never returns into the caller's code."""
    code = 0
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            import torch

            torch.set_num_threads(1)
        except Exception:  # noqa: BLE001, S110
            pass
        _save(path, run_question(namespace, question, cases, path))
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code)


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass


def _wait(pid: int, timeout: float) -> bool:
    """Wait for child ``pid`` up to ``timeout`` seconds; True if it ended by itself."""
    deadline = time.monotonic() + timeout
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
    try:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if done:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(0.01, left))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def probe_question(namespace: Mapping[str, Any], question: Question, cases: Sequence[Case],
                   timeout: float = 60.0, path: str | None = None) -> dict[str, Any]:
    """Run ``question``'s cases on ``namespace`` in a forked child killed after ``timeout`` s.

    Returns ``{"outcomes": [...], "output": str, "note": str}``; ``path`` (default: a
    temporary file) is where the child saves them, and is left in place when given.
    """
    if not sys.platform.startswith("linux"):  # pragma: no cover - fork is Linux-safe only
        return run_question(namespace, question, cases, enforce=False)
    import torch

    owned = path is None
    if owned:
        fd, path = tempfile.mkstemp(prefix=f"course-probe-{question.id}-", suffix=".pt")
        os.close(fd)
        os.unlink(path)
    preload(question.forbidden)  # once here rather than in every child
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(namespace, question, cases, path)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    finished = _wait(pid, timeout)
    _kill_group(pid)  # also anything the child left running in its group
    if not finished:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    report: dict[str, Any] = {"outcomes": [], "output": "", "note": ""}
    try:
        if os.path.exists(path) and os.path.getsize(path) <= 64 * 2**20:
            loaded = torch.load(path, weights_only=True)
            if isinstance(loaded, dict):
                report.update(loaded)
    except Exception as error:  # noqa: BLE001 - a garbled file counts as no outcomes
        report["note"] = f"unreadable outcomes ({type(error).__name__})"
    finally:
        if owned:
            for p in (path, path + ".tmp"):
                if os.path.exists(p):
                    os.unlink(p)
    if not finished:
        report["note"] = (f"stopped after {timeout:g} s (an infinite loop?); the tests after "
                          "it did not run")
    return report
