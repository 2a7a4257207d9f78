"""Hooks into the training loop: the base class, and early stopping.

A callback sees the :class:`~course_utils.history.History` after each epoch and may ask
``fit`` to stop by returning True from ``on_epoch_end``.
"""

from __future__ import annotations

import math

from torch import nn

from .history import History


class Callback:
    """Base class: override the hooks you need; each gets the run's History."""

    def on_fit_start(self, history: History) -> None:
        """Called once before the first epoch (``history.meta`` is filled in)."""

    def on_epoch_end(self, history: History) -> bool | None:
        """Called after each epoch's evaluation; return True to stop training."""
        return None

    def on_fit_end(self, history: History) -> None:
        """Called once when training ends, however it ends."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best=model``, a copy of the model's weights is kept at every new best
    epoch and loaded back when training ends, so the model is the best one seen, not the
    last. ``history.meta["best_epoch"]`` records which epoch that was (1-based). Monitor a
    validation split (``fit(model, data.validation(), ...)``), never the test split.

    With ``fit(..., ema_decay=...)`` the scores are the averaged model's
    (``history.ema_model``), so the weights kept, and loaded into ``restore_best`` at the end,
    are the averaged weights of the best epoch -- the ones that were scored.
    """

    def __init__(self, monitor: str = "test_loss", patience: int = 3, min_delta: float = 0.0,
                 mode: str | None = None, restore_best: nn.Module | None = None) -> None:
        if monitor not in History.METRICS:
            raise ValueError(f"Unknown metric {monitor!r}; valid metrics are "
                             f"{', '.join(History.METRICS)}.")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode or ("max" if monitor.endswith("acc") else "min")
        self.model = restore_best
        self.on_fit_start(History())

    def on_fit_start(self, history: History) -> None:
        self.best = -math.inf if self.mode == "max" else math.inf
        self.bad_epochs, self.best_epoch, self.best_state = 0, 0, None
        averaged = getattr(history, "ema_model", None)  # what fit scores with ema_decay
        self.scored_model = averaged.module if averaged is not None else self.model

    def on_epoch_end(self, history: History) -> bool:
        value = getattr(history, self.monitor)[-1]
        better = (value > self.best + self.min_delta if self.mode == "max"
                  else value < self.best - self.min_delta)
        if better:
            self.best, self.bad_epochs, self.best_epoch = value, 0, len(history)
            if self.model is not None:
                self.best_state = {k: v.detach().clone()
                                   for k, v in self.scored_model.state_dict().items()}
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            history.meta["stopped"] = (f"early stopping: {self._describe(history)} did not "
                                       f"improve for {self.patience} epochs")
            return True
        return False

    def _describe(self, history: History) -> str:
        """The monitored metric, named for the split it was really scored on.

        ``fit`` records every held-out score under ``test_*``; when it was handed
        ``data.validation()`` (its dataset name says so), that split is the validation split.
        """
        if (self.monitor.startswith("test_")
                and "validation split" in str(history.meta.get("dataset", ""))):
            return f"validation {self.monitor.removeprefix('test_')} (history.{self.monitor})"
        return self.monitor

    def on_fit_end(self, history: History) -> None:
        history.meta["best_epoch"] = self.best_epoch
        if self.model is not None and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
