"""Check the built site for what a reader would see go wrong: ``python tools/check_site.py
_build/smoke/_build/html`` (`make test` runs it after the smoke build).

Fails (exit 1, one line per problem, naming the page) on:

* a script included twice on a page (same file, or same inline code: the duplicated Thebe
  configuration made every page log ``THEBE_JS_URL has already been declared``);
* anything a page loads from the network to show itself: a ``<script src>``, stylesheet,
  image or font from ``http(s)://`` (launch buttons and ordinary links are fine, and so is
  Thebe's bundle, which is only fetched when the reader asks for live code);
* MathJax not served from the build (``_static/mathjax``), or missing from it;
* widget-state JSON or require.js on a static page;
* an output block that can run past the right edge of the page: the course's CSS
  (``_static/course.css``, which wraps output lines) missing from a page with outputs;
* on a page built from a run on the offline stand-in, an output line that reports a result
  (accuracy, loss, error, training) on a real dataset's name (Fashion-MNIST, MNIST, CIFAR-10)
  without saying it is the stand-in;
* a notebook page without its launch buttons (Binder, Colab, live code);
* raw TeX (``$...$``) shown as text in the bibliography;
* a chapter without pages yet that the sidebar (``_toc.yml`` title) or the intro presents as
  if it were there, or a chapter with pages still called "coming soon".

It also lists (without failing) output lines longer than ``--wrap-at`` characters: those
wrap on a laptop screen, which is readable but usually means a table could be narrower; and
chapters whose first page has no "What it needs" section.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

# Where the network is allowed: links a reader clicks, and Thebe's lazy-loaded bundle.
LAZY_ALLOWED = ("https://unpkg.com/thebe@",)
REAL_DATASETS = re.compile(r"\b(Fashion-MNIST|FashionMNIST|MNIST|CIFAR-?10|CIFAR-?100)\b")
RESULT = re.compile(r"\b(acc|accuracy|loss|error|trained|training)\b", re.IGNORECASE)
STANDIN = "stand-in"


class Page(HTMLParser):
    """What the checks need from one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []        # src, or "inline:" + body
        self.remote: list[str] = []         # network resources needed to show the page
        self.stylesheets: list[str] = []
        self.outputs: list[str] = []        # text of <pre> inside cell outputs
        self.launch: set[str] = set()
        self.widget_state = False
        self._script: dict[str, str] | None = None
        self._body: list[str] = []
        self._output_depth = 0              # >0 while inside a div.cell_output
        self._div_stack: list[bool] = []
        self._pre: list[str] | None = None
        self.bibliography_text: list[str] = []
        self._in_bib = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "script":
            self._script = a
            self._body = []
            if a.get("type") == "application/vnd.jupyter.widget-state+json":
                self.widget_state = True
        elif tag == "link" and "stylesheet" in a.get("rel", ""):
            self.stylesheets.append(a.get("href", ""))
            if a.get("href", "").startswith(("http://", "https://", "//")):
                self.remote.append(a["href"])
        elif tag in ("img", "source", "iframe") and a.get("src", "").startswith(
                ("http://", "https://", "//")):
            self.remote.append(a["src"])
        elif tag == "div":
            is_output = "cell_output" in classes
            self._div_stack.append(is_output)
            self._output_depth += is_output
            if "citation-list" in classes or "bibliography" in classes:
                self._in_bib += 1
        elif tag == "pre" and self._output_depth:
            self._pre = []
        elif tag == "a":
            href = a.get("href", "")
            if "colab.research.google.com" in href:
                self.launch.add("colab")
            elif "mybinder.org" in href:
                self.launch.add("binder")
        elif tag == "button" and "thebe-launch-button" in classes:
            self.launch.add("live code")
        if "launch-thebe" in a.get("onclick", "") or "initThebeSBT" in a.get("onclick", ""):
            self.launch.add("live code")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            src = self._script.get("src")
            body = "".join(self._body).strip()
            if src:
                self.scripts.append(src)
                if src.startswith(("http://", "https://", "//")) and not src.startswith(
                        LAZY_ALLOWED):
                    self.remote.append(src)
            elif body and self._script.get("type") != "application/vnd.jupyter.widget-state+json":
                self.scripts.append("inline:" + body)
            self._script = None
        elif tag == "div" and self._div_stack:
            is_output = self._div_stack.pop()
            self._output_depth -= is_output
            if self._in_bib and not self._div_stack:
                self._in_bib = 0
        elif tag == "pre" and self._pre is not None:
            self.outputs.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._body.append(data)
        if self._pre is not None:
            self._pre.append(data)
        if self._in_bib:
            self.bibliography_text.append(data)


def check_page(path: Path, root: Path, wrap_at: int, notebook_pages: set[str]
               ) -> tuple[list[str], list[str]]:
    """(problems, notices) for one page."""
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    rel = path.relative_to(root).as_posix()
    problems, notices = [], []
    for script, n in Counter(page.scripts).items():
        if n > 1:
            what = script[:70].replace("\n", " ")
            problems.append(f"{rel}: script included {n} times: {what}")
    for url in page.remote:
        problems.append(f"{rel}: loads {url} from the network (serve it from the build)")
    if any("require" in s and s.startswith(("http", "//")) for s in page.scripts):
        problems.append(f"{rel}: loads require.js (nothing on a static page needs it)")
    if page.widget_state:
        problems.append(f"{rel}: embeds widget-state JSON (unused on a static page)")
    mathjax = [s for s in page.scripts if "mathjax" in s.lower() and not s.startswith("inline:")]
    for src in mathjax:
        if "_static/mathjax/" not in src:
            problems.append(f"{rel}: MathJax from {src}, not from the build's _static/mathjax/")
        elif not (path.parent / src.split("?")[0]).exists():
            problems.append(f"{rel}: {src} is missing from the build")
    if page.outputs and not any(s.split("?")[0].endswith("course.css")
                                for s in page.stylesheets):
        problems.append(f"{rel}: has outputs but not _static/course.css (long lines would "
                        "run past the page)")
    text = "\n".join(page.outputs)
    if STANDIN in text:
        for line in text.splitlines():
            if (REAL_DATASETS.search(line) and RESULT.search(line) and STANDIN not in line
                    and "download" not in line):
                problems.append(f"{rel}: a run on the offline stand-in prints {line.strip()!r}"
                                " without saying it is the stand-in")
    for line in text.splitlines():
        if len(line) > wrap_at:
            notices.append(f"{rel}: {len(line)}-character output line wraps: "
                           f"{line.strip()[:60]}...")
    if rel.removesuffix(".html") in notebook_pages:
        missing = {"binder", "colab", "live code"} - page.launch
        if missing:
            problems.append(f"{rel}: notebook page without launch buttons: "
                            f"{', '.join(sorted(missing))}")
    bib = "".join(page.bibliography_text)
    if re.search(r"\$[^$\s][^$]*\$", bib):
        problems.append(f"{rel}: raw TeX in the bibliography: "
                        f"{re.search(r'.{0,30}[$][^$]+[$]', bib).group(0)!r}")
    return problems, notices


def chapter_status(source: Path) -> dict[str, tuple[str, bool]]:
    """{chapter index path: (title shown in the sidebar, has pages)} from ``_toc.yml``."""
    import yaml

    toc = yaml.safe_load((source / "_toc.yml").read_text(encoding="utf-8"))
    found: dict[str, tuple[str, bool]] = {}
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            path = str(entry.get("file", ""))
            if re.match(r"chapters/\d\d_[^/]+/index$", path):
                page = source / f"{path}.md"
                heading = ""
                if page.exists():
                    heading = next((line[2:].strip() for line in
                                    page.read_text(encoding="utf-8").splitlines()
                                    if line.startswith("# ")), "")
                found[path] = (str(entry.get("title") or heading), bool(entry.get("sections")))
    return found


def check_coming_soon(source: Path) -> list[str]:
    """Unbuilt chapters are said to be coming (sidebar, intro); built ones are not."""
    problems = []
    intro = (source / "intro.md").read_text(encoding="utf-8").splitlines()
    for path, (title, has_pages) in chapter_status(source).items():
        coming = "coming soon" in title.lower()
        if has_pages and coming:
            problems.append(f"_toc.yml: {path} has pages now: remove '(coming soon)' from its "
                            "title")
        if not has_pages and not coming:
            problems.append(f"_toc.yml: {path} has no pages yet: give it "
                            f"`title: {title} (coming soon)`")
        # The intro's numbered list: item N is chapter N ("2. **Regularization** ...").
        number = int(path.split("/")[1][:2])
        lines = [line for line in intro if re.match(rf"\s*{number}\. \*\*", line)]
        for line in lines:
            if has_pages and "coming soon" in line.lower():
                problems.append(f"intro.md: chapter {number} has pages now: {line.strip()!r}")
            if not has_pages and "coming soon" not in line.lower():
                problems.append(f"intro.md: say chapter {number} is coming soon: "
                                f"{line.strip()!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the built site, e.g. _build/html")
    parser.add_argument("--source", type=Path, default=Path("."),
                        help="the book's sources (to know which pages are notebooks)")
    parser.add_argument("--wrap-at", type=int, default=100,
                        help="list output lines longer than this many characters")
    args = parser.parse_args(argv)
    root = args.html
    pages = sorted(p for p in root.rglob("*.html")
                   if not p.relative_to(root).parts[0].startswith("_"))
    if not pages:
        print(f"error: no HTML pages under {root}", file=sys.stderr)
        return 1
    notebook_pages = {p.relative_to(args.source).with_suffix("").as_posix()
                      for p in (args.source / "chapters").rglob("*.ipynb")
                      if ".ipynb_checkpoints" not in p.parts}
    problems: list[str] = []
    notices: list[str] = []
    for path in pages:
        p, n = check_page(path, root, args.wrap_at, notebook_pages)
        problems += p
        notices += n
    problems += check_coming_soon(args.source)
    for path, (_title, has_pages) in chapter_status(args.source).items():
        text = (args.source / f"{path}.md").read_text(encoding="utf-8").lower()
        if has_pages and not re.search(r"what it needs|\|\s*needs\s*\|", text):
            notices.append(f"{path}.md: no 'What it needs' section (CPU minutes in `quick`, "
                           "a GPU for `full`) on the chapter's first page")
    if not (root / "_static" / "mathjax" / "tex-chtml.js").exists():
        problems.append("_static/mathjax/tex-chtml.js is not in the build (math needs the "
                        "network): is sphinx-mathjax-offline installed?")
    for notice in notices:
        print(f"note: {notice}")
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"checked {len(pages)} pages: {len(problems)} problem(s), "
          f"{len(notices)} long output line(s) that wrap")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
