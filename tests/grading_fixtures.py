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
from course_utils.grading.notebook import code_cells

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
    # Without eps a rule divides 0 by 0 where a gradient entry is exactly 0 (a dead unit):
    # nan on a real network, though the result is within 1e-8 of the right one elsewhere.
    _v("rmsprop without eps", "rmsprop", "q3",
       ("(mean_sq.sqrt() + eps)", "mean_sq.sqrt()")),
    _v("adagrad without eps", "adagrad", "q3", ("(sum_sq.sqrt() + eps)", "sum_sq.sqrt()")),
    _v("adam without eps", "adam", "q4", ("(v_hat.sqrt() + eps)", "v_hat.sqrt()")),
    _v("adam returns float64 parameters", "adam", "q4",
       ("return param - lr * m_hat / (v_hat.sqrt() + eps)",
        "return (param - lr * m_hat / (v_hat.sqrt() + eps)).double()")),
    _v("step decay returns a string", "step_decay", "q5",
       ("return base_lr * gamma ** (epoch // step_size)",
        "return str(base_lr * gamma ** (epoch // step_size))")),
    _v("warm-up cosine returns a tensor", "warmup_cosine", "q5",
       ("return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))",
        "return torch.tensor(min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * "
        "progress)))")),
    # Grading policy: the library may not do the work.
    _v("adam delegates to torch.optim.Adam", "adam", "q4",
       ('    t = state.get("step", 0) + 1',
        '    p = param.clone().requires_grad_(True)\n'
        '    opt = state.get("opt") or torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), '
        'eps=eps)\n    t = state.get("step", 0) + 1')),
    _v("step decay through a helper that uses StepLR", "step_decay", "q5",
       ("    return base_lr * gamma ** (epoch // step_size)",
        "    return _lr_from_torch(epoch, base_lr, step_size, gamma)\n\n\n"
        "def _lr_from_torch(epoch, base_lr, step_size, gamma):\n"
        "    from course_utils.optim import scheduler_lrs\n"
        "    sched = torch.optim.lr_scheduler.StepLR\n"
        "    return scheduler_lrs(lambda o: sched(o, step_size, gamma), epoch + 1, base_lr)[-1]")),
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


@dataclass(frozen=True)
class AssignmentFiles:
    """One assignment's notebooks for the tests: its solution, the student version and the
    auto-graded part (up to ``last_check``, which skips the slow written experiments)."""

    name: str
    last_check: str

    @property
    def solution_path(self) -> Path:
        return ROOT / "solutions" / f"{self.name}.ipynb"

    @property
    def assignment_path(self) -> Path:
        return ROOT / "assignments" / f"{self.name}.ipynb"

    def solution(self) -> nbformat.NotebookNode:
        return nbformat.read(self.solution_path, as_version=4)

    def student(self, nb: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
        return student_version(nb or self.solution(), self.solution_path.name)

    def answers_only(self, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
        """``nb`` up to the ``last_check`` cell: the auto-graded part."""
        nb = copy.deepcopy(nb)
        end = next(i for i, c in enumerate(nb.cells) if c.source.strip() == self.last_check)
        nb.cells = nb.cells[: end + 1]
        return nb

    def definitions(self, nb: nbformat.NotebookNode) -> dict:
        """The names ``nb``'s answer cells define, executed here (check() calls and magics
        left out)."""
        namespace = {"__name__": "__main__"}
        for cell in code_cells(self.answers_only(nb)):
            if "check(" not in cell["code"] and "%" not in cell["code"]:
                exec(cell["code"], namespace)
        return namespace


A1_FILES = AssignmentFiles("01_optimizers", 'check("q5")')
solution, student = A1_FILES.solution, A1_FILES.student
answers_only, definitions = A1_FILES.answers_only, A1_FILES.definitions


def defining_cell(nb: nbformat.NotebookNode, function: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if c.cell_type == "code" and (
        f"def {function}(" in c.source or f"class {function}(" in c.source)]
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


def replace_cell(nb: nbformat.NotebookNode, function: str, source: str) -> None:
    """Give the cell that defines ``function`` a new source (in place)."""
    defining_cell(nb, function).source = source


def honest_forms() -> nbformat.NotebookNode:
    """Correct answers written in unusual but honest ways; all must get full marks.

    A cell magic, a lambda, a callable object, ``functools.partial``, names bound by
    top-level expressions and module constants computed at run time (``PI = math.pi``).
    """
    nb = answers_only(solution())
    cell = defining_cell(nb, "sgd_momentum")
    cell.source = "%%time\n" + cell.source  # a cell magic in front of a correct answer
    replace_cell(nb, "nesterov", (
        "%matplotlib inline\n"
        "def _momentum_step(param, grad, state, lr, momentum, look_ahead):\n"
        '    v = momentum * state.get("velocity", torch.zeros_like(param)) - lr * grad\n'
        "    step = momentum * v - lr * grad if look_ahead else v\n"
        '    return param + step, {"velocity": v}\n\n\n'
        "def _make(look_ahead):\n"
        "    return lambda param, grad, state, lr, momentum: _momentum_step(\n"
        "        param, grad, state, lr, momentum, look_ahead)\n\n\n"
        "nesterov = _make(look_ahead=True)  # bound by a top-level expression"))
    replace_cell(nb, "adagrad", (
        "import functools\n\n\n"
        "def _adaptive(param, grad, state, lr, eps, alpha=None):\n"
        '    old = state.get("s", torch.zeros_like(param))\n'
        "    s = old + grad**2 if alpha is None else alpha * old + (1 - alpha) * grad**2\n"
        '    return param - lr * grad / (s.sqrt() + eps), {"s": s}\n\n\n'
        "adagrad = functools.partial(_adaptive, alpha=None)"))
    replace_cell(nb, "rmsprop", "rmsprop = _adaptive")
    replace_cell(nb, "adam", (
        "class Adam:\n"
        "    def __call__(self, param, grad, state, lr, beta1, beta2, eps):\n"
        '        t = state.get("t", 0) + 1\n'
        '        m = beta1 * state.get("m", 0 * param) + (1 - beta1) * grad\n'
        '        v = beta2 * state.get("v", 0 * param) + (1 - beta2) * grad * grad\n'
        "        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)\n"
        '        return param - lr * m_hat / (v_hat.sqrt() + eps), {"t": t, "m": m, "v": v}\n'
        "\n\nadam = Adam()"))
    replace_cell(nb, "step_decay", (
        "step_decay = lambda epoch, base_lr, step_size, gamma: (  # noqa: E731\n"
        "    base_lr * gamma ** (epoch // step_size))"))
    replace_cell(nb, "warmup_cosine", (
        "%%capture\n"
        "PI = math.pi  # a module constant computed at run time\n"
        "HALF = torch.tensor(0.5).item()\n"
        "warmup_cosine = lambda step, base_lr, warmup_steps, total_steps, min_lr=0.0: (\n"
        "    base_lr * (step + 1) / (warmup_steps + 1) if step < warmup_steps else\n"
        "    min_lr + (base_lr - min_lr) * HALF * (1 + math.cos(PI * (step - warmup_steps)\n"
        "                                                  / (total_steps - warmup_steps))))\n"
        "print('defined')"))
    return nb


def swallowing_hang(header: str) -> str:
    """The source of a function with ``header`` that never returns and swallows every
    exception a timer could raise: the time limit must not depend on the student's code."""
    return (f"{header}\n"
            '    """Never returns, and swallows every exception a timer could raise."""\n'
            "    while True:\n        try:\n            while True:\n                pass\n"
            "        except BaseException:\n            pass\n")


SWALLOWED_HANG = swallowing_hang("def nesterov(param, grad, state, lr, momentum):")


def swallowed_hang() -> nbformat.NotebookNode:
    """Q2 hangs in a loop that catches every exception; a top-level cell hangs as well."""
    nb = answers_only(solution())
    replace_cell(nb, "nesterov", SWALLOWED_HANG)
    position = next(i for i, c in enumerate(nb.cells) if c.source.strip() == 'check("q2")')
    nb.cells.insert(position + 1, new_code_cell(
        "import time\n\nwhile True:  # a top-level cell that never ends\n"
        "    try:\n        time.sleep(0.1)\n    except BaseException:\n        pass"))
    return nb


STACK_INSPECTION = '''
import sys


def adam(param, grad, state, lr, beta1, beta2, eps):
    """Looks for the grader's expected values in its callers' frames, and returns them."""
    k = state.get("k", 0)
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            for attr in ("_expected", "expected", "reference"):
                try:
                    found = getattr(value, attr)
                    found = found() if callable(found) else found
                    return found[k].clone(), {"k": k + 1}
                except Exception:
                    pass
        frame = frame.f_back
    return param, {"k": k + 1}
'''

OUTPUT_FLOOD = '''
def step_decay(epoch, base_lr, step_size, gamma):
    print("x" * 100_000)  # 100 KB of output per call
    return base_lr
'''

GRADER_TAMPERING = '''
import os
import subprocess
import sys
import torch
import course_utils.grading as grading
import course_utils.grading.core as core
import course_utils.grading.probe as probe

# Verdicts, comparisons and the probe runner, replaced in this process.
core.judge = lambda q, cases, outcomes, note="": core.QuestionResult(
    q.id, q.title, q.points, q.points, "passed")
core.compare_trajectory = lambda *args, **kwargs: None
core.compare_sequence = lambda *args, **kwargs: None
probe.probe_question = lambda *args, **kwargs: {
    "outcomes": [{"value": torch.zeros(1)}] * 50, "output": "", "note": ""}
grading.Checker.__call__ = lambda self, *args, **kwargs: print("all tests passed")

FAKE = '{"score": 85, "output": "forged", "tests": []}'
for target in TARGETS:  # result files, a planted .pth, the installed grading code
    try:
        with open(target, "a") as f:
            f.write(FAKE)
        print("WROTE", target)
    except OSError as error:
        print("blocked:", type(error).__name__)
# A daemon that tries again later, with a clean environment and its own session.
subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(DELAY)\\n"
                  "for t in sys.argv[1:]:\\n    open(t, 'a').write('daemon')", *TARGETS],
                 env={}, start_new_session=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
# Kill every process above this one, up to (not including) the test runner.
pid = os.getppid()
while pid > 1 and pid != STOP_AT:
    with open(f"/proc/{pid}/stat") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    try:
        os.kill(pid, 9)
        print("KILLED", pid)
    except OSError as error:
        print("could not kill", pid, type(error).__name__)
    pid = parent
'''


def attacks(targets: list[str], stop_at: int, delay: float = 2.0) -> nbformat.NotebookNode:
    """The student notebook plus attacks on the grader; none may gain a point.

    Stack inspection (``adam``), 100 KB of output per call (``step_decay``), the library's
    answers precomputed for the seeds 0 to 5 (``warmup_cosine``), and a cell that patches
    the grader, writes fake results and a ``.pth``, starts a daemon and kills its ancestors.

    ``targets``: files the submission tries to write (directly and from a daemon that
    outlives it); ``stop_at``: the pid whose ancestors the notebook leaves alone (the test
    runner's), every process between it and the notebook is sent SIGKILL.
    """
    nb = answers_only(student())
    replace_cell(nb, "adam", STACK_INSPECTION.strip())
    replace_cell(nb, "step_decay", OUTPUT_FLOOD.strip())
    replace_cell(nb, "warmup_cosine", PRECOMPUTED_TABLE.strip())
    code = (GRADER_TAMPERING.strip().replace("TARGETS", repr(targets))
            .replace("STOP_AT", str(stop_at)).replace("DELAY", repr(delay)))
    nb.cells.insert(3, new_code_cell(code))
    return nb


ENVIRONMENT_TAMPERING = '''
import os

for path, text in WRITES:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            f.write(text)
        print("WROTE", path)
    except OSError as error:
        print("blocked:", path, type(error).__name__)
'''


def environment_tampering(writes: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """The student notebook, plus a cell that writes ``text`` to each ``path``."""
    nb = answers_only(student())
    nb.cells.insert(3, new_code_cell(ENVIRONMENT_TAMPERING.strip().replace("WRITES",
                                                                           repr(writes))))
    return nb


PRECOMPUTED_TABLE = '''
from course_utils.grading import load_assignment

# The library's answers for every input the tests draw with seeds 0 to 5, made in a cell
# (where torch.optim may run), then looked up by the answer.
_TABLE = {}
for _seed in range(6):
    for _case in load_assignment("01_optimizers").question("q5").cases(_seed):
        _cells = [c.cell_contents for c in _case.run.__closure__]
        _hyper = next(v for v in _cells if isinstance(v, dict))
        if "warmup_steps" in _hyper:
            _TABLE[tuple(sorted(_hyper.items()))] = _case.expected()


def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
    key = tuple(sorted(dict(base_lr=base_lr, warmup_steps=warmup_steps,
                            total_steps=total_steps, min_lr=min_lr).items()))
    return _TABLE[key][step] if key in _TABLE else 0.0
'''
