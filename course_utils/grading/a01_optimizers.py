"""Assignment 1 -- Optimizers: the questions, their tests, and where expected values come from.

Every expected value is computed by a library, never by a copy of the solution:

============================  =========================================================
student function              reference (same iterates when the conventions match)
============================  =========================================================
``sgd_momentum`` (physical)   ``torch.optim.SGD(lr, momentum)``: with a constant lr the
                              velocity ``u`` is ``-lr`` times torch's buffer ``v``
``nesterov`` (practical)      ``torch.optim.SGD(lr, momentum, nesterov=True)``
``adagrad``                   ``torch.optim.Adagrad(lr, eps)``
``rmsprop``                   ``torch.optim.RMSprop(lr, alpha, eps)``
``adam``                      ``torch.optim.Adam(lr, betas=(beta1, beta2), eps)``
``step_decay``                ``torch.optim.lr_scheduler.StepLR``
``warmup_cosine``             ``SequentialLR(LinearLR(1/(W+1), 1, W), CosineAnnealingLR)``
============================  =========================================================

Each update is run for many steps from a random start, on random gradients (and on the
gradients of a quadratic bowl, which depend on where the student's iterate is), and compared
after every step. Each update also meets what a real run meets: a 200-step run on a conv
layer's 4-D weight in which a quarter of the entries get a gradient of exactly 0 at every
step (an adaptive rule without its epsilon divides 0 by 0 there). Every returned value's
kind is checked: a tensor of the parameter's shape and dtype, a dict state, a real number
for a schedule (a string ``"0.1"`` or a tensor is an error that says what was expected).

Grading policy (stated in the notebook, enforced by ``policy.py`` and ``probe.py``): the
answers must not use ``torch.optim`` or the course's optimizers.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..optim import scheduler_lrs
from .core import (
    Assignment,
    Case,
    Question,
    StudentError,
    call_student,
    check_tensor,
    compare_sequence,
    compare_trajectory,
    real_number,
    student_function,
)
from .draw import generator

SHAPES = [(5,), (3, 4), (2, 3, 2), (7,), (4, 2)]


def _fmt_hyper(hyper: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in hyper.items())


def _unpack(result: Any, fn_name: str, step: int, param: torch.Tensor) -> tuple[torch.Tensor,
                                                                                 dict]:
    """Check that an update returned ``(new_param, new_state)`` of the right kinds."""
    where = f"step {step}"
    if not (isinstance(result, tuple) and len(result) == 2):
        raise StudentError(f"{where}: `{fn_name}` must return a pair (new_param, new_state), "
                           f"but returned {type(result).__name__}"
                           + (" (did you forget `return`?)" if result is None else ""))
    new_param, new_state = result
    check_tensor(new_param, param, where, f"the new parameter returned by `{fn_name}`")
    if not isinstance(new_state, dict):
        raise StudentError(f"{where}: the new state returned by `{fn_name}` should be a dict, "
                           f"got {type(new_state).__name__}")
    return new_param, new_state


def _update_case(fn_name: str, hyper: dict[str, Any], torch_opt: Callable[[list], Any],
                 shape: tuple[int, ...], steps: int, gen: torch.Generator, *,
                 grad_scale: float = 1.0, bowl: bool = False, weight: float = 1.0,
                 dead: float = 0.0, hints: tuple[str, str] = ("", "")) -> Case:
    """A case: ``steps`` updates by ``fn_name`` against the torch optimizer ``torch_opt``.

    ``dead`` is the fraction of entries whose gradient is exactly 0 at every step, as for
    the weights of a unit that never activates in a real network.
    """
    start = torch.randn(shape, generator=gen)
    noise = torch.randn((steps, *shape), generator=gen) * grad_scale
    curvature = torch.rand(shape, generator=gen) * 2 + 0.2
    alive = (torch.rand(shape, generator=gen) >= dead).to(start.dtype)
    if dead:
        alive.view(-1)[0] = 0.0  # at least one dead entry, whatever the draw
        alive.view(-1)[-1] = 1.0

    def grad_at(param: torch.Tensor, k: int) -> torch.Tensor:
        # In the bowl, the gradient depends on where the iterate is: curvature * param.
        grad = (curvature * param + 0.1 * noise[k]) if bowl else noise[k]
        return grad * alive if dead else grad

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, fn_name)
        param, state, path = start.clone(), {}, []
        for k in range(steps):
            grad = grad_at(param, k)
            result = call_student(fn, f"step {k + 1}", param.clone(), grad.clone(), state,
                                  **hyper)
            param, state = _unpack(result, fn_name, k + 1, param)
            param = param.detach().clone()
            path.append(param)
        return torch.stack(path)

    def reference() -> torch.Tensor:
        p = start.clone().requires_grad_(True)
        opt = torch_opt([p])
        path = []
        for k in range(steps):
            p.grad = grad_at(p.detach(), k).clone()
            opt.step()
            path.append(p.detach().clone())
        return torch.stack(path)

    source = "a quadratic bowl" if bowl else "random gradients"
    scale = f" of size ~{grad_scale:g}" if grad_scale != 1.0 else ""
    zeros = ", some gradient entries exactly 0" if dead else ""
    label = (f"{fn_name}({_fmt_hyper(hyper)}) on a parameter of shape {shape}, {steps} steps "
             f"on {source}{scale}{zeros}")
    compare = functools.partial(compare_trajectory, hint_first=hints[0], hint_later=hints[1])
    return Case(label, run, reference, compare, weight)


FIRST = ("the very first step is already off: compare your formula with the one in the "
         "question (signs, where each hyperparameter goes)")
LATER = ("{matched}, then the paths drift apart: check what you store in the state and read "
         "back at the next call")


# --------------------------------------------------------------------------------------
# Q1, Q2: momentum
# --------------------------------------------------------------------------------------

def _momentum_cases(seed: int, nesterov: bool) -> list[Case]:
    name = "nesterov" if nesterov else "sgd_momentum"
    gen = generator(seed, 2 if nesterov else 1)
    settings = [(0.1, 0.9), (0.05, 0.5), (0.01, 0.99),
                (round(float(torch.empty(()).uniform_(0.01, 0.3, generator=gen)), 4),
                 round(float(torch.empty(()).uniform_(0.5, 0.95, generator=gen)), 4))]
    cases = []
    for i, (lr, mom) in enumerate(settings):
        torch_opt = functools.partial(torch.optim.SGD, lr=lr, momentum=mom, nesterov=nesterov)
        cases.append(_update_case(name, {"lr": lr, "momentum": mom}, torch_opt, SHAPES[i], 30,
                                  gen, hints=(FIRST, LATER)))
    torch_opt = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=nesterov)
    cases.append(_update_case(name, {"lr": 0.1, "momentum": 0.9}, torch_opt, (6,), 40, gen,
                              bowl=True, hints=(FIRST, LATER)))
    # A long run on a conv weight with dead units, as in a real network.
    torch_opt = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=nesterov)
    cases.append(_update_case(name, {"lr": 0.05, "momentum": 0.9}, torch_opt, CONV, 200, gen,
                              bowl=True, dead=0.25, hints=(FIRST, LATER)))
    return cases


# --------------------------------------------------------------------------------------
# Q3: AdaGrad and RMSProp
# --------------------------------------------------------------------------------------

EPS_HINT = ("this test uses small gradients and a large eps, so where eps goes matters: "
            "check it against the formula")
ZERO_HINT = ("in this test some gradient entries are exactly 0 at every step (a unit that "
             "never activates): dividing by the root of a zero average gives nan -- where "
             "does eps go?")
CONV = (8, 3, 3, 3)  # a conv layer's weight: 8 filters, 3 channels, 3x3


def _adaptive_cases(seed: int) -> list[Case]:
    gen = generator(seed, 3)
    cases = []
    for i, (lr, eps, scale) in enumerate([(0.1, 1e-10, 1.0), (0.5, 1e-10, 1.0),
                                          (0.05, 1e-2, 1e-3)]):
        torch_opt = functools.partial(torch.optim.Adagrad, lr=lr, eps=eps)
        hints = (EPS_HINT if eps > 1e-6 else FIRST, LATER)
        cases.append(_update_case("adagrad", {"lr": lr, "eps": eps}, torch_opt, SHAPES[i], 30,
                                  gen, grad_scale=scale, hints=hints))
    cases.append(_update_case("adagrad", {"lr": 0.3, "eps": 1e-10},
                              functools.partial(torch.optim.Adagrad, lr=0.3, eps=1e-10), (6,),
                              40, gen, bowl=True, hints=(FIRST, LATER)))
    cases.append(_update_case("adagrad", {"lr": 0.05, "eps": 1e-10},
                              functools.partial(torch.optim.Adagrad, lr=0.05, eps=1e-10), CONV,
                              200, gen, bowl=True, dead=0.25, hints=(ZERO_HINT, LATER)))
    for i, (lr, alpha, eps, scale) in enumerate([(0.01, 0.99, 1e-8, 1.0), (0.05, 0.9, 1e-8, 1.0),
                                                 (0.01, 0.5, 1e-8, 1.0),
                                                 (0.01, 0.9, 1e-2, 1e-3)]):
        torch_opt = functools.partial(torch.optim.RMSprop, lr=lr, alpha=alpha, eps=eps)
        hints = (EPS_HINT if eps > 1e-6 else FIRST, LATER)
        # 5 AdaGrad vs 5 RMSProp cases: each function is half of the question.
        cases.append(_update_case("rmsprop", {"lr": lr, "alpha": alpha, "eps": eps}, torch_opt,
                                  SHAPES[i + 1], 30, gen, grad_scale=scale, hints=hints))
    cases.append(_update_case("rmsprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8},
                              functools.partial(torch.optim.RMSprop, lr=0.01, alpha=0.99,
                                                eps=1e-8), CONV, 200, gen, bowl=True,
                              dead=0.25, hints=(ZERO_HINT, LATER)))
    return cases


# --------------------------------------------------------------------------------------
# Q4: Adam
# --------------------------------------------------------------------------------------

ADAM_FIRST = ("the very first step is already off: at the first call t = 1, and the bias "
              "corrections divide by 1 - beta1**t and 1 - beta2**t")


def _adam_cases(seed: int) -> list[Case]:
    gen = generator(seed, 4)
    settings = [(1e-3, 0.9, 0.999, 1e-8, 1.0), (0.01, 0.8, 0.99, 1e-8, 1.0),
                (0.1, 0.5, 0.9, 1e-8, 1.0), (0.01, 0.9, 0.999, 1e-3, 1e-3)]
    cases = []
    for i, (lr, b1, b2, eps, scale) in enumerate(settings):
        torch_opt = functools.partial(torch.optim.Adam, lr=lr, betas=(b1, b2), eps=eps)
        hints = (EPS_HINT if eps > 1e-6 else ADAM_FIRST, LATER)
        cases.append(_update_case("adam", {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps},
                                  torch_opt, SHAPES[i], 30, gen, grad_scale=scale, hints=hints))
    cases.append(_update_case("adam", {"lr": 0.05, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
                              functools.partial(torch.optim.Adam, lr=0.05), (6,), 40, gen,
                              bowl=True, hints=(ADAM_FIRST, LATER)))
    cases.append(_update_case("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
                              functools.partial(torch.optim.Adam, lr=0.01), CONV, 200, gen,
                              bowl=True, dead=0.25, hints=(ZERO_HINT, LATER)))
    return cases


# --------------------------------------------------------------------------------------
# Q5: schedules
# --------------------------------------------------------------------------------------

def _lrs(make_scheduler: Callable[[torch.optim.Optimizer], Any], base_lr: float,
         n: int) -> list[float]:
    """The learning rate a torch scheduler sets at steps 0, 1, ..., n - 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's internal deprecation notices
        return scheduler_lrs(make_scheduler, n, base_lr)


def _schedule_case(fn_name: str, index: str, hyper: dict[str, Any], n: int,
                   make_scheduler: Callable, hint: Callable[[int], str]) -> Case:
    def run(ns: Mapping[str, Any]) -> list[float]:
        fn = student_function(ns, fn_name)
        values = []
        for k in range(n):
            value = call_student(fn, f"{index} {k}", k, **hyper)
            values.append(real_number(value, f"{index} {k}", fn_name))
        return values

    label = f"{fn_name}({index}, {_fmt_hyper(hyper)}) for {index}s 0 to {n - 1}"
    return Case(label, run, lambda: _lrs(make_scheduler, hyper["base_lr"], n),
                functools.partial(compare_sequence, index=index, hint=hint))


def _step_hint(step_size: int) -> Callable[[int], str]:
    def hint(epoch: int) -> str:
        if epoch % step_size == 0 or epoch % step_size == step_size - 1:
            return (f"this is next to a decay boundary (step_size={step_size}): epochs count "
                    "from 0, and the first decay happens at epoch step_size")
        return ""
    return hint


def _cosine_hint(warmup: int) -> Callable[[int], str]:
    def hint(step: int) -> str:
        if step < warmup:
            return f"step {step} is in the warm-up (steps 0 to {warmup - 1})"
        return f"step {step} is after the warm-up: the cosine part starts at step {warmup}"
    return hint


def _schedule_cases(seed: int) -> list[Case]:
    sched = torch.optim.lr_scheduler
    gen = generator(seed, 5)
    cases = []
    # Every base rate (and every decay factor) is drawn from the seed, unrounded: the
    # grader's seed is secret, so no table of library values made in advance can match.
    def draw(low: float, high: float) -> float:
        return float(torch.empty((), dtype=torch.float64).uniform_(low, high, generator=gen))

    step_settings = [(draw(0.05, 0.5), 3, draw(0.05, 0.5), 12),
                     (draw(0.5, 2.0), 5, draw(0.3, 0.7), 20),
                     (draw(0.01, 0.1), 1, draw(0.8, 0.95), 10),
                     (draw(0.1, 0.5), int(torch.randint(2, 7, (), generator=gen)),
                      draw(0.2, 0.5), 25)]
    for base, size, gamma, n in step_settings:
        cases.append(_schedule_case(
            "step_decay", "epoch", {"base_lr": base, "step_size": size, "gamma": gamma}, n,
            functools.partial(sched.StepLR, step_size=size, gamma=gamma), _step_hint(size)))
    cosine_settings = [(draw(0.05, 0.5), 5, 20, 0.0), (draw(0.5, 2.0), 2, 10, draw(0.01, 0.2)),
                       (draw(0.2, 1.0), 10, 50, draw(0.001, 0.05)),
                       (draw(0.1, 0.5), int(torch.randint(2, 8, (), generator=gen)), 30, 0.0)]
    for base, warmup, total, min_lr in cosine_settings:
        def make(opt, warmup=warmup, total=total, min_lr=min_lr):
            return sched.SequentialLR(opt, [
                sched.LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0,
                               total_iters=warmup),
                sched.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=min_lr),
            ], milestones=[warmup])
        hyper = {"base_lr": base, "warmup_steps": warmup, "total_steps": total,
                 "min_lr": min_lr}
        cases.append(_schedule_case("warmup_cosine", "step", hyper, total + 1, make,
                                    _cosine_hint(warmup)))
    return cases


# --------------------------------------------------------------------------------------
# The assignment
# --------------------------------------------------------------------------------------

# Grading policy: the answers write the rules; the library may not do the work.
LIBRARY_OPTIMIZERS = ("torch.optim", "torch.optim.lr_scheduler", "course_utils.optim",
                      "course_utils.grading.bridge")

ASSIGNMENT = Assignment(
    id="01_optimizers",
    title="Assignment 1 -- Optimizers",
    questions=[
        Question("q1", "SGD with momentum (physical form)", 15,
                 functools.partial(_momentum_cases, nesterov=False), ("sgd_momentum",),
                 forbidden=LIBRARY_OPTIMIZERS),
        Question("q2", "Nesterov momentum", 15,
                 functools.partial(_momentum_cases, nesterov=True), ("nesterov",),
                 forbidden=LIBRARY_OPTIMIZERS),
        Question("q3", "AdaGrad and RMSProp", 20, _adaptive_cases, ("adagrad", "rmsprop"),
                 forbidden=LIBRARY_OPTIMIZERS),
        Question("q4", "Adam with bias correction", 20, _adam_cases, ("adam",),
                 forbidden=LIBRARY_OPTIMIZERS),
        Question("q5", "Learning-rate schedules", 15, _schedule_cases,
                 ("step_decay", "warmup_cosine"), forbidden=LIBRARY_OPTIMIZERS),
        Question("q6", "Your optimizers at work", 15,
                 manual_note="The instructor reads your plots and your answer."),
    ],
)
