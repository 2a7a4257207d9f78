"""Notebooks for the grading tests, made from solutions/01_optimizers.ipynb by substitution.

Every wrong answer is the solution with one classic bug typed in, so the variants follow the
solution when it changes; a substitution that no longer matches fails loudly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from course_utils.assign import student_version

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "01_optimizers.ipynb"
ASSIGNMENT = ROOT / "assignments" / "01_optimizers.ipynb"


@dataclass(frozen=True)
class Variant:
    """A plausible wrong answer: in the cell defining ``function``, ``old`` becomes ``new``."""

    name: str
    function: str
    edits: tuple[tuple[str, str], ...]
    breaks: str  # the question that must lose marks (and the only one)


def _v(name: str, function: str, breaks: str, *edits: tuple[str, str]) -> Variant:
    return Variant(name, function, tuple(edits), breaks)


VARIANTS = [
    _v("momentum sign error", "sgd_momentum", "q1",
       ("momentum * velocity - lr * grad", "momentum * velocity + lr * grad")),
    _v("velocity not kept between steps", "sgd_momentum", "q1",
       ('return param + velocity, {"velocity": velocity}', "return param + velocity, {}")),
    _v("momentum also scales the new gradient step", "sgd_momentum", "q1",
       ("momentum * velocity - lr * grad", "momentum * (velocity - lr * grad)")),
    _v("nesterov without look-ahead (plain momentum)", "nesterov", "q2",
       ("param + momentum * velocity - lr * grad", "param + velocity")),
    _v("nesterov look-ahead with the old velocity", "nesterov", "q2",
       ("param + momentum * velocity - lr * grad",
        'param + momentum * state.get("velocity", torch.zeros_like(param)) - lr * grad')),
    _v("adagrad without square root", "adagrad", "q3",
       ("sum_sq.sqrt() + eps", "sum_sq + eps")),
    _v("adagrad returns only the parameter", "adagrad", "q3",
       (', {"sum_sq": sum_sq}', "")),
    _v("rmsprop accumulates instead of leaking", "rmsprop", "q3",
       ('alpha * state.get("mean_sq", torch.zeros_like(param))',
        'state.get("mean_sq", torch.zeros_like(param))')),
    _v("rmsprop with eps inside the square root", "rmsprop", "q3",
       ("(mean_sq.sqrt() + eps)", "(mean_sq + eps).sqrt()")),
    _v("adam without bias correction", "adam", "q4",
       ("m_hat = m / (1 - beta1**t)", "m_hat = m"), ("v_hat = v / (1 - beta2**t)", "v_hat = v")),
    _v("adam with t off by one", "adam", "q4",
       ('t = state.get("step", 0) + 1', 't = state.get("step", 1) + 1')),
    _v("adam with eps inside the square root", "adam", "q4",
       ("(v_hat.sqrt() + eps)", "(v_hat + eps).sqrt()")),
    _v("adam with beta1 and beta2 swapped in the correction", "adam", "q4",
       ("m_hat = m / (1 - beta1**t)", "m_hat = m / (1 - beta2**t)")),
    _v("step decay off by one epoch", "step_decay", "q5",
       ("epoch // step_size", "(epoch + 1) // step_size")),
    _v("step decay with a typo (NameError)", "step_decay", "q5",
       ("epoch // step_size", "epoch // step_sizes")),
    _v("warm-up that never ends", "warmup_cosine", "q5",
       ("if step < warmup_steps:", "if step < total_steps:")),
    _v("cosine over the whole run, ignoring the warm-up", "warmup_cosine", "q5",
       ("(step - warmup_steps) / (total_steps - warmup_steps)", "step / total_steps")),
    _v("cosine ignores min_lr", "warmup_cosine", "q5",
       ("min_lr + (base_lr - min_lr) * 0.5", "base_lr * 0.5")),
]


def solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTION, as_version=4)


def defining_cell(nb: nbformat.NotebookNode, function: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if c.cell_type == "code" and f"def {function}(" in c.source]
    assert len(cells) == 1, f"expected one cell defining {function}, found {len(cells)}"
    return cells[0]


def with_bug(nb: nbformat.NotebookNode, variant: Variant) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``variant``'s edits applied to the cell defining its function."""
    nb = copy.deepcopy(nb)
    cell = defining_cell(nb, variant.function)
    for old, new in variant.edits:
        assert cell.source.count(old) == 1, f"{variant.name}: {old!r} not found once in the cell"
        cell.source = cell.source.replace(old, new)
    return nb


def student(nb: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    return student_version(nb or solution(), "01_optimizers.ipynb")


def hanging() -> nbformat.NotebookNode:
    """The solution, except that Nesterov never returns (so its check cell hangs too)."""
    nb = solution()
    cell = defining_cell(nb, "nesterov")
    cell.source = cell.source.replace("    ### BEGIN SOLUTION",
                                      "    while True:\n        pass\n    ### BEGIN SOLUTION", 1)
    return nb


TAMPERING = '''
import course_utils.grading as grading
import course_utils.grading.core as core

# Make every verdict "full marks", silence the checker, and shrink the expected values.
core.judge = lambda q, cases, outcomes, note="": core.QuestionResult(
    q.id, q.title, q.points, q.points, "passed")
core.compare_trajectory = lambda *args, **kwargs: None
core.compare_sequence = lambda *args, **kwargs: None
grading.Checker.__call__ = lambda self, *args, **kwargs: print("all tests passed")
for question in grading.load_assignment("01_optimizers").questions:
    question.points = 1000


def check(*args, **kwargs):
    print("q1: 15/15 points")


class Checker:
    def __init__(self, *args):
        pass


def sgd_momentum(param, grad, state, lr, momentum,
                 _patch=core.__setattr__("compare_trajectory", lambda *a, **k: None)):
    """Wrong on purpose; its default argument patches the grader when it is defined."""
    return param, state
'''


def tampering() -> nbformat.NotebookNode:
    """The student notebook plus a cell that tries to fake its grade, then a kernel crash.

    The crash comes right after the first check, so the rest of the notebook never runs.
    """
    nb = student()
    position = next(i for i, c in enumerate(nb.cells) if c.source == 'check("q1")')
    nb.cells.insert(position, new_code_cell(TAMPERING.strip()))
    nb.cells.insert(position + 2, new_code_cell("import os\n\nos._exit(1)  # the kernel dies"))
    return nb
