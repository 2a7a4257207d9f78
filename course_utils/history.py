"""What a training run returns: per-epoch metrics plus where and how it ran."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class History:
    """Per-epoch metrics of one training run, and the facts needed to read them.

    Accuracies are fractions in [0, 1]. ``meta`` records the device, profile, dataset (which
    names the offline stand-in when one was used), model, sizes, and why the run stopped.
    """

    METRICS: ClassVar[tuple[str, ...]] = (
        "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time", "images_per_sec",
    )

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # at the start of each epoch
    epoch_time: list[float] = field(default_factory=list)
    images_per_sec: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.train_loss)

    @property
    def label(self) -> str:
        return str(self.meta.get("label") or self.meta.get("model") or "run")

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def mean_images_per_sec(self) -> float:
        """Training throughput averaged over epochs (the first is often slower: warm-up)."""
        rates = self.images_per_sec[1:] or self.images_per_sec
        return sum(rates) / len(rates) if rates else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: list(getattr(self, name)) for name in self.METRICS}
        out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        unknown = set(data) - set(cls.METRICS) - {"meta"}
        if unknown:
            raise ValueError(f"Not a History: unexpected keys {sorted(unknown)}")
        return cls(**{k: list(v) for k, v in data.items() if k != "meta"},
                   meta=dict(data.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        """Write the history as JSON (readable by anything, loadable with ``History.load``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def epoch_line(self, i: int = -1) -> str:
        """One printed line summarizing epoch ``i``."""
        n = len(self) if i < 0 else i + 1
        total = self.meta.get("epochs", "?")
        return (f"epoch {n}/{total}  train loss {self.train_loss[i]:.4f} "
                f"acc {self.train_acc[i]:6.2%} | test loss {self.test_loss[i]:.4f} "
                f"acc {self.test_acc[i]:6.2%} | lr {self.lr[i]:.3g} | "
                f"{self.epoch_time[i]:.1f} s, {self.images_per_sec[i]:,.0f} img/s")

    def summary(self) -> str:
        """Final result in one line, with the dataset and device it was obtained on."""
        if not len(self):
            return f"{self.label}: no epoch completed"
        return (f"{self.label}: test accuracy {self.final_test_acc:.2%} after {len(self)} "
                f"epoch(s) on {self.meta.get('dataset', '?')} | "
                f"{self.mean_images_per_sec:,.0f} train img/s on {self.meta.get('device', '?')}")
