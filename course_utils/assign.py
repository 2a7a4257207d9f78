"""Regenerate the student notebooks; make the student-facing release of the course.

``python -m course_utils.assign [--check]`` and ``python -m course_utils.assign --release DIR``.

``solutions/NN_name.ipynb`` is the single source of an assignment. In its code cells, the
lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers) become a
stub that raises ``NotImplementedError``, keeping the marker's indentation; text after the
BEGIN marker (``### BEGIN SOLUTION hint: use torch.zeros_like``) becomes the stub's hint. In
markdown cells the region becomes "YOUR ANSWER HERE". Outputs and execution counts are
cleared; everything else (cell ids, tags, metadata) is kept, so running it twice changes
nothing. ``--check`` changes no file and exits 1 if ``assignments/`` is out of date (CI).

``--release DIR`` writes the course students may see into ``DIR`` (see :func:`release`):
everything git tracks, except ``solutions/``, the tests that are built from solutions, and
the instructor page; it then refuses to finish if any released file still holds a solution
region or a model answer.
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

BEGIN, END = "### BEGIN " + "SOLUTION", "### END " + "SOLUTION"  # split: this file is released
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


# --------------------------------------------------------------------------------------
# The student-facing release
# --------------------------------------------------------------------------------------

# Never released: the solutions, the grading tests and fixtures made from them (all of
# tests/grading_* and tests/test_grading*, by prefix, so a new assignment's are covered too),
# the instructor page, and what is private to the instructors' repository or generated.
RELEASE_EXCLUDE = (
    "solutions/", "tests/grading_", "tests/test_grading", "chapters/assignments/instructors.md",
)
INSTRUCTOR_PAGE = "chapters/assignments/instructors"


def _tracked_files(root: Path) -> list[str]:
    """The files git tracks under ``root`` (a walk without build folders if not a checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True,
                             check=True).stdout.decode()
        return [f for f in out.split("\0") if f and (root / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "_build", "__pycache__", ".pytest_cache", ".ruff_cache"}
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and not skip & set(p.relative_to(root).parts))


def solution_lines(text: str) -> list[int]:
    """Line numbers (from 1) of solution markers in ``text`` (also inside notebook JSON)."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip().lstrip('"').strip()
        if stripped.startswith((BEGIN, END)):
            found.append(n)
    return found


def point_at(dest: Path, repo_url: str) -> None:
    """Make the release name ``repo_url`` (launch buttons, Colab cells, links).

    Sets ``repository.url`` in the release's ``_config.yml``, then runs the book's own
    ``tools/repo_url.py`` there, which rewrites every Colab cell and repository link.
    """
    import subprocess

    config = dest / "_config.yml"
    text = config.read_text(encoding="utf-8")
    new, n = re.subn(r"(?m)^(repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*)\S+",
                     lambda m: m.group(1) + repo_url, text)
    if n != 1:
        raise MarkerError("could not find repository.url in the release's _config.yml")
    config.write_text(new, encoding="utf-8")
    tool = dest / "tools" / "repo_url.py"
    if tool.exists():
        subprocess.run([sys.executable, str(tool), "--root", str(dest)], check=True,
                       capture_output=True)


def solution_texts(solutions: Path, min_length: int = 25) -> set[str]:
    """The distinctive lines (stripped, at least ``min_length`` long) of every solution region
    and model answer in ``solutions/*.ipynb``: what must never appear in a release."""
    lines = set()
    for path in solutions.glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                stripped = line.strip()
                if stripped.startswith(BEGIN):
                    inside = True
                elif stripped.startswith(END):
                    inside = False
                elif inside and len(stripped) >= min_length:
                    lines.add(stripped)
    return lines


def release(root: Path, dest: Path, repo_url: str | None = None) -> list[str]:
    """Copy the student-facing course from ``root`` to ``dest``; return the files written.

    ``dest`` must not exist or be empty. The copy has the book sources, the generated
    ``assignments/`` (checked to be up to date), the package with its graders, and the other
    tests; the table of contents and the assignments page lose their link to the instructor
    page; with ``repo_url``, every launch button, Colab cell and link names that repository
    (:func:`point_at`). Raises ``MarkerError`` if a released file contains a solution marker
    or any distinctive line of a solution or model answer (:func:`solution_texts`).
    """
    import shutil

    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty: release into a new folder")
    stalled = generate(root / "solutions", root / "assignments", check=True)
    if stalled:
        raise MarkerError(f"assignments/ is out of date ({', '.join(stalled)}): run "
                          "`python -m course_utils.assign` first")
    written = []
    for rel in _tracked_files(root):
        if rel.startswith(RELEASE_EXCLUDE):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
        written.append(rel)
    toc = dest / "_toc.yml"
    if toc.exists():
        lines = toc.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = []
        for i, line in enumerate(lines):
            if INSTRUCTOR_PAGE in line:
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if line.strip() == "sections:" and INSTRUCTOR_PAGE in nxt and (
                    i + 2 >= len(lines) or not lines[i + 2].lstrip().startswith("- file:")
                    or len(lines[i + 2]) - len(lines[i + 2].lstrip())
                    < len(nxt) - len(nxt.lstrip())):
                continue  # a sections list that held only the instructor page
            keep.append(line)
        toc.write_text("".join(keep), encoding="utf-8")
    makefile = dest / "Makefile"
    if makefile.exists():  # the released tests run the notebooks that exist there
        text = makefile.read_text(encoding="utf-8")
        makefile.write_text(re.sub(r"(?m)^(NOTEBOOK_DIRS\s*:?=.*?)\s+solutions\b", r"\1", text),
                            encoding="utf-8")
    for page in (dest / "chapters" / "assignments").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        kept = [line for line in text.splitlines(keepends=True)
                if "{doc}`instructors`" not in line and "<instructors>" not in line]
        page.write_text("".join(kept), encoding="utf-8")
    if repo_url:
        point_at(dest, repo_url)
    secret = solution_texts(root / "solutions")
    leaks = []
    for rel in written:
        try:
            text = (dest / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        leaks += [f"{rel}:{n} (a solution marker)" for n in solution_lines(text)]
        leaks += [f"{rel} (a line of a solution: {line[:40]!r})" for line in secret
                  if line in text]
    if leaks:
        raise MarkerError("solution content in the release: " + ", ".join(leaks[:10]))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.assign",
                                     description="Regenerate assignments/ from solutions/.")
    parser.add_argument("--solutions", default="solutions", type=Path)
    parser.add_argument("--assignments", default="assignments", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if assignments/ is out of date")
    parser.add_argument("--release", type=Path, metavar="DIR",
                        help="write the student-facing course (no solutions) into DIR")
    parser.add_argument("--repo-url", help="with --release: the public repository students "
                        "open (launch buttons, Colab cells and links are pointed at it)")
    args = parser.parse_args(argv)
    if args.release is not None:
        try:
            written = release(Path("."), args.release, args.repo_url)
        except (MarkerError, FileExistsError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"released {len(written)} files into {args.release}/ (no solutions/, no "
              "solution-bearing tests, no instructor page)")
        return 0
    if args.check and not args.solutions.exists():
        print(f"no {args.solutions}/ here (a released, student-facing copy): nothing to check.")
        return 0
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
