"""Helpers for the course on training convolutional networks.

The names below are imported lazily, so ``import course_utils`` is instant and touches
neither torch nor the network until a helper is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "get_device": "device", "device_summary": "device", "autocast_dtype": "device",
    "get_profile": "profile", "Profile": "profile",
    "seed_everything": "seed",
    "load_data": "data", "ImageData": "data", "Augment": "data",
    "get_model": "models", "count_parameters": "models", "LeNet": "models",
    "fit": "train", "evaluate": "train", "TrainingDiverged": "train",
    "History": "history",
    "Callback": "callbacks", "EarlyStopping": "callbacks",
    "get_surface": "surfaces", "run_optimizer": "surfaces", "make_scheduler": "optim",
    "optimizer_playground": "widgets", "schedule_explorer": "widgets",
    "plot_trajectories": "widgets", "overfitting_explorer": "widgets",
    "flops_per_image": "measure", "Stopwatch": "measure", "PeakMemory": "measure",
    "throughput": "measure", "mfu": "measure", "timing_check": "measure",
    "LivePlot": "plots", "plot_histories": "plots", "plot_samples": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover - for editors and type checkers only
    from .callbacks import Callback, EarlyStopping
    from .data import Augment, ImageData, load_data
    from .device import autocast_dtype, device_summary, get_device
    from .history import History
    from .measure import PeakMemory, Stopwatch, flops_per_image, mfu, throughput, timing_check
    from .models import LeNet, count_parameters, get_model
    from .optim import make_scheduler
    from .plots import LivePlot, plot_histories, plot_samples
    from .profile import Profile, get_profile
    from .seed import seed_everything
    from .surfaces import get_surface, run_optimizer
    from .train import TrainingDiverged, evaluate, fit
    from .widgets import (
        optimizer_playground,
        overfitting_explorer,
        plot_trajectories,
        schedule_explorer,
    )
