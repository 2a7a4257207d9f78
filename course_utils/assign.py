"""Regenerate the student notebooks: ``python -m course_utils.assign [--check]``.

``solutions/NN_name.ipynb`` is the single source of an assignment. In its code cells, the
lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers) become a
stub that raises ``NotImplementedError``, keeping the marker's indentation; text after the
BEGIN marker (``### BEGIN SOLUTION hint: use torch.zeros_like``) becomes the stub's hint. In
markdown cells the region becomes "YOUR ANSWER HERE". Outputs and execution counts are
cleared; everything else (cell ids, tags, metadata) is kept, so running it twice changes
nothing. ``--check`` changes no file and exits 1 if ``assignments/`` is out of date (CI).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import nbformat

from .grading.notebook import ANSWER_STUB

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
DEFAULT_HINT = "replace this line with your code"


class MarkerError(ValueError):
    """Unbalanced or nested solution markers; the message names the cell and line."""


def strip_solutions(source: str, cell_type: str, where: str) -> str:
    """``source`` with every solution region replaced by its stub."""
    out: list[str] = []
    inside = False
    for n, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise MarkerError(f"{where}, line {n}: BEGIN SOLUTION inside another solution")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            hint = re.sub(r"^[\s:-]*(hint:)?\s*", "", stripped[len(BEGIN):]) or DEFAULT_HINT
            if cell_type == "code":
                out.append(f"{indent}# YOUR CODE HERE -- {hint}")
                out.append(f'{indent}raise NotImplementedError("not answered yet")')
            else:
                out.append(f"{indent}{ANSWER_STUB}")
        elif stripped.startswith(END):
            if not inside:
                raise MarkerError(f"{where}, line {n}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: BEGIN SOLUTION is never closed by END SOLUTION")
    return "\n".join(out)


def student_version(nb: Any, name: str = "notebook") -> Any:
    """The student notebook made from a solution notebook (a new object)."""
    nb = copy.deepcopy(nb)
    n_regions = 0
    for i, cell in enumerate(nb.cells, 1):
        source = cell.source
        n_regions += source.count(BEGIN)
        if BEGIN in source or END in source:
            cell.source = strip_solutions(source, cell.cell_type, f"{name}, cell {i}")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    if n_regions == 0:
        raise MarkerError(f"{name} has no '{BEGIN}' region: is it really a solution?")
    return nb


def render(nb: Any) -> str:
    """The exact text nbformat writes for ``nb`` (what is compared and saved)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def generate(solutions: Path, assignments: Path, check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) every student notebook; return what differs."""
    sources = sorted(solutions.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no solution notebooks in {solutions}/")
    differ = []
    for source in sources:
        nb = nbformat.read(source, as_version=4)
        text = render(student_version(nb, source.name))
        target = assignments / source.name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            differ.append(str(target))
            if not check:
                assignments.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return differ


def stale(solutions: Path, assignments: Path) -> list[Path]:
    """Student notebooks whose solution no longer exists (reported, never deleted)."""
    names = {p.name for p in solutions.glob("*.ipynb")}
    return sorted(p for p in assignments.glob("*.ipynb") if p.name not in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.assign",
                                     description="Regenerate assignments/ from solutions/.")
    parser.add_argument("--solutions", default="solutions", type=Path)
    parser.add_argument("--assignments", default="assignments", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if assignments/ is out of date")
    args = parser.parse_args(argv)
    try:
        differ = generate(args.solutions, args.assignments, check=args.check)
    except (MarkerError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in stale(args.solutions, args.assignments):
        print(f"warning: {path} has no solution in {args.solutions}/ (delete it?)")
    if args.check:
        for path in differ:
            print(f"out of date: {path}")
        print("Run `python -m course_utils.assign` and commit the result." if differ else
              "assignments/ is up to date.")
        return 1 if differ else 0
    for path in differ:
        print(f"wrote {path}")
    print(f"{len(differ)} notebook(s) changed." if differ else "assignments/ is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
