"""Reproducibility: one call seeds every random number generator a notebook uses."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and all GPUs), so a run repeats exactly on the CPU.

    ``deterministic=True`` also asks cuDNN for deterministic kernels, which is slower; the
    default keeps runs repeatable up to the last few bits of floating-point sums on a GPU.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
