"""Seeded draws of the inputs a question tests, shared by the assignments' graders.

Each question draws its cases from its own generator, seeded by the run's seed and a salt
(the question's number, say), so that ``check()`` (seed 0) and the grader (a secret seed) test
different inputs, and a seed always gives the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def generator(seed: int, salt: int) -> torch.Generator:
    """A generator for one question's cases under ``seed``."""
    return torch.Generator().manual_seed(seed * 1000 + salt)


def randint(gen: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high], both included."""
    return int(torch.randint(low, high + 1, (), generator=gen))


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """A float in [low, high)."""
    return low + (high - low) * float(torch.rand((), generator=gen))


def log_uniform(gen: torch.Generator, low: float, high: float) -> float:
    """A float in [low, high) whose logarithm is uniform (for rates and decays)."""
    return math.exp(uniform(gen, math.log(low), math.log(high)))


def choice(gen: torch.Generator, options: Sequence[Any]) -> Any:
    """One of ``options``, each equally likely."""
    return options[randint(gen, 0, len(options) - 1)]
