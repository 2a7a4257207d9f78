"""In-notebook feedback: ``check("q1")`` runs a question's tests on what the student defined.

It needs no server and no network: the tests live in this package, and ``check`` runs them,
through the grader's own path (``probe.probe_question``), on the functions in the notebook's
namespace. It never raises because of the student's code -- a stub reports "not answered
yet", an error in the student's function becomes one line saying which input and which step,
a hang is stopped after a minute.

``check`` is only feedback. The grade comes from ``python -m course_utils.grade``, which
runs the whole notebook again in a sandbox and the tests on different random inputs.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .core import Assignment, QuestionResult, judge, load_assignment, manual_result
from .probe import probe_question

CHECK_SEED = 0  # check() shows these inputs; the grader draws its own (see grade.py)
CHECK_TIMEOUT = 60.0  # seconds a question's tests may run in check()


class Checker:
    """``check = Checker("01_optimizers")``; then ``check("q1")``, or ``check()`` for all.

    The tests run exactly as the grader runs them (``probe.probe_question``): in a child
    forked from this kernel -- so on the names the notebook has defined, however it defined
    them -- killed after ``timeout`` seconds, with the grading policy enforced. Only the
    inputs differ (``seed``). While the grader runs the notebook, ``check`` does nothing.
    """

    def __init__(self, assignment: str, seed: int = CHECK_SEED, verbose: bool = True,
                 timeout: float = CHECK_TIMEOUT) -> None:
        self.assignment: Assignment = load_assignment(assignment)
        self.seed = seed
        self.verbose = verbose
        self.timeout = timeout

    def run(self, question: str, namespace: Mapping[str, Any]) -> QuestionResult:
        """Run one question's tests on ``namespace`` and return the result (no printing)."""
        q = self.assignment.question(question)
        if q.manual:
            return manual_result(q)
        cases = q.cases(self.seed)
        report = probe_question(namespace, q, cases, self.timeout)
        result = judge(q, cases, report.get("outcomes", []), note=str(report.get("note", "")))
        result.output = str(report.get("output", ""))
        return result

    def __call__(self, question: str | None = None,
                 namespace: Mapping[str, Any] | None = None) -> None:
        """Print feedback for ``question`` (all questions if None) on the caller's names."""
        if os.environ.get("COURSE_GRADING_RUN") == "1":
            print("check() does nothing while the grader runs this notebook.")
            return
        if namespace is None:
            namespace = sys._getframe(1).f_globals  # the notebook's (or module's) globals
        if question is not None:
            print(self.run(question, namespace).feedback(self.verbose))
            return
        results = [self.run(q.id, namespace) for q in self.assignment.questions]
        for r in results:
            print(r.feedback(verbose=False))
        auto = sum(r.score for r in results if r.status != "manual")
        print(f"\nauto-graded total: {auto:g}/{self.assignment.auto_points:g} points (on the "
              f"check() inputs; the grader uses others), plus "
              f"{self.assignment.manual_points:g} points graded by hand.")

    def __repr__(self) -> str:
        return (f"Checker({self.assignment.id!r}): call check('q1') ... check('"
                f"{self.assignment.questions[-1].id}'), or check() for a summary")


def _function_name(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    return frames[-1].name if frames else "a function"


@contextmanager
def skip_unanswered(what: str = "this experiment") -> Iterator[None]:
    """Run a block that uses the student's functions; skip it politely while they are stubs.

    A ``NotImplementedError`` (the stub of an unanswered question) ends the block with a
    one-line message instead of an error, so the student notebook runs top to bottom before
    it is finished. Any other error is the student's to see, and propagates.
    """
    try:
        yield
    except NotImplementedError as error:
        print(f"Skipped {what}: `{_function_name(error)}` is not written yet. Come back here "
              "when its question is done.")
