"""Stage the book's sources with the notebooks nbval already executed, for a build that
executes nothing: ``python tools/stage_book.py --executed DIR --to DEST``.

`make test` runs every notebook once, under nbval, which saves each one with its outputs
(``tools/course_pytest.py --executed-dir``). This script copies the book's sources (the files
git tracks or would track) to DEST, puts those executed notebooks in place of the stripped
ones, and turns execution off in DEST's ``_config.yml``; building DEST then renders the outputs
of the run that was just tested instead of running every notebook a second time.

Files are copied only when their content changed, so Sphinx's incremental build still works
between runs. A notebook of the table of contents without an executed copy (its test failed
or did not run) is an error naming it.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

SKIP_DIRS = {".git", ".venv", "_build", "__pycache__", ".pytest_cache", ".ruff_cache",
             ".ipynb_checkpoints", ".jupyter_cache"}


def source_files(root: Path) -> list[Path]:
    """The files of the repository (tracked or not ignored), relative to ``root``."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                             check=True, capture_output=True, text=True).stdout
        files = [Path(p) for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in files
                  if not SKIP_DIRS.intersection(p.parts) and (root / p).is_file())


def toc_notebooks(root: Path) -> list[Path]:
    """The notebooks that ``_toc.yml`` puts in the book."""
    found: list[Path] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    path = Path(value).with_suffix(".ipynb")
                    if (root / path).exists():
                        found.append(path)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8")))
    return found


def copy_if_changed(src: Path, dst: Path) -> bool:
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return True


def stage(root: Path, executed: Path, dest: Path) -> list[str]:
    """Copy the sources to ``dest``; return the problems found (empty when all is well)."""
    problems = [f"{nb} is in _toc.yml but was not executed by the notebook tests "
                f"(no {executed / nb}): did its test fail?"
                for nb in toc_notebooks(root) if not (executed / nb).exists()]
    if problems:
        return problems
    wanted = set()
    changed = 0
    for rel in source_files(root):
        src = executed / rel if rel.suffix == ".ipynb" and (executed / rel).exists() \
            else root / rel
        wanted.add(rel)
        if rel == Path("_config.yml"):
            continue
        changed += copy_if_changed(src, dest / rel)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    text = ("# Staged by tools/stage_book.py: the notebooks here carry the outputs of the\n"
            "# nbval run, so this build executes nothing.\n"
            + yaml.safe_dump(config, sort_keys=False))
    target = dest / "_config.yml"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
        changed += 1
    removed = 0
    for path in sorted(dest.rglob("*"), reverse=True):
        rel = path.relative_to(dest)
        if rel.parts[0] in SKIP_DIRS:
            continue
        if path.is_file() and rel not in wanted:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    print(f"staged {len(wanted)} files in {dest} ({changed} changed, {removed} removed); "
          f"notebooks from {executed}")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executed", type=Path, required=True,
                        help="folder of executed notebooks (course_pytest --executed-dir)")
    parser.add_argument("--to", type=Path, required=True, help="folder to stage into")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    problems = stage(args.root.resolve(), args.executed.resolve(), args.to.resolve())
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
