"""The sandboxed child process that runs a submission and returns only the student's outputs.

Started by ``course_utils.grade`` (never by hand) as ``python -I -S -B`` with a clean
environment, in its own session, in a scratch folder::

    runner --scratch DIR --events FD --control FD --cell-timeout S --deadline S
           --question-timeout S

1. It locks itself in the sandbox (``sandbox.restrict_self``: writes only in the scratch
   folder, no network, no signals to the grader), sends its own output to
   ``DIR/output.txt``, and starts an IPython shell (no kernel, no history).
2. It runs the notebook's code cells (``DIR/cells.json``) in order, as IPython runs them
   (cell magics such as ``%%time``, ``!commands``), so a name is defined exactly as in the
   student's notebook: by ``def``, ``lambda``, assignment or any other statement.
   ``check()`` does nothing here. Each cell runs in a ``fork`` of the state before it: if
   the cell overruns ``--cell-timeout``, or kills its process, it is stopped and skipped and
   the run goes on from that state.
3. It reports ``cells-done`` on the events pipe and waits for the grader to send the seed of
   the tests' inputs (so nothing in the notebook's own code can see them), then runs each
   question through ``probe.probe_question`` -- a child per question, killed at
   ``--question-timeout`` -- which saves the outcomes to ``DIR/<question>.pt``.

Nothing here knows an expected value: the grader compares the outcomes in its own process,
after every process of the submission is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from typing import Any

EVENT_CAP = 1500  # characters of one event's text (a pipe write under 4 KB is atomic)


class Events:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **event: Any) -> None:
        event = {k: (v[:EVENT_CAP] if isinstance(v, str) else v) for k, v in event.items()}
        data = (json.dumps(event) + "\n").encode()[:4000]
        try:
            os.write(self.fd, data)
        except OSError:
            pass


def _shell(scratch: str) -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.xmode = "Plain"
    shell = InteractiveShell.instance(config=config)
    shell.user_ns["__name__"] = "__main__"
    # No GUI and no inline figures here: %matplotlib and %gui are accepted and do nothing
    # (figures go to matplotlib's Agg backend, set in the environment).
    shell.enable_gui = lambda gui=None: None
    shell.enable_matplotlib = lambda gui=None: ("agg", "agg")
    shell.enable_pylab = lambda gui=None, import_all=True, welcome_message=False: ("agg", "agg")
    return shell


def _error_text(result: Any) -> str:
    error = result.error_before_exec or result.error_in_exec
    if error is None:
        return ""
    text = f"{type(error).__name__}: {error}"
    return text[:300]


def run_cells(shell: Any, cells: list[dict[str, Any]], events: Events, cell_timeout: float,
              deadline: float) -> None:
    """Run the cells in order, each in a fork of the state before it (see the module doc).

    Returns in the process that ran the last cell (earlier processes have exited).
    """
    i = 0
    while i < len(cells):
        number, source = cells[i]["cell"], cells[i]["code"]
        left = deadline - time.monotonic()
        if left <= 0:
            events.send(event="cell", cell=number, status="skipped",
                        error="the notebook's time limit had passed")
            i += 1
            continue
        limit = min(cell_timeout, left)
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the executor: run the cell, then carry on as the next checkpoint
            os.close(read_end)
            result = shell.run_cell(source, store_history=False)
            error = _error_text(result)
            events.send(event="cell", cell=number, status="error" if error else "ok",
                        error=error)
            sys.stdout.flush()
            try:  # the checkpoint may be gone (the cell killed it): carry on regardless
                os.write(write_end, b"x")
                os.close(write_end)
            except OSError:
                pass
            i += 1
            continue
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], limit)
        done = bool(ready) and os.read(read_end, 1) == b"x"
        os.close(read_end)
        if done:
            os._exit(0)  # the executor carries on from the state after this cell
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except OSError:
            pass
        if ready:
            events.send(event="cell", cell=number, status="died",
                        error="the cell ended its Python process (a crash, os._exit or "
                              "exit()); it was skipped")
        else:
            events.send(event="cell", cell=number, status="timeout",
                        error=f"the cell was stopped after {limit:.0f} s and skipped")
        i += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course_utils.grading.runner")
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--assignment", required=True)
    parser.add_argument("--cell-timeout", type=float, default=120)
    parser.add_argument("--deadline", type=float, default=300, help="seconds for all cells")
    parser.add_argument("--question-timeout", type=float, default=60)
    args = parser.parse_args(argv)
    start = time.monotonic()
    events = Events(args.events)

    from .sandbox import restrict_self

    log = os.open(os.path.join(args.scratch, "output.txt"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    import resource
    import signal

    # A file may not outgrow 512 MB (the write fails instead of filling the disk); no cores.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 2**20, 512 * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    layers = restrict_self([args.scratch])
    events.send(event="sandbox", layers=layers)
    os.environ["COURSE_GRADING_RUN"] = "1"  # check() does nothing while the grader runs

    import torch

    torch.set_num_threads(1)
    from .core import load_assignment
    from .probe import probe_question

    assignment = load_assignment(args.assignment)
    with open(os.path.join(args.scratch, "cells.json"), encoding="utf-8") as f:
        cells = json.load(f)
    os.chdir(args.scratch)
    shell = _shell(args.scratch)
    run_cells(shell, cells, events, args.cell_timeout, start + args.deadline)

    # From here on no student code should need the forbidden libraries: block them in this
    # process too, so nothing left running by the cells (a thread, a patched harness) can
    # compute expected values with them once the inputs are known.
    from .policy import block

    block(sorted({name for q in assignment.questions for name in q.forbidden}))
    events.send(event="cells-done")
    ready, _, _ = select.select([args.control], [], [], 120)
    data = os.read(args.control, 65536) if ready else b""
    try:
        control = json.loads(data.decode())
    except ValueError:
        events.send(event="error", error="no seed from the grader")
        os._exit(1)
    namespace = shell.user_ns
    for qid in control["questions"]:
        try:
            question = assignment.question(qid)
            cases = question.cases(int(control["seed"]))
        except Exception as error:  # noqa: BLE001 - a bug in the spec costs its question only
            events.send(event="question", id=qid, note=f"the grader could not build this "
                        f"question's tests ({type(error).__name__}: {error})")
            continue
        report = probe_question(namespace, question, cases, args.question_timeout,
                                path=os.path.join(args.scratch, f"{qid}.pt"))
        events.send(event="question", id=qid, note=str(report.get("note", "")))
    events.send(event="done")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
