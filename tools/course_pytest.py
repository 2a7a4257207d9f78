"""pytest plugin used by `make test` (``-p course_pytest`` with ``tools/`` on the path).

Three jobs, so that every notebook is executed exactly once per `make test`:

* ``--executed-dir DIR``: after nbval has run a notebook, write it with the outputs nbval
  collected to ``DIR/<its path>``. The smoke book build renders those files instead of
  executing the notebooks a second time (see ``tools/stage_book.py``). A notebook with a
  failing cell is not written, so the book build cannot show a half-run page.
* Timing: every test's and every notebook's time (kernel start and all its cells) is
  summed and printed at the end of the run as "slowest notebooks" and "slowest tests";
  ``--timings-json FILE`` also saves them for ``python tools/course_pytest.py FILE``, which
  prints the same table again at the very end of `make test`.
* A cell whose output has a ``COURSE CHECK FAILED`` line (``tools/kernel_checks.py``, run in
  every kernel, e.g. a stand-in figure titled with the real dataset's name) fails.
* ``--notebook-limit S``: a notebook that takes longer than ``S`` seconds fails the run with
  a message naming it -- a guard against a `full`-size experiment slipping into CI, not a
  benchmark. Pair it with ``--nbval-cell-timeout`` so that such a run also stops.

Works with and without pytest-xdist (use ``--dist loadfile``: one notebook per worker).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

SHOWN = 12  # rows per table


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course", "the course's test-suite helpers")
    group.addoption("--executed-dir", default=None,
                    help="write each notebook nbval ran, with its outputs, under this folder")
    group.addoption("--timings-json", default=None,
                    help="save the per-notebook and per-test times to this JSON file")
    group.addoption("--notebook-limit", type=float, default=0.0,
                    help="fail the run when one notebook takes longer than this (seconds)")


def _is_nbval_cell(item: pytest.Item) -> bool:
    return hasattr(item, "cell") and hasattr(item, "test_outputs") and hasattr(item.parent, "nb")


def _notebook_of(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") else None


# --- saving the executed notebooks (runs where the notebook runs: a worker under xdist) ----


CHECK_FAILED = "COURSE CHECK FAILED"  # printed by tools/kernel_checks.py inside the kernel


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    if _is_nbval_cell(item) and outcome.exception is None:
        failures = [line for out in item.test_outputs or [] if out.get("output_type") == "stream"
                    for line in out.get("text", "").splitlines() if CHECK_FAILED in line]
        if failures:
            outcome.force_exception(AssertionError(
                f"{item.path.name}, code cell {item.cell_num}: " + "; ".join(failures)))
    if _is_nbval_cell(item) and item.config.getoption("executed_dir"):
        parent = item.parent
        count = getattr(parent, "_course_count", 0) + 1
        parent._course_count = count
        outputs = item.test_outputs or []
        for out in outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
        item.cell.outputs = outputs
        item.cell.execution_count = count


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _is_nbval_cell(item) and report.failed:
        item.parent._course_failed = True


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    folder = item.config.getoption("executed_dir")
    if not folder or not _is_nbval_cell(item):
        return
    if nextitem is not None and nextitem.parent is item.parent:
        return  # not the notebook's last cell yet
    import nbformat

    parent = item.parent
    target = Path(folder) / Path(str(parent.path)).relative_to(item.config.rootpath)
    target.unlink(missing_ok=True)
    if getattr(parent, "_course_failed", False):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(parent.nb, str(target))


# --- timing and the per-notebook guard (the controller under xdist) -------------------------


class _Timings:
    def __init__(self) -> None:
        self.notebooks: dict[str, float] = defaultdict(float)
        self.tests: dict[str, float] = defaultdict(float)
        self.outcomes: dict[str, int] = defaultdict(int)
        self.start = time.perf_counter()


_TIMINGS = _Timings()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # One outcome per test: its call, or a setup that skipped or failed, or a failed teardown.
    if (report.when == "call" or (report.when == "setup" and not report.passed)
            or (report.when == "teardown" and report.failed)):
        _TIMINGS.outcomes[report.outcome] += 1
    notebook = _notebook_of(report.nodeid)
    if notebook:
        _TIMINGS.notebooks[notebook] += report.duration
    else:
        _TIMINGS.tests[report.nodeid] += report.duration


def _over_limit(config: pytest.Config) -> list[tuple[str, float]]:
    limit = config.getoption("notebook_limit")
    if not limit:
        return []
    return sorted(((nb, t) for nb, t in _TIMINGS.notebooks.items() if t > limit),
                  key=lambda x: -x[1])


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config):
        return
    if _over_limit(config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    path = config.getoption("timings_json")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        data = {
            "wall_s": round(time.perf_counter() - _TIMINGS.start, 2),
            "notebook_limit_s": config.getoption("notebook_limit"),
            "outcomes": dict(_TIMINGS.outcomes),
            "exitstatus": int(session.exitstatus),
            "notebooks": dict(sorted(_TIMINGS.notebooks.items(), key=lambda x: -x[1])),
            "tests": dict(sorted(_TIMINGS.tests.items(), key=lambda x: -x[1])),
        }
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def format_table(notebooks: dict[str, float], tests: dict[str, float], wall: float | None,
                 limit: float = 0.0, shown: int = SHOWN) -> list[str]:
    """The timing table's lines: slowest notebooks, slowest tests, totals."""
    lines = []
    if notebooks:
        total = sum(notebooks.values())
        head = f"slowest notebooks ({len(notebooks)} run, {total:.1f} s of kernel time"
        head += f"; limit {limit:.0f} s each)" if limit else ")"
        lines.append(head)
        for nb, t in sorted(notebooks.items(), key=lambda x: -x[1])[:shown]:
            flag = "   <-- OVER THE LIMIT" if limit and t > limit else ""
            lines.append(f"  {t:7.1f} s  {nb}{flag}")
    if tests:
        total = sum(tests.values())
        lines.append(f"slowest tests ({len(tests)} run, {total:.1f} s in all)")
        for name, t in sorted(tests.items(), key=lambda x: -x[1])[:shown]:
            lines.append(f"  {t:7.1f} s  {name}")
    if wall is not None:
        lines.append(f"wall-clock time of this pytest run: {wall:.1f} s")
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config):
    if _is_worker(config) or not (_TIMINGS.notebooks or _TIMINGS.tests):
        return
    tr = terminalreporter
    tr.section("course timings")
    limit = config.getoption("notebook_limit")
    for line in format_table(_TIMINGS.notebooks, _TIMINGS.tests,
                             time.perf_counter() - _TIMINGS.start, limit):
        tr.write_line(line)
    for nb, t in _over_limit(config):
        tr.write_line(f"FAILED {nb}: took {t:.1f} s, over the {limit:.0f} s limit for one "
                      "notebook in this profile. Is a `full`-size experiment running in CI? "
                      "Take the sizes from course_utils.get_profile().", red=True, bold=True)


def main(argv: list[str]) -> int:
    """``python tools/course_pytest.py TIMINGS.json [...]``: print the saved tables."""
    notebooks: dict[str, float] = {}
    tests: dict[str, float] = {}
    limit = 0.0
    totals: list[dict[str, int]] = []
    print("=" * 30, "timings of this run (budget: tests/README.md)", "=" * 30)
    for path in argv:
        if not Path(path).exists():
            print(f"{path}: not found (that step did not run)")
            continue
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        notebooks.update(data.get("notebooks", {}))
        tests.update(data.get("tests", {}))
        limit = max(limit, data.get("notebook_limit_s") or 0.0)
        totals.append(data.get("outcomes", {}))
        if "wall_s" in data:
            print(f"  {data['wall_s']:7.1f} s  pytest run {Path(path).stem}")
        for step, seconds in data.get("steps", {}).items():
            print(f"  {seconds:7.1f} s  {step}")
    print("\n".join(format_table(notebooks, tests, None, limit)))
    counts = {k: sum(outcomes.get(k, 0) for outcomes in totals) for k in
              ("passed", "failed", "skipped")}
    print(f"total: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
