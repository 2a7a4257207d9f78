"""The grading policy on library optimizers, checked on the student's live functions.

The auto-graded questions ask students to *write* update rules and schedules, so an answer
may not hand the work to ``torch.optim`` (optimizers or schedulers) or to the course's own
optimizers (``course_utils.optim``, ``RuleOptimizer``). :func:`policy_problems` inspects the
functions a question tests -- their code, the globals they read, the notebook functions
they call, their closures and default values, recursively -- and names what it found.
``probe.py`` calls it before the tests run (the same call in ``check()`` and in the
grader), then makes those libraries raise in the test process, which also catches what an
inspection cannot see.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable, Mapping
from typing import Any

POLICY = ("answers to the auto-graded questions must not call torch.optim (its optimizers and "
          "schedulers) or the course's optimizers: write the rule yourself")
FORBIDDEN_ATTRIBUTES = {"optim", "lr_scheduler"}  # torch.optim.Adam, optim.lr_scheduler.StepLR
STUDENT_MODULES = ("__main__", "__student__")  # a notebook's globals, in a kernel or in grading
FORBIDDEN_MODULES = ("torch.optim", "course_utils.optim", "course_utils.grading.bridge")


def _module_of(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    return str(getattr(value, "__module__", "") or "")


def _is_forbidden(value: Any) -> bool:
    return _module_of(value).startswith(FORBIDDEN_MODULES)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _describe(value: Any, name: str) -> str:
    module = _module_of(value)
    return f"`{name}` ({module}.{getattr(value, '__qualname__', '')})".replace(".)", ")") \
        if module else f"`{name}`"


def _inspect(value: Any, label: str, seen: set[int], found: list[str], depth: int) -> None:
    if depth > 12 or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, functools.partial):
        _inspect(value.func, label, seen, found, depth + 1)
        for arg in (*value.args, *value.keywords.values()):
            _inspect(arg, label, seen, found, depth + 1)
        return
    if isinstance(value, types.MethodType):
        _inspect(value.__func__, label, seen, found, depth + 1)
        return
    if _is_forbidden(value):
        found.append(f"{label} uses {_describe(value, getattr(value, '__name__', '?'))}")
        return
    if isinstance(value, type) and _module_of(value) in STUDENT_MODULES:
        for attr in vars(value).values():
            _inspect(attr, label, seen, found, depth + 1)
        return
    if isinstance(value, (staticmethod, classmethod)):
        _inspect(value.__func__, label, seen, found, depth + 1)
        return
    # A callable object (a class instance with __call__): inspect its __call__ method.
    fn = value if isinstance(value, types.FunctionType) else \
        vars(type(value)).get("__call__") if callable(value) else None
    if not isinstance(fn, (types.FunctionType, types.MethodType)):
        return
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    if fn.__globals__.get("__name__") not in STUDENT_MODULES:
        return  # library code: only what the student wrote is inspected
    code = fn.__code__
    names = _code_names(code)
    for attr in sorted(names & FORBIDDEN_ATTRIBUTES):
        found.append(f"{label} uses `.{attr}` (torch.optim)")
    globals_ = fn.__globals__
    builtins_ = globals_.get("__builtins__", {})
    for name in sorted(names):
        if name in globals_:
            _inspect(globals_[name], label, seen, found, depth + 1)
        elif isinstance(builtins_, Mapping) and name in builtins_:
            continue
    for cell in fn.__closure__ or ():
        try:
            _inspect(cell.cell_contents, label, seen, found, depth + 1)
        except ValueError:  # an empty cell
            pass
    for default in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
        _inspect(default, label, seen, found, depth + 1)


def policy_problems(namespace: Mapping[str, Any], functions: Iterable[str]) -> list[str]:
    """One message per forbidden use reachable from the question's ``functions``."""
    found: list[str] = []
    seen: set[int] = set()
    for name in functions:
        if name in namespace:
            _inspect(namespace[name], f"`{name}`", seen, found, 0)
    unique = list(dict.fromkeys(found))
    if not unique:
        return []
    return [f"{'; '.join(unique[:3])}. Grading policy: {POLICY}; this question scores 0 "
            "until the answer does not use them."]
