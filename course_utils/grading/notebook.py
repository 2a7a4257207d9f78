"""Reading and executing notebooks for grading: code cells, a time-limited run, answers.

Execution (for ``--executed``: the notebook with its outputs, for the parts graded by hand)
uses ``nbclient``: the notebook runs in its own Jupyter kernel, started inside the sandbox
(``jail.py``: writes only in its scratch directory, a clean environment, every process
killed afterwards), with one time limit for the whole notebook. A cell that
raises does not stop the run (``allow_errors``), a hang is stopped at the limit and the
kernel killed, a crashed kernel is reported -- in every case the caller gets a result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import nbformat

from . import sandbox

ANSWER_TAG_PREFIX = "answer:"  # markdown cells tagged "answer:q6" hold written answers
ANSWER_STUB = "*YOUR ANSWER HERE* (replace this line with your answer)"  # see assign.py


def code_cells(nb: Any) -> list[dict[str, Any]]:
    """``{"cell": n, "code": source}`` for every code cell, numbered from 1 among code cells.

    The source is kept as written (IPython, magics included): the grader runs it in an
    IPython shell, as the notebook does.
    """
    cells, n = [], 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        n += 1
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        cells.append({"cell": n, "code": str(source)})
    return cells


def answers(nb: Any) -> dict[str, str]:
    """Written answers: the text of markdown cells tagged ``answer:<question id>``."""
    found: dict[str, list[str]] = {}
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", []) or []
        for tag in tags:
            if isinstance(tag, str) and tag.startswith(ANSWER_TAG_PREFIX):
                source = cell.get("source", "")
                source = "".join(source) if isinstance(source, list) else str(source)
                text = source.replace(ANSWER_STUB, "").strip()
                if text:
                    found.setdefault(tag[len(ANSWER_TAG_PREFIX):], []).append(text)
    return {qid: "\n\n".join(texts) for qid, texts in found.items()}


@dataclass
class Execution:
    """What happened when a notebook ran: its outputs and how the run ended."""

    nb: Any
    seconds: float
    ended: str  # "completed" | "timed out" | "kernel died" | "failed"
    detail: str = ""
    errors: list[str] = field(default_factory=list)  # "code cell 7: NameError: ..."

    def summary(self) -> str:
        text = f"notebook {self.ended} after {self.seconds:.1f} s"
        if self.detail:
            text += f" ({self.detail})"
        return text


def execute(nb: Any, timeout: float, profile: str | None = "smoke",
            kernel_name: str = "python3") -> Execution:
    """Run ``nb`` top to bottom in a fresh kernel, in a scratch folder, within ``timeout`` s."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.from_dict(nb)
    workdir = tempfile.mkdtemp(prefix="course-grade-run-")
    os.chmod(workdir, 0o700)
    marker, since = sandbox.new_marker(), sandbox.boot_ticks()
    sandbox.become_subreaper()

    class SandboxedKernel(KernelManager):
        """The kernel starts inside the sandbox (``jail.py``), with a clean environment."""

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            command = super().format_kernel_cmd(extra_arguments)
            return sandbox.python_command("course_utils.grading.jail", workdir, "--", *command)

    deadline = time.monotonic() + timeout
    client = NotebookClient(
        nb, timeout_func=lambda cell: max(1, int(deadline - time.monotonic() + 0.999)),
        km=SandboxedKernel(kernel_name=kernel_name), allow_errors=True,
        interrupt_on_timeout=False, shutdown_kernel="immediate", record_timing=False,
        resources={"metadata": {"path": workdir}},
    )
    code_number = {}  # position among all cells -> number among code cells
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            code_number[i] = len(code_number) + 1
    started: list[int] = []
    client.on_cell_start = lambda cell, cell_index: started.append(code_number.get(cell_index, 0))
    start = time.monotonic()
    ended, detail = "completed", ""
    try:
        # The kernel's own log lines (not the notebook's outputs) would only clutter the report.
        env = sandbox.child_env(workdir, marker, profile,
                                extra={"PYTHONPATH": sandbox.package_root()})
        env.pop("MPLBACKEND")  # the kernel keeps Jupyter's inline figures
        client.execute(env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    except CellTimeoutError:
        ended, detail = "timed out", f"time limit {timeout:g} s"
    except DeadKernelError:
        ended, detail = "kernel died", "the notebook crashed its Python process"
    except Exception as error:  # noqa: BLE001 - the grader reports, it does not crash
        ended, detail = "failed", f"{type(error).__name__}: {error}"
    finally:
        sandbox.sweep(marker, since=since)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - start
    errors, n = [], 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            n += 1
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    errors.append(f"code cell {n}: {out.get('ename')}: {out.get('evalue')}"[:300])
    if ended != "completed" and started:
        detail += f"; stopped in code cell {started[-1]}"
    return Execution(nb, seconds, ended, detail, errors)
