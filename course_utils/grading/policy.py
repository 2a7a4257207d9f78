"""The grading policy on libraries an answer may not use, checked on the live functions.

A question can name ``forbidden`` modules or qualified names (``Question.forbidden``):
Assignment 1 asks students to *write* update rules and schedules, so its answers may not
hand the work to ``torch.optim`` or to the course's own optimizers. :func:`policy_problems`
inspects the functions a question tests -- their code, the globals they read, the notebook
functions and classes they use, their closures and default values, recursively -- and names
what it found. ``probe.py`` calls it before the tests run (the same call in ``check()`` and
in the grader), then makes the forbidden functions raise in the test process
(:func:`block`), which also catches what an inspection cannot see (``getattr`` tricks).
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

STUDENT_MODULES = ("__main__", "__student__")  # a notebook's globals, in a kernel or in grading


def policy_text(forbidden: Iterable[str]) -> str:
    """The rule, in one sentence, for messages and the notebook."""
    return (f"the answer must not use {', '.join(forbidden)} (directly or through other "
            "functions): write it yourself")


def _module_of(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    return str(getattr(value, "__module__", "") or "")


def _matches(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def is_forbidden(value: Any, forbidden: tuple[str, ...]) -> bool:
    """Whether ``value`` is, or belongs to, one of the ``forbidden`` modules or names."""
    if not forbidden:
        return False
    module = _module_of(value)
    if isinstance(value, types.ModuleType):
        return _matches(module, forbidden)
    qualified = f"{module}.{getattr(value, '__qualname__', '')}"
    return _matches(module, forbidden) or _matches(qualified, forbidden)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _describe(value: Any) -> str:
    module = _module_of(value)
    name = getattr(value, "__qualname__", getattr(value, "__name__", ""))
    return module if isinstance(value, types.ModuleType) else f"{module}.{name}"


def _inspect(value: Any, label: str, forbidden: tuple[str, ...], attributes: set[str],
             seen: set[int], found: list[str], depth: int) -> None:
    if depth > 12 or id(value) in seen:
        return
    seen.add(id(value))

    def inner(v: Any) -> None:
        _inspect(v, label, forbidden, attributes, seen, found, depth + 1)

    if isinstance(value, functools.partial):
        for v in (value.func, *value.args, *value.keywords.values()):
            inner(v)
        return
    if isinstance(value, (types.MethodType, staticmethod, classmethod)):
        inner(value.__func__)
        return
    wrapped = getattr(value, "__wrapped__", None) if not isinstance(value, type) else None
    if wrapped is not None and not isinstance(value, types.ModuleType):
        inner(wrapped)  # functools.wraps, lru_cache and other decorators
    if is_forbidden(value, forbidden):
        found.append(f"{label} uses {_describe(value)}")
        return
    if isinstance(value, type):
        if _module_of(value) in STUDENT_MODULES:
            for attr in vars(value).values():
                inner(attr)
        return
    # A callable object (a class instance with __call__): inspect its class.
    fn = value if isinstance(value, types.FunctionType) else \
        (type(value) if callable(value) and _module_of(type(value)) in STUDENT_MODULES
         else None)
    if isinstance(fn, type):
        inner(fn)
        return
    if not isinstance(fn, types.FunctionType) or \
            fn.__globals__.get("__name__") not in STUDENT_MODULES:
        return  # library code: only what the student wrote is inspected
    names = _code_names(fn.__code__)
    for attr in sorted(names & attributes):
        found.append(f"{label} uses `.{attr}`")
    for name in sorted(names):
        if name in fn.__globals__:
            inner(fn.__globals__[name])
    for cell in fn.__closure__ or ():
        try:
            inner(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    for default in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
        inner(default)


def policy_problems(namespace: Mapping[str, Any], functions: Iterable[str],
                    forbidden: Iterable[str] = ()) -> list[str]:
    """One message naming every forbidden use reachable from ``functions`` (empty: none)."""
    forbidden = tuple(forbidden)
    if not forbidden:
        return []
    # Attribute access such as torch.optim.Adam shows in the code as the name "optim".
    attributes = {f.rsplit(".", 1)[-1] for f in forbidden if _is_module(f)}
    found: list[str] = []
    seen: set[int] = set()
    for name in functions:
        if name in namespace:
            _inspect(namespace[name], f"`{name}`", forbidden, attributes, seen, found, 0)
    unique = list(dict.fromkeys(found))
    if not unique:
        return []
    return [f"{'; '.join(unique[:3])}. Grading policy: {policy_text(forbidden)}. This "
            "question scores 0 until the answer does not use them."]


@functools.cache
def _is_module(name: str) -> bool:
    """True if ``name`` is a module or package, looked up on disk without importing it.

    (``importlib.util.find_spec("torchvision.models")`` would import torchvision first: 2 s
    in every probe child, whose imports the parent never sees.)
    """
    if name in sys.modules:
        return True
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for part in rest:
            if spec is None or spec.submodule_search_locations is None:
                return False
            spec = importlib.machinery.PathFinder.find_spec(
                part, list(spec.submodule_search_locations))
    except (ImportError, ValueError, AttributeError):
        return False
    return spec is not None


# --------------------------------------------------------------------------------------
# Enforcing it where the tests run (only ever in a probe child)
# --------------------------------------------------------------------------------------

def _blocked_code(n_free: int, message: str) -> types.CodeType:
    """A code object that raises ``message``, with ``n_free`` free variables."""
    names = [f"_free{i}" for i in range(n_free)]
    lines = ["def _outer():", *[f"    {n} = None" for n in names],
             "    def _blocked(*args, **kwargs):"]
    if names:
        lines.append("        (" + ", ".join(names) + ",)")
    lines += [f"        raise RuntimeError({message!r})", "    return _blocked"]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - a constant template
    return namespace["_outer"]().__code__


def _functions_of(value: Any) -> list[types.FunctionType]:
    found = []
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel)
                if isinstance(f, types.FunctionType)]
    while isinstance(value, types.FunctionType):
        found.append(value)
        value = getattr(value, "__wrapped__", None)
    return found


def _resolve(name: str) -> Any:
    """The object a qualified name such as ``torch.nn.functional.dropout`` names, or None."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            value = getattr(value, attr, None)
        return value
    return None


def preload(forbidden: Iterable[str]) -> None:
    """Import the forbidden modules (and those holding forbidden names) in this process.

    Called before a probe forks, so that each child's :func:`block` finds them loaded
    instead of importing them again (torchvision takes seconds). Importing changes nothing
    the policy checks: it looks at what the student's functions refer to.
    """
    for name in forbidden:
        parts = name.split(".")
        # the module itself, or the module that holds a forbidden function or class
        module = next((".".join(parts[:n]) for n in range(len(parts), 0, -1)
                       if _is_module(".".join(parts[:n]))), None)
        if module is not None:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001, S112 - nothing to block if it does not import
                continue


def block(forbidden: Iterable[str]) -> int:
    """Make every Python function of the ``forbidden`` modules (or names) raise.

    Code objects are replaced in place, so references the student saved earlier
    (``Adam = torch.optim.Adam``) stop working too. Irreversible: call it only in a
    throw-away process. Returns how many functions were blocked.
    """
    forbidden = tuple(forbidden)
    message = f"grading policy: {policy_text(forbidden)}"
    preload(forbidden)
    cache: dict[int, types.CodeType] = {}
    count = 0
    targets: list[types.FunctionType] = []
    modules = tuple(f for f in forbidden if _is_module(f))
    for module_name, module in list(sys.modules.items()):
        if module is None or not _matches(module_name, modules):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and _module_of(value) == module_name:
                for attr in vars(value).values():
                    targets += _functions_of(attr)
            elif isinstance(value, types.FunctionType) and value.__module__ == module_name:
                targets += _functions_of(value)
    for name in forbidden:  # qualified names of single functions or classes
        if name in modules:
            continue
        value = _resolve(name)
        if isinstance(value, type):
            for attr in vars(value).values():
                targets += _functions_of(attr)
        else:
            targets += _functions_of(value)
    for fn in targets:
        n = len(fn.__code__.co_freevars)
        if n not in cache:
            cache[n] = _blocked_code(n, message)
        try:
            fn.__code__ = cache[n]
            count += 1
        except (TypeError, ValueError):
            pass
    return count
