"""How big every experiment is: the ``smoke``, ``quick`` and ``full`` profiles.

A notebook never hard-codes two code paths for "fast" and "real" runs. It states the full
experiment once (``P.epochs(20)``, ``P.size(60_000)``) and the active profile scales it:

- ``full``: the real experiment (default when a CUDA GPU is present);
- ``quick``: a few minutes on a laptop CPU (default otherwise);
- ``smoke``: seconds, to prove the code runs (what CI uses).

``COURSE_PROFILE`` overrides the automatic choice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Profile:
    """Scaling factors applied to an experiment stated at its full size."""

    name: str
    epoch_fraction: float  # share of the full number of epochs (at least one is kept)
    max_train: int | None  # cap on training images (None: the whole split)
    max_test: int | None  # cap on test images
    step_fraction: float  # share of the full number of iterations in toy problems
    description: str

    def epochs(self, full: int) -> int:
        """Number of epochs to run for an experiment that takes ``full`` epochs."""
        return max(1, math.ceil(full * self.epoch_fraction))

    def steps(self, full: int, minimum: int = 1) -> int:
        """Number of iterations for a toy loop that takes ``full`` iterations."""
        return max(minimum, math.ceil(full * self.step_fraction))

    def size(self, full: int, split: str = "train") -> int:
        """Number of examples to use from a split that has ``full`` of them."""
        cap = self.max_train if split == "train" else self.max_test
        return full if cap is None else min(full, cap)

    def __str__(self) -> str:
        return f"{self.name} ({self.description})"


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", 0.0, 512, 256, 0.1, "tiny sizes to prove the code runs"),
    "quick": Profile("quick", 0.25, 10_000, 2_000, 0.5, "minutes on a laptop CPU"),
    "full": Profile("full", 1.0, None, None, 1.0, "the real experiment"),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the active profile: ``name``, else ``COURSE_PROFILE``, else by hardware."""
    chosen = (name or os.environ.get("COURSE_PROFILE", "")).strip().lower()
    if not chosen:
        chosen = "full" if torch.cuda.is_available() else "quick"
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}; valid profiles are {', '.join(PROFILES)}."
        )
    return PROFILES[chosen]
