"""In-notebook feedback: ``check("q1")`` runs a question's tests on what the student defined.

It needs no server and no network: the tests live in this package, and ``check`` runs them in
the kernel on the functions in the notebook's namespace. It never raises because of the
student's code -- a stub reports "not answered yet", an error in the student's function
becomes one line saying which input and which step.

``check`` is only feedback. The grade comes from ``python -m course_utils.grade``, which
runs the tests again, in other processes, on different random inputs.
"""

from __future__ import annotations

import sys
import traceback
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .core import Assignment, QuestionResult, judge, load_assignment, manual_result, run_case

CHECK_SEED = 0  # check() shows these inputs; the grader draws its own (see grade.py)

_HARMLESS = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type,
             int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def risky_globals(namespace: Mapping[str, Any], functions: tuple[str, ...]) -> list[str]:
    """Globals the student's functions read that the grader will not have.

    The grader keeps only imports, functions, classes and literal constants; a function that
    reads, say, a tensor made in another cell works here but fails when graded.
    """
    risky = []
    for name in functions:
        fn = namespace.get(name)
        code = getattr(fn, "__code__", None)
        if code is None:
            continue
        for used in sorted(_global_names(code)):
            value = namespace.get(used)
            if used in namespace and not isinstance(value, _HARMLESS) and not callable(value):
                risky.append(f"`{name}` uses the global `{used}` (a {type(value).__name__}); "
                             "the grader keeps only imports, functions, classes and constant "
                             f"values, so create `{used}` inside `{name}` instead")
    return risky


class Checker:
    """``check = Checker("01_optimizers")``; then ``check("q1")``, or ``check()`` for all."""

    def __init__(self, assignment: str, seed: int = CHECK_SEED, verbose: bool = True) -> None:
        self.assignment: Assignment = load_assignment(assignment)
        self.seed = seed
        self.verbose = verbose

    def run(self, question: str, namespace: Mapping[str, Any]) -> QuestionResult:
        """Run one question's tests on ``namespace`` and return the result (no printing)."""
        q = self.assignment.question(question)
        if q.manual:
            return manual_result(q)
        cases = q.cases(self.seed)
        note = "; ".join(risky_globals(namespace, q.functions))
        return judge(q, cases, [run_case(c, namespace) for c in cases], note=note)

    def __call__(self, question: str | None = None,
                 namespace: Mapping[str, Any] | None = None) -> None:
        """Print feedback for ``question`` (all questions if None) on the caller's names."""
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
