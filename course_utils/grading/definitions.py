"""Keep only the *definitions* of a student's notebook: imports, functions, classes, constants.

Grading never replays a notebook's statements (loops, training runs, ``check(...)`` calls,
monkeypatches such as ``course_utils.grading.check = ...``): it executes only these top-level
statements, cell by cell, in a clean namespace in a fresh process.

- ``import ...`` / ``from ... import ...``
- ``def ...`` / ``async def ...`` / ``class ...``
- ``NAME = <literal>`` (numbers, strings, tuples, lists, dicts of literals), e.g. ``EPS = 1e-8``

A function that reads any other global (``ZERO = torch.zeros(3)``) fails in grading with a
message saying so; ``Checker`` warns about this in the notebook already.
"""

from __future__ import annotations

import ast
import builtins
import linecache
from collections.abc import Sequence
from typing import Any

DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_literal(node: ast.AST | None) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _names_only(target: ast.AST) -> bool:
    if isinstance(target, ast.Name):
        return True
    return isinstance(target, (ast.Tuple, ast.List)) and all(_names_only(t) for t in target.elts)


def is_definition(node: ast.stmt) -> bool:
    """Whether a top-level statement is kept for grading."""
    if isinstance(node, DEFINITIONS):
        return True
    if isinstance(node, ast.Assign):
        return all(_names_only(t) for t in node.targets) and _is_literal(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.value is not None \
            and _is_literal(node.value)
    return False


def keep_definitions(source: str) -> ast.Module:
    """The definitions in ``source`` (Python, not IPython), with their original line numbers."""
    tree = ast.parse(source)
    return ast.Module(body=[n for n in tree.body if is_definition(n)], type_ignores=[])


def exec_definitions(cells: Sequence[dict[str, Any]],
                     namespace: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Execute the definitions of ``cells`` (``{"cell": i, "code": python}``) in order.

    Returns the namespace and one message per cell whose definitions failed (a syntax error,
    an import that fails); other cells still count, as they would in the notebook.
    """
    namespace = {"__name__": "__student__", "__builtins__": builtins} if namespace is None \
        else namespace
    problems = []
    for cell in cells:
        index, code = cell["cell"], cell["code"]
        filename = f"<notebook cell {index}>"
        # Register the source so error messages can quote the student's line of code.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            module = keep_definitions(code)
        except SyntaxError as error:
            problems.append(f"code cell {index} has a syntax error (line {error.lineno}: "
                            f"{error.msg}); its definitions were skipped")
            continue
        if not module.body:
            continue
        try:
            exec(compile(module, filename, "exec"), namespace)  # noqa: S102 - the point
        except Exception as error:  # noqa: BLE001 - report, keep the other cells
            problems.append(f"code cell {index}: defining it raised {type(error).__name__}: "
                            f"{error}")
    return namespace, problems
