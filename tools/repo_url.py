"""Spread the repository URL set in ``_config.yml`` to every place that repeats it:
``python tools/repo_url.py`` (rewrite) or ``python tools/repo_url.py --check`` (`make lint`).

``_config.yml``'s ``repository.url`` is the one line a fork changes -- or the instructor who
publishes the student-facing copy made by `make release` under another repository. Jupyter
Book's launch buttons read it directly; two kinds of places repeat it and are rewritten here:

* every notebook's Colab cell (tag ``colab-setup``): ``%pip install "course-utils @ git+URL"``;
* links in the book's text files (Markdown pages, README, binder/) that point at the
  repository the Colab cells named before: ``github.com/OLD/REPO``, Colab's
  ``colab.research.google.com/github/OLD/REPO``, Binder's ``mybinder.org/v2/gh/OLD/REPO`` and
  ``raw.githubusercontent.com/OLD/REPO``.

``--check`` changes nothing and exits 1, naming each file, when one of them is out of date.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

COLAB_TAG = "colab-setup"
PIP_URL = re.compile(r"(course-utils(?:\[[^\]]*\])?\s*@\s*git\+)(https?://[^\s\"'@#]+)")
TEXT_SUFFIXES = {".md", ".txt", ".yml", ".yaml", ".toml", ".cfg", ".rst"}
SKIP_PARTS = {".git", ".venv", "_build", ".ipynb_checkpoints", "node_modules"}
SLUG_FORMS = ("github.com/{}", "colab.research.google.com/github/{}", "mybinder.org/v2/gh/{}",
              "raw.githubusercontent.com/{}")


def configured_url(root: Path) -> str:
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    url = str(config["repository"]["url"]).rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return url


def slug_of(url: str) -> str:
    """``owner/name`` of a GitHub URL."""
    match = re.match(r"https?://github\.com/([^/\s]+/[^/\s#?]+)", url)
    if not match:
        raise ValueError(f"repository.url must be a GitHub repository URL, got {url!r}")
    return match.group(1)


def repo_files(root: Path, suffixes: set[str]) -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                             check=True, capture_output=True, text=True).stdout
        files = [root / p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in files if p.suffix in suffixes and p.is_file()
                  and not SKIP_PARTS.intersection(p.relative_to(root).parts))


def fix_notebook(path: Path, url: str, old_slugs: set[str]) -> bool:
    """Rewrite the Colab cell's URL in ``path`` (returns whether it differs)."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code" or COLAB_TAG not in cell.metadata.get("tags", []):
            continue
        for match in PIP_URL.finditer(cell.source):
            try:
                old_slugs.add(slug_of(match.group(2)))
            except ValueError:
                pass
        source = PIP_URL.sub(lambda m: m.group(1) + url, cell.source)
        if source != cell.source:
            cell.source = source
            changed = True
    if changed:
        path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return changed


def fix_text(path: Path, slug: str, old_slugs: set[str]) -> str | None:
    """``path``'s text with links to an old repository pointed at ``slug`` (None: no change)."""
    text = path.read_text(encoding="utf-8")
    new = text
    for old in old_slugs - {slug}:
        for form in SLUG_FORMS:
            new = re.sub(re.escape(form.format(old)) + r"(?=[/\"')\s?#]|$)", form.format(slug),
                         new)
    return new if new != text else None


def run(root: Path, check: bool) -> list[Path]:
    url = configured_url(root)
    slug = slug_of(url)
    stale: list[Path] = []
    old_slugs: set[str] = set()
    for path in repo_files(root, {".ipynb"}):
        if check:
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code" and COLAB_TAG in cell.metadata.get("tags", []):
                    urls = [m.group(2) for m in PIP_URL.finditer(cell.source)]
                    if not urls:
                        print(f"{path.relative_to(root)}: its {COLAB_TAG} cell installs no "
                              "`course-utils @ git+URL`")
                        stale.append(path)
                    for found in urls:
                        if found != url:
                            old_slugs.add(slug_of(found) if "github.com" in found else found)
                            stale.append(path)
        elif fix_notebook(path, url, old_slugs):
            stale.append(path)
    for path in repo_files(root, TEXT_SUFFIXES):
        if path.name == "_config.yml":
            continue
        new = fix_text(path, slug, old_slugs)
        if new is not None:
            stale.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return sorted(set(stale))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a file names another repository")
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        stale = run(root, args.check)
        url = configured_url(root)
    except (ValueError, KeyError) as error:
        print(f"error: _config.yml: {error}", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "rewrote"
    for path in stale:
        print(f"{verb}: {path.relative_to(root)}")
    if args.check and stale:
        print(f"These files do not name {url} (repository.url in _config.yml). "
              "Run `python tools/repo_url.py` and commit the result.")
        return 1
    print(f"every Colab cell and repository link names {url}" if not stale else
          f"{len(stale)} file(s) now name {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
