"""Sphinx extension for the course's site (``_config.yml``: ``sphinx.local_extensions``).

* ``bibtex_default_style: course``: the bibliography is labelled the way the text cites,
  author-year ("LeCun et al., 1998"), instead of pybtex's alpha labels ("[LBBH98]") that no
  citation in the text shows; entries are sorted by author, then year.
* Static pages carry only what they show: the widget views are dropped from the page
  (``nb_mime_priority_overrides``), so the widget-state JSON that ipywidgets stores in an
  executed notebook (100-300 KB a page) is dropped as well.
* Thebe's configuration script is added once per page, however often Sphinx re-reads the
  environment (sphinx-thebe adds it again on every ``env-before-read-docs``, which makes
  every page declare ``THEBE_JS_URL`` twice and log a JavaScript error).
"""

from __future__ import annotations

from typing import Any

import pybtex.plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx


def _last_names(entry: Any) -> list[str]:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    return [" ".join(p.last_names) or str(p) for p in people]


def author_year_label(entry: Any) -> str:
    """"LeCun et al., 1998", "Kingma and Ba, 2015", "Polyak, 1964"."""
    names = [n.replace("{", "").replace("}", "") for n in _last_names(entry)]
    year = entry.fields.get("year", "n.d.")
    if not names:
        who = entry.fields.get("organization") or entry.fields.get("title", "?").split(":")[0]
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Author-year labels, made unique with a, b, ... when two works share one."""

    def format_labels(self, sorted_entries: Any):
        entries = list(sorted_entries)
        labels = [author_year_label(e) for e in entries]
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        seen: dict[str, int] = {}
        for label in labels:
            if counts[label] > 1:
                seen[label] = seen.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class CourseStyle(UnsrtStyle):
    default_label_style = "course_author_year"
    default_sorting_style = "author_year_title"


pybtex.plugin.register_plugin("pybtex.style.labels", "course_author_year", AuthorYearLabelStyle)
pybtex.plugin.register_plugin("pybtex.style.formatting", "course", CourseStyle)


def drop_widget_state(app: Sphinx, pagename: str, *args: Any) -> None:
    """Remove the widget-state script (and the CDN scripts that would read it)."""
    data = getattr(app.env, "nb_metadata", {}).get(pagename, {})
    js_files = data.get("js_files", {})
    for key in [k for k in js_files if k.startswith("ipywidgets")]:
        del js_files[key]


def dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict,
                   doctree: Any) -> None:
    """Keep the first of identical script entries (same file, or same inline body)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[Any] = set()
    unique = []
    for script in scripts:
        # Same file or same inline body, whatever the priority each was added with.
        key = (str(getattr(script, "filename", script) or ""),  # inline: None or ""
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    # Before myst-nb's own handler (priority 500) adds the page's notebook scripts.
    app.connect("html-page-context", drop_widget_state, priority=400)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
