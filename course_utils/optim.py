"""The optimizers of the optimization chapter, written out, and learning-rate schedules by name.

Each teaching optimizer is a ``torch.optim.Optimizer`` whose whole idea is its ``update``
method -- a few lines the chapter shows and explains. They plug into ``fit`` and into
``surfaces.run_optimizer`` like any torch optimizer. In real training use ``torch.optim``
(faster, fused kernels, weight decay, ...); ``tests/test_optim.py`` proves that these give
the same iterates as their torch counterparts wherever the conventions match:

==============  ====================================================================
ours            torch.optim equivalent
==============  ====================================================================
``SGD``         ``SGD(lr)``
``Momentum``    ``SGD(lr, momentum=rho)``
``Nesterov``    ``SGD(lr, momentum=rho, nesterov=True)``
``AdaGrad``     ``Adagrad(lr, eps=eps)`` (accumulator starts at 0, no lr decay)
``RMSProp``     ``RMSprop(lr, alpha=decay, eps=eps)`` (eps outside the square root)
``Adam``        ``Adam(lr, betas, eps)`` (eps added after bias correction)
==============  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


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
    """Gradient descent: step against the gradient, ``x <- x - lr * g``."""

    def __init__(self, params: Iterable, lr: float = 0.01) -> None:
        super().__init__(params, lr=lr)

    def update(self, p, g, state, group):
        p.sub_(group["lr"] * g)


class Momentum(TeachingOptimizer):
    """SGD with momentum: a velocity ``v <- rho * v + g`` (from zero), then ``x <- x - lr * v``.

    This is torch's form. The "physics" form ``v <- rho * v - lr * g; x <- x + v`` gives the
    same iterates as long as ``lr`` is constant (its velocity is ``-lr`` times this one).
    """

    def __init__(self, params: Iterable, lr: float = 0.01, rho: float = 0.9) -> None:
        super().__init__(params, lr=lr, rho=rho)

    def update(self, p, g, state, group):
        v = state.setdefault("v", torch.zeros_like(p))
        v.mul_(group["rho"]).add_(g)
        p.sub_(group["lr"] * v)


class Nesterov(TeachingOptimizer):
    """Nesterov momentum in the form used in practice (no gradient at a look-ahead point).

    ``v <- rho * v + g`` and ``x <- x - lr * (g + rho * v)``: the step uses the velocity one
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

    ``h <- h + g^2``, ``x <- x - lr * g / (sqrt(h) + eps)``. The sum only grows, so the
    steps shrink toward zero.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, eps: float = 1e-10) -> None:
        super().__init__(params, lr=lr, eps=eps)

    def update(self, p, g, state, group):
        h = state.setdefault("h", torch.zeros_like(p))
        h.add_(g * g)
        p.sub_(group["lr"] * g / (h.sqrt() + group["eps"]))


class RMSProp(TeachingOptimizer):
    """AdaGrad with a leaky sum: a running *mean* of squared gradients.

    ``s <- decay * s + (1 - decay) * g^2``, ``x <- x - lr * g / (sqrt(s) + eps)``.
    """

    def __init__(self, params: Iterable, lr: float = 0.01, decay: float = 0.99,
                 eps: float = 1e-8) -> None:
        super().__init__(params, lr=lr, decay=decay, eps=eps)

    def update(self, p, g, state, group):
        s = state.setdefault("s", torch.zeros_like(p))
        s.mul_(group["decay"]).add_((1 - group["decay"]) * g * g)
        p.sub_(group["lr"] * g / (s.sqrt() + group["eps"]))


class Adam(TeachingOptimizer):
    """Momentum (first moment ``m``) plus RMSProp (second moment ``v``), both bias-corrected.

    ``m`` and ``v`` start at zero, so early on they underestimate the gradient's mean and
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
        v = state.setdefault("v", torch.zeros_like(p))
        t = state["t"] = state.get("t", 0) + 1
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)
        if group["bias_correction"]:
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        else:
            m_hat, v_hat = m, v
        p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))


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
