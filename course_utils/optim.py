r"""The chapter's optimizers as ``torch.optim.Optimizer`` classes, and learning-rate schedules.

The chapter's pages write each update rule out in a cell, where the reader can edit it, and
check it there against ``torch.optim``. This module keeps what other code reuses: the
optimizer playground (``widgets``) runs these classes, and the grader (``grading.bridge``)
builds on :class:`TeachingOptimizer`. Symbols follow the book's Notation page: parameters
$\theta$, learning rate $\eta$ (``lr``), momentum $\rho$, velocity $v$, squared-gradient
average $s$, Adam's first moment $m$, decay rates $\beta_1, \beta_2$ (``betas``; RMSProp's
$\beta_2$ is torch's ``alpha``). In real training use ``torch.optim`` (faster, fused
kernels, weight decay, ...); ``tests/test_optim.py`` proves that these give the same iterates
as their torch counterparts wherever the conventions match:

==============  ====================================================================
ours            torch.optim equivalent
==============  ====================================================================
``SGD``         ``SGD(lr)``
``Momentum``    ``SGD(lr, momentum=rho)``
``Nesterov``    ``SGD(lr, momentum=rho, nesterov=True)``
``AdaGrad``     ``Adagrad(lr, eps=eps)`` (accumulator starts at 0, no lr decay)
``RMSProp``     ``RMSprop(lr, alpha=alpha, eps=eps)`` (eps outside the square root)
``Adam``        ``Adam(lr, betas, eps)`` (eps added after bias correction)
==============  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau


class TeachingOptimizer(Optimizer):
    """Loops over parameters and calls ``update`` for each one that has a gradient.

    ``update(p, g, state, group)`` changes ``p`` in place; ``state`` is this parameter's
    own dict (velocities, accumulators) and ``group`` holds the hyperparameters.
    """

    def __init__(self, params: Iterable, **defaults: Any) -> None:
        for name in ("lr", "eps"):
            if name in defaults and not defaults[name] >= 0:
                raise ValueError(f"{name} must be >= 0, got {defaults[name]}")
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state[p], group)
        return loss

    def update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError


class SGD(TeachingOptimizer):
    """Gradient descent: step against the gradient, ``theta <- theta - lr * g``."""

    def __init__(self, params: Iterable, lr: float = 0.01) -> None:
        super().__init__(params, lr=lr)

    def update(self, p, g, state, group):
        p.sub_(group["lr"] * g)


class Momentum(TeachingOptimizer):
    """SGD with momentum: velocity ``v <- rho * v + g`` (from 0), then ``theta <- theta - lr * v``.

    This is torch's form. The physical form ``u <- rho * u - lr * g; theta <- theta + u`` gives
    the same iterates as long as ``lr`` is constant (its velocity is ``u = -lr * v``).
    """

    def __init__(self, params: Iterable, lr: float = 0.01, rho: float = 0.9) -> None:
        super().__init__(params, lr=lr, rho=rho)

    def update(self, p, g, state, group):
        v = state.setdefault("v", torch.zeros_like(p))
        v.mul_(group["rho"]).add_(g)
        p.sub_(group["lr"] * v)


class Nesterov(TeachingOptimizer):
    """Nesterov momentum in the form used in practice (no gradient at a look-ahead point).

    ``v <- rho * v + g`` and ``theta <- theta - lr * (g + rho * v)``: the step uses the velocity one
    step ahead. The chapter derives it from the look-ahead form by a change of variables.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, rho: float = 0.9) -> None:
        super().__init__(params, lr=lr, rho=rho)

    def update(self, p, g, state, group):
        v = state.setdefault("v", torch.zeros_like(p))
        v.mul_(group["rho"]).add_(g)
        p.sub_(group["lr"] * (g + group["rho"] * v))


class AdaGrad(TeachingOptimizer):
    """Per-coordinate steps: divide by the root of the *sum* of all squared gradients so far.

    ``s <- s + g^2``, ``theta <- theta - lr * g / (sqrt(s) + eps)``. The sum only grows, so
    the steps shrink toward zero.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, eps: float = 1e-10) -> None:
        super().__init__(params, lr=lr, eps=eps)

    def update(self, p, g, state, group):
        s = state.setdefault("s", torch.zeros_like(p))
        s.add_(g * g)
        p.sub_(group["lr"] * g / (s.sqrt() + group["eps"]))


class RMSProp(TeachingOptimizer):
    """AdaGrad with a leaky sum: a running *mean* of squared gradients.

    ``s <- alpha * s + (1 - alpha) * g^2``, ``theta <- theta - lr * g / (sqrt(s) + eps)``;
    ``alpha`` is torch's name for the decay rate the book calls beta_2.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8) -> None:
        super().__init__(params, lr=lr, alpha=alpha, eps=eps)

    def update(self, p, g, state, group):
        s = state.setdefault("s", torch.zeros_like(p))
        s.mul_(group["alpha"]).add_((1 - group["alpha"]) * g * g)
        p.sub_(group["lr"] * g / (s.sqrt() + group["eps"]))


class Adam(TeachingOptimizer):
    """Momentum (first moment ``m``) plus RMSProp (second moment ``s``), both bias-corrected.

    ``m`` and ``s`` start at zero, so early on they underestimate the gradient's mean and
    mean square; dividing by ``1 - beta^t`` corrects that. ``bias_correction=False`` exists
    to show what goes wrong without it.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 bias_correction: bool = True) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, bias_correction=bias_correction)

    def update(self, p, g, state, group):
        beta1, beta2 = group["betas"]
        m = state.setdefault("m", torch.zeros_like(p))
        s = state.setdefault("s", torch.zeros_like(p))
        t = state["t"] = state.get("t", 0) + 1
        m.mul_(beta1).add_((1 - beta1) * g)
        s.mul_(beta2).add_((1 - beta2) * g * g)
        if group["bias_correction"]:
            m_hat, s_hat = m / (1 - beta1**t), s / (1 - beta2**t)
        else:
            m_hat, s_hat = m, s
        p.sub_(group["lr"] * m_hat / (s_hat.sqrt() + group["eps"]))


TEACHING_OPTIMIZERS: dict[str, type[TeachingOptimizer]] = {
    "SGD": SGD, "Momentum": Momentum, "Nesterov": Nesterov,
    "AdaGrad": AdaGrad, "RMSProp": RMSProp, "Adam": Adam,
}


# --------------------------------------------------------------------------------------
# Learning-rate schedules, built from torch.optim.lr_scheduler
# --------------------------------------------------------------------------------------

SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine", "warmup_cosine",
             "cosine_restarts")


def make_scheduler(name: str, optimizer: Optimizer, total: int, *, step_size: int | None = None,
                   gamma: float = 0.1, decay: float = 0.05, warmup: int | None = None,
                   restart: int | None = None, min_lr: float = 0.0) -> LRScheduler:
    """A ``torch.optim.lr_scheduler`` by name, for a run of ``total`` scheduler steps.

    - ``constant``: no decay.
    - ``step``: multiply by ``gamma`` every ``step_size`` steps (default a third of the run).
    - ``exponential``: multiply by ``gamma`` **over the whole run**, smoothly.
    - ``inverse_time``: ``lr / (1 + decay * t)`` (the "1/t" schedule).
    - ``cosine``: half a cosine from ``lr`` down to ``min_lr``.
    - ``warmup_cosine``: linear warm-up for ``warmup`` steps (default 10 %), then cosine.
    - ``cosine_restarts``: SGDR, cosine cycles of ``restart`` steps (default a quarter).
    """
    sched = torch.optim.lr_scheduler
    total = max(1, int(total))
    key = name.lower().replace("-", "_").replace(" ", "_")
    if key == "constant":
        return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if key == "step":
        return sched.StepLR(optimizer, step_size=step_size or max(1, total // 3), gamma=gamma)
    if key == "exponential":
        return sched.ExponentialLR(optimizer, gamma=gamma ** (1 / total))
    if key == "inverse_time":
        return sched.LambdaLR(optimizer, lambda t: 1 / (1 + decay * t))
    if key == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total, eta_min=min_lr)
    if key == "warmup_cosine":
        warm = warmup if warmup is not None else max(1, total // 10)
        return sched.SequentialLR(optimizer, [
            sched.LinearLR(optimizer, start_factor=1 / (warm + 1), total_iters=warm),
            sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warm), eta_min=min_lr),
        ], milestones=[warm])
    if key == "cosine_restarts":
        return sched.CosineAnnealingWarmRestarts(optimizer, T_0=restart or max(1, total // 4),
                                                 eta_min=min_lr)
    raise ValueError(f"Unknown schedule {name!r}; valid schedules are {', '.join(SCHEDULES)}.")


def scheduler_lrs(factory: Callable[[Optimizer], LRScheduler], total: int,
                  lr: float = 0.1) -> list[float]:
    """The learning rate ``factory(optimizer)`` sets at steps 0 .. total-1 (dummy optimizer)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = factory(opt)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def schedule_lrs(name: str, total: int, lr: float = 0.1, **kwargs: Any) -> list[float]:
    """The learning rate at each of ``total`` steps of the schedule called ``name``."""
    return scheduler_lrs(lambda opt: make_scheduler(name, opt, total, **kwargs), total, lr)


# --------------------------------------------------------------------------------------
# A small, fixed problem trained step by step (the chapter's least-squares and softmax demos)
# --------------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, Any], torch.Tensor]


def loss_curve(model: nn.Module, loss_fn: LossFn, optimizer: Callable[[Iterable], Optimizer],
               steps: int, *, n: int, batch_size: int | None = None,
               scheduler: Callable[[Optimizer], Any] | None = None, every: int = 1,
               per: str = "step", stop_above: float | None = None, seed: int = 0,
               lrs: list[float] | None = None) -> list[float]:
    """Train ``model`` on a fixed set of ``n`` examples and record the *full* training loss.

    ``loss_fn(model, idx)`` is the loss on the examples ``idx`` (an index tensor, or
    ``slice(None)`` for all of them). Each step uses ``batch_size`` examples drawn at random
    (seeded by ``seed``), or all ``n`` when ``batch_size`` is None (full-batch). The optimizer
    is stepped with a closure, so ``torch.optim.LBFGS`` works too.

    - ``per="step"``: the full loss after every ``every``-th step, ``steps`` steps in all.
    - ``per="evaluation"``: the full loss after every loss-and-gradient evaluation (an L-BFGS
      step makes several), until ``steps`` evaluations -- the fair cost measure.
    - ``scheduler``: built on the optimizer and stepped after every step; a
      ``ReduceLROnPlateau`` is instead stepped with the full loss at every recording.
    - ``stop_above``: stop once the full loss exceeds this (a diverging run), so a plot of
      the curve is not flattened by an explosion.
    - ``lrs``: if a list is given, the learning rate in force at each recording is appended.
    """
    if per not in ("step", "evaluation"):
        raise ValueError(f"per must be 'step' or 'evaluation', got {per!r}")
    opt = optimizer(model.parameters())
    sched = scheduler(opt) if scheduler is not None else None
    generator = torch.Generator().manual_seed(seed)
    curve: list[float] = []

    def full_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model, slice(None)))

    def record() -> bool:
        curve.append(full_loss())
        if lrs is not None:
            lrs.append(opt.param_groups[0]["lr"])
        if isinstance(sched, ReduceLROnPlateau):
            sched.step(curve[-1])
        return stop_above is not None and not curve[-1] <= stop_above

    stopped = False
    for step in range(steps):
        idx = (torch.randint(0, n, (batch_size,), generator=generator) if batch_size
               else slice(None))

        def closure(idx: Any = idx) -> torch.Tensor:
            nonlocal stopped
            opt.zero_grad()
            loss = loss_fn(model, idx)
            loss.backward()
            if per == "evaluation" and len(curve) < steps:
                stopped = record() or stopped
            return loss

        opt.step(closure)
        if sched is not None and not isinstance(sched, ReduceLROnPlateau):
            sched.step()
        if per == "step" and step % every == 0:
            stopped = record()
        if stopped or (per == "evaluation" and len(curve) >= steps):
            break
    return curve
