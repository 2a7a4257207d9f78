"""Plug a pure update rule ``rule(param, grad, state, **hyper) -> (param, state)`` into torch.

The assignments ask for update rules as pure functions, which are easy to test. To train a
network with one, :class:`RuleOptimizer` wraps it in a ``torch.optim.Optimizer`` (so it works
with ``fit`` and ``torch.optim.lr_scheduler``); to run it on a 2-D surface,
:func:`surface_update` turns it into the ``update(xy, grad, state)`` form that
``course_utils.surfaces.run_optimizer`` takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..optim import TeachingOptimizer

Rule = Callable[..., tuple[torch.Tensor, dict]]


def _apply(rule: Rule, param: torch.Tensor, grad: torch.Tensor, state: dict,
           hyper: dict[str, Any]) -> torch.Tensor:
    """One step of ``rule``; ``state`` is updated in place with the returned state."""
    result = rule(param.detach().clone(), grad.detach().clone(), dict(state), **hyper)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise TypeError(f"{getattr(rule, '__name__', 'the rule')} must return "
                        f"(new_param, new_state), got {type(result).__name__}")
    new_param, new_state = result
    state.clear()
    state.update(new_state)
    return new_param


class RuleOptimizer(TeachingOptimizer):
    """A ``torch.optim.Optimizer`` that applies ``rule`` to each parameter with a gradient.

    ``RuleOptimizer(model.parameters(), adam, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)``.
    Hyperparameters live in ``param_groups`` (so schedulers can change ``lr``) and are passed
    to ``rule`` as keyword arguments; each parameter's state is the dict ``rule`` returned.
    """

    def __init__(self, params: Iterable, rule: Rule, **hyper: Any) -> None:
        if "lr" not in hyper:
            raise ValueError("RuleOptimizer needs an lr (schedulers and fit() read it).")
        self.rule = rule
        super().__init__(params, **hyper)

    def update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        # Only the rule's own hyperparameters (schedulers add keys such as initial_lr).
        hyper = {k: group[k] for k in self.defaults}
        p.copy_(_apply(self.rule, p, g, state, hyper))

    def __repr__(self) -> str:
        return f"RuleOptimizer({getattr(self.rule, '__name__', self.rule)})"


def surface_update(rule: Rule, **hyper: Any) -> Callable[[torch.Tensor, torch.Tensor, dict],
                                                          torch.Tensor]:
    """``rule`` with its hyperparameters, as ``update(xy, grad, state) -> new_xy``."""

    def update(xy: torch.Tensor, grad: torch.Tensor, state: dict) -> torch.Tensor:
        return _apply(rule, xy, grad, state, hyper)

    update.__name__ = getattr(rule, "__name__", "update")
    return update
