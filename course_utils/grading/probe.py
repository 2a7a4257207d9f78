"""Run one question's tests on a student's namespace in a forked process, under a hard limit.

:func:`probe_question` is the one place where student functions are called, for the grader
(in its sandboxed runner, see ``runner.py``) and for ``check()`` in the notebook alike, so
both see the same functions and get the same outcomes:

- a child is ``fork``-ed from the process that holds the student's namespace, in its own
  process group; it gets the question's *inputs* only (the cases' ``run`` halves -- the
  expected values are never computed in it) and saves the student's raw *outputs* (values or
  error messages) to a file after each test, printing nothing (what the student's code
  prints is kept, capped at :data:`OUTPUT_CAP` bytes);
- in the child, before any student function runs, the grading policy is checked
  (``policy.py``) and enforced: every Python function of ``torch.optim`` and of the
  course's optimizers raises, so an answer cannot delegate to them, however it is reached;
- the caller kills the child's whole process group when the time limit passes, whatever
  the student's code does with exceptions, and reads what the child saved.

Where ``fork`` does not exist (Windows) the tests run in the caller's process, with the
same policy check but no time limit.
"""

from __future__ import annotations

import io
import os
import select
import signal
import sys
import tempfile
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

from .core import _MISSING, Case, Question, describe_exception, run_case
from .policy import POLICY, policy_problems

OUTPUT_CAP = 2048  # bytes of the student's own printed output kept per question
MESSAGE_CAP = 600  # characters of one test's error message
BLOCKED_MESSAGE = (f"grading policy: {POLICY} (this function belongs to torch.optim or to the "
                   "course's optimizers)")


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
# Enforcing the policy: the library's optimizers stop working in the child
# --------------------------------------------------------------------------------------

_BLOCKED_MODULES = ("torch.optim", "course_utils.optim", "course_utils.grading.bridge")


def _blocked_code(n_free: int) -> types.CodeType:
    """A code object that raises the policy message, with ``n_free`` free variables."""
    names = [f"_free{i}" for i in range(n_free)]
    lines = ["def _outer():", *[f"    {n} = None" for n in names],
             "    def _blocked(*args, **kwargs):"]
    if names:
        lines.append("        (" + ", ".join(names) + ",)")
    lines += [f"        raise RuntimeError({BLOCKED_MESSAGE!r})", "    return _blocked"]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - a constant template
    return namespace["_outer"]().__code__


def _functions_of(value: Any) -> list[types.FunctionType]:
    found = []
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel)
                if isinstance(f, types.FunctionType)]
    while isinstance(value, types.FunctionType):
        found.append(value)
        value = getattr(value, "__wrapped__", None)
    return found


def block_library_optimizers() -> int:
    """Make every Python function of torch.optim and the course's optimizers raise.

    The code objects are replaced in place, so references the student saved earlier
    (``Adam = torch.optim.Adam``) stop working too. Only ever called in a probe child.
    """
    import importlib

    for name in ("torch.optim", "torch.optim.lr_scheduler", "torch.optim.swa_utils",
                 "course_utils.optim", "course_utils.grading.bridge"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - nothing to block if it does not import
            continue
    cache: dict[int, types.CodeType] = {}
    count = 0
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(_BLOCKED_MODULES):
            continue
        for value in list(vars(module).values()):
            targets = []
            if isinstance(value, type) and str(getattr(value, "__module__", "")).startswith(
                    _BLOCKED_MODULES):
                for attr in vars(value).values():
                    targets += _functions_of(attr)
            elif isinstance(value, types.FunctionType) and str(value.__module__).startswith(
                    _BLOCKED_MODULES):
                targets += _functions_of(value)
            for fn in targets:
                n = len(fn.__code__.co_freevars)
                if n not in cache:
                    cache[n] = _blocked_code(n)
                try:
                    fn.__code__ = cache[n]
                    count += 1
                except (TypeError, ValueError):
                    pass
    return count


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
        problems = policy_problems(namespace, question.functions)
        if problems:
            report["outcomes"] = [{"error": "; ".join(problems)[:MESSAGE_CAP], "policy": True}
                                  for _ in cases]
            report["note"] = problems[0][:MESSAGE_CAP]
            return report
        for case in cases:  # expected values never exist where student code runs
            case._expected = _MISSING
        if enforce:
            block_library_optimizers()
        for case in cases:
            outcome = run_case(case, namespace)
            if "error" in outcome:
                outcome["error"] = str(outcome["error"])[:MESSAGE_CAP]
            report["outcomes"].append(outcome)
            report["output"] = captured.value()
            if path:
                _save(path, report)
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
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: in process, no time limit
        return run_question(namespace, question, cases)
    import torch

    owned = path is None
    if owned:
        fd, path = tempfile.mkstemp(prefix=f"course-probe-{question.id}-", suffix=".pt")
        os.close(fd)
        os.unlink(path)
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
