"""Questions made of test cases, run against what a student defined, with specific feedback.

An assignment (``a01_optimizers.py`` and later ones) is a list of :class:`Question`. An
auto-graded question builds a list of :class:`Case` from a seed. Each case has two halves
that can run in different processes:

- ``run(namespace)`` calls the student's functions on the case's inputs and returns plain
  values (tensors, floats, lists) -- this is the only part that touches student code;
- ``compare(got, expected)`` judges those values against ``reference()``, which computes the
  expected values from a library (``torch.optim``, ``torch.optim.lr_scheduler``) rather than
  from a copy of the solution.

``run`` is only ever called in a child process (``probe.probe_question``), for ``check()``
in the notebook and for the grader alike; ``reference`` and ``compare`` run in the process
that asked, after the child is gone -- for the grader, a process that never runs student
code (see ``course_utils/grade.py``). A ``run`` must therefore return plain values (see
:func:`plain`) and must check the *kind* of what the student returned (:func:`real_number`,
:func:`check_tensor`), saying what was expected.
"""

from __future__ import annotations

import importlib
import math
import numbers
import re
import reprlib
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

ASSIGNMENT_ID = re.compile(r"^\d\d_[a-z0-9_]+$")
MESSAGE_CAP = 600  # characters of one message that quotes student code or values


class StudentError(Exception):
    """Student code returned or raised something a test cannot use; the message says what."""


class NotAnswered(Exception):
    """A required function is still the stub that raises ``NotImplementedError``."""


# --------------------------------------------------------------------------------------
# Questions and cases
# --------------------------------------------------------------------------------------

_MISSING = object()


@dataclass
class Case:
    """One test: inputs (captured by ``run``), a library reference, and a comparison."""

    label: str
    run: Callable[[Mapping[str, Any]], Any]
    reference: Callable[[], Any]
    compare: Callable[[Any, Any], str | None]
    weight: float = 1.0
    _expected: Any = field(default=_MISSING, repr=False)

    def expected(self) -> Any:
        """The reference value, computed once."""
        if self._expected is _MISSING:
            self._expected = self.reference()
        return self._expected


@dataclass
class Question:
    """A question worth ``points``; ``cases(seed)`` builds its tests (None: graded by hand).

    ``functions``: the names the student must define (any binding counts). ``forbidden``:
    modules or qualified names (``"torch.optim"``, ``"torch.nn.functional.dropout"``) the
    answer may not use, directly or through other notebook functions; the probe checks the
    answer's code and makes them raise while the tests run (see ``policy.py``).
    """

    id: str
    title: str
    points: float
    cases: Callable[[int], list[Case]] | None = None
    functions: tuple[str, ...] = ()
    manual_note: str = ""
    forbidden: tuple[str, ...] = ()

    @property
    def manual(self) -> bool:
        return self.cases is None


@dataclass
class Assignment:
    """An assignment: an id such as ``01_optimizers``, a title and its questions."""

    id: str
    title: str
    questions: list[Question]

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise ValueError(f"Unknown question {qid!r} in assignment {self.id}; valid questions "
                         f"are {', '.join(q.id for q in self.questions)}.")

    @property
    def auto_points(self) -> float:
        return sum(q.points for q in self.questions if not q.manual)

    @property
    def manual_points(self) -> float:
        return sum(q.points for q in self.questions if q.manual)


def load_assignment(assignment_id: str) -> Assignment:
    """The assignment ``NN_name``, defined in ``course_utils/grading/aNN_name.py``."""
    if not ASSIGNMENT_ID.match(assignment_id or ""):
        raise ValueError(f"Invalid assignment id {assignment_id!r}: expected the notebook's name "
                         "without .ipynb, such as '01_optimizers'.")
    try:
        module = importlib.import_module(f"course_utils.grading.a{assignment_id}")
    except ModuleNotFoundError:
        raise ValueError(f"Unknown assignment {assignment_id!r}: there is no "
                         f"course_utils/grading/a{assignment_id}.py.") from None
    return module.ASSIGNMENT


# --------------------------------------------------------------------------------------
# Calling student code (the "run" half)
# --------------------------------------------------------------------------------------

def student_function(namespace: Mapping[str, Any], name: str) -> Callable:
    """The student's function ``name``, or a StudentError saying why it is not usable."""
    fn = namespace.get(name)
    if fn is None:
        raise StudentError(f"`{name}` is not defined. Run the cell that defines it (and keep "
                           "its name and arguments as given).")
    if not callable(fn):
        raise StudentError(f"`{name}` should be a function, but it is a {type(fn).__name__}.")
    return fn


def describe_exception(error: BaseException) -> str:
    """``TypeError: message (in adam: `line of code`)``, without a wall of traceback."""
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    frames = traceback.extract_tb(error.__traceback__)
    library = ("course_utils", "site-packages", "dist-packages", "/lib/python")
    inside = [f for f in frames if not any(part in f.filename.replace("\\", "/")
                                           for part in library)]
    if inside:
        last = inside[-1]
        where = f"in {last.name}" + (f": `{last.line.strip()}`" if last.line else
                                     f", line {last.lineno}")
        text += f" ({where})"
    return text[:MESSAGE_CAP]


def call_student(fn: Callable, where: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; NotImplementedError means "not answered", other errors say where."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        raise NotAnswered(f"`{getattr(fn, '__name__', fn)}` is not written yet") from error
    except StudentError:
        raise
    except Exception as error:  # noqa: BLE001 - any error in student code becomes feedback
        raise StudentError(f"{where}: {getattr(fn, '__name__', 'your function')}(...) raised "
                           f"{describe_exception(error)}") from None


def run_case(case: Case, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Run the student half of ``case``: ``{"value": ...}`` or ``{"error": ..., ...}``."""
    try:
        value = case.run(namespace)
    except NotAnswered as error:
        return {"error": f"not answered yet: {error}", "not_answered": True}
    except StudentError as error:
        return {"error": str(error)}
    except Exception as error:  # noqa: BLE001
        return {"error": describe_exception(error)}
    try:
        return {"value": plain(value)}
    except StudentError as error:
        return {"error": str(error)}


def plain(value: Any) -> Any:
    """A copy of ``value`` made only of plain tensors, numbers, strings, lists and dicts.

    This is what crosses from the process that ran student code to the one that judges it
    (with ``torch.load(weights_only=True)``, which cannot run code).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().as_subclass(torch.Tensor).clone()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    raise StudentError(f"got a {type(value).__name__}, which the tests cannot use")


def integer(value: Any, where: str, name: str) -> int:
    """``value`` as an int if it is an integer (not a bool, float, string or tensor)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    shown = reprlib.repr(value)
    if isinstance(value, torch.Tensor):
        extra = " (a tensor: return a Python int, e.g. with int(...))"
    elif isinstance(value, float):
        extra = " (a float: sizes and counts are whole numbers -- use // or math.floor)"
    elif value is None:
        extra = " (did you forget `return`?)"
    else:
        extra = ""
    raise StudentError(f"{where}: `{name}` should return an int, got {type(value).__name__} "
                       f"{shown}{extra}")


def real_number(value: Any, where: str, name: str) -> float:
    """``value`` as a float if it is a real number (not a bool, string or tensor), else why not."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    shown = reprlib.repr(value)
    if isinstance(value, torch.Tensor):
        extra = " (a tensor: return a Python number, e.g. with .item())"
    elif isinstance(value, str):
        extra = " (a string: return the number itself, not its text)"
    else:
        extra = ""
    raise StudentError(f"{where}: `{name}` should return a real number (a Python float), got "
                       f"{type(value).__name__} {shown}{extra}")


def check_tensor(value: Any, like: torch.Tensor, where: str, what: str) -> torch.Tensor:
    """``value`` if it is a tensor with the shape and dtype of ``like``, else a StudentError."""
    if not isinstance(value, torch.Tensor):
        raise StudentError(f"{where}: {what} should be a tensor of shape {tuple(like.shape)} and "
                           f"dtype {like.dtype}, got {type(value).__name__}")
    if value.shape != like.shape:
        raise StudentError(f"{where}: {what} has shape {tuple(value.shape)}, expected "
                           f"{tuple(like.shape)} (the shape of the parameter)")
    if value.dtype != like.dtype:
        raise StudentError(f"{where}: {what} has dtype {value.dtype}, expected {like.dtype} (the "
                           "dtype of the parameter)")
    return value


# --------------------------------------------------------------------------------------
# Comparing (the "compare" half): specific messages, never a traceback
# --------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _index(idx: Sequence[int]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]" if len(idx) else ""


def compare_tensor(got: Any, expected: torch.Tensor, *, what: str = "the result",
                   name: str | None = None, hint: str = "", rtol: float = 1e-5,
                   atol: float = 1e-6) -> str | None:
    """None if ``got`` equals ``expected`` within the tolerances; else what differs.

    Shape first, then values: how many entries differ, and the one that differs most, named
    ``name`` (default: the last word of ``what``) with its index. ``hint`` follows as
    ". Hint: ...".
    """
    tail = f". Hint: {hint}" if hint else ""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}" + tail
    g, e = got.double(), expected.double()
    close = torch.isclose(g, e, rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    diff = (g - e).abs().nan_to_num(float("inf"))
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    name = name or what.split()[-1]
    return (f"{what}: {int((~close).sum())} of {e.numel()} entries differ from the "
            f"reference; expected {name}{_index(where)} = {float(e[where]):.6g}, got "
            f"{float(g[where]):.6g}" + tail)


def compare_trajectory(got: Any, expected: torch.Tensor, *, name: str = "param",
                       rtol: float = 1e-4, atol: float = 1e-6, hint_first: str = "",
                       hint_later: str = "") -> str | None:
    """Compare parameters after each step; report the first step and entry that differ."""
    if not isinstance(got, torch.Tensor):
        return f"expected a stack of tensors, got {type(got).__name__}"
    if got.shape != expected.shape:
        return (f"expected values of shape {tuple(expected.shape[1:])} for each of "
                f"{expected.shape[0]} steps, got shape {tuple(got.shape)}")
    g, e = got.double(), expected.double()
    close = torch.isclose(g, e, rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    steps = e.shape[0]
    bad_step = int((~close.reshape(steps, -1)).any(dim=1).nonzero()[0])
    diff = (g[bad_step] - e[bad_step]).abs().nan_to_num(float("inf"))
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) \
        if diff.ndim else ()
    message = (f"after step {bad_step + 1} of {steps}: expected {name}{_index(where)} = "
               f"{_fmt(float(e[bad_step][where]))}, got {_fmt(float(g[bad_step][where]))}")
    if not bool(torch.isfinite(g[bad_step]).all()):
        message += " (your result has nan or inf entries: a division by zero?)"
    matched = "the first step matches" if bad_step == 1 else \
        f"the first {bad_step} steps match"
    hint = hint_first if bad_step == 0 else hint_later.format(matched=matched)
    return message + (f". Hint: {hint}" if hint else "")


def compare_sequence(got: Any, expected: Sequence[float], *, index: str = "step",
                     start: int = 0, rtol: float = 1e-6, atol: float = 1e-9,
                     hint: Callable[[int], str] | None = None) -> str | None:
    """Compare two lists of numbers; report the first index at which they differ."""
    if not isinstance(got, list) or len(got) != len(expected):
        return f"expected {len(expected)} values, got {reprlib.repr(got)}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if not isinstance(g, (int, float)) or not math.isclose(g, e, rel_tol=rtol, abs_tol=atol):
            shown = _fmt(g) if isinstance(g, (int, float)) else reprlib.repr(g)
            message = f"at {index} {i + start}: expected {_fmt(e)}, got {shown}"
            extra = hint(i + start) if hint else ""
            return message + (f". Hint: {extra}" if extra else "")
    return None


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------

@dataclass
class CaseResult:
    label: str
    weight: float
    passed: bool
    message: str = ""
    not_answered: bool = False


@dataclass
class QuestionResult:
    """The score of one question and what each of its tests said."""

    id: str
    title: str
    points: float
    score: float
    status: str  # passed | partial | failed | not answered | manual
    cases: list[CaseResult] = field(default_factory=list)
    note: str = ""
    output: str = ""  # what the student's code printed during the tests (capped)

    def feedback(self, verbose: bool = True) -> str:
        """Human-readable lines: a header, then one line per test (failures explained)."""
        if self.status == "manual":
            return f"{self.id}  {self.title}: graded by hand ({self.points:g} points). {self.note}"
        passed = sum(c.passed for c in self.cases)
        head = (f"{self.id}  {self.title}: {self.status} -- {passed}/{len(self.cases)} tests "
                f"passed, {self.score:g}/{self.points:g} points")
        lines = [head]
        if self.note:
            lines.append(f"    note: {self.note}")
        if self.status == "not answered":
            missing = sorted({c.message for c in self.cases if c.not_answered})
            lines += [f"    {m}" for m in missing]
            return "\n".join(lines)
        if verbose:
            for c in self.cases:
                if c.passed:
                    lines.append(f"    PASS  {c.label}")
                else:
                    lines.append(f"    FAIL  {c.label}\n          {c.message}")
            if self.output.strip():
                lines.append("    your code printed:\n" + "\n".join(
                    "      " + line for line in self.output.strip().splitlines()[:40]))
        return "\n".join(lines)


def judge(question: Question, cases: Sequence[Case],
          outcomes: Sequence[dict[str, Any] | None], note: str = "") -> QuestionResult:
    """Score ``question`` from the outcomes of running its cases (None: the case never ran)."""
    results = []
    for i, case in enumerate(cases):
        outcome = outcomes[i] if i < len(outcomes) else None
        if not isinstance(outcome, dict):
            results.append(CaseResult(case.label, case.weight, False,
                                      "did not run (the grader stopped your code: time limit "
                                      "or crash)"))
        elif "error" in outcome:
            results.append(CaseResult(case.label, case.weight, False,
                                      str(outcome["error"])[:MESSAGE_CAP],
                                      bool(outcome.get("not_answered"))))
        else:
            try:
                message = case.compare(outcome.get("value"), case.expected())
            except Exception as error:  # noqa: BLE001 - a garbage value is a failed test
                message = f"could not compare your result ({type(error).__name__}: {error})"
            results.append(CaseResult(case.label, case.weight, message is None,
                                      (message or "")[:MESSAGE_CAP]))
    total = sum(c.weight for c in results) or 1.0
    earned = sum(c.weight for c in results if c.passed)
    score = round(question.points * earned / total, 2)
    if earned == total:
        status = "passed"
    elif earned == 0 and results and all(c.not_answered for c in results):
        status = "not answered"
    else:
        status = "partial" if earned > 0 else "failed"
    return QuestionResult(question.id, question.title, question.points, score, status, results,
                          note)


def manual_result(question: Question, note: str = "") -> QuestionResult:
    return QuestionResult(question.id, question.title, question.points, 0.0, "manual",
                          note=note or question.manual_note)
