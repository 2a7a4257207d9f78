"""Figures of training runs: a live plot that updates in place, and side-by-side curves.

Every title carries the dataset's name, so a run on the offline stand-in says so on the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.ticker import MaxNLocator

from .callbacks import Callback
from .history import History


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures can be redrawn in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _pyplot():
    if not in_notebook() and matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")  # plain scripts and tests have no screen
    import matplotlib.pyplot as plt

    return plt


def _datasets(histories: Sequence[History]) -> str:
    names = sorted({str(h.meta.get("dataset", "?")) for h in histories})
    return ", ".join(names)


def plot_histories(histories: History | Sequence[History],
                   labels: Sequence[str] | None = None,
                   metrics: Sequence[str] = ("loss", "acc"), title: str | None = None):
    """Loss and accuracy curves (train dashed, test solid) of one or several runs, stacked.

    One panel per metric, stacked vertically at 6 inches wide, so the figure stays readable
    on a phone-width page (side-by-side panels shrink below legibility at 400 px).

    Returns the matplotlib figure; in a notebook it shows as the cell's value (wrap it in
    ``display(...)`` inside a loop or an ``if``).
    """
    plt = _pyplot()
    runs = [histories] if isinstance(histories, History) else list(histories)
    labels = list(labels) if labels is not None else [h.label for h in runs]
    if len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} histories")
    fig, axes = plt.subplots(len(metrics), 1, figsize=(6, 3.3 * len(metrics)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for i, (run, name) in enumerate(zip(runs, labels, strict=True)):
            color = colors[i % len(colors)]
            epochs = range(1, len(run) + 1)
            for split, style in (("train", "--"), ("test", "-")):
                values = getattr(run, f"{split}_{metric}")
                if metric == "acc":
                    values = [100 * v for v in values]
                ax.plot(epochs, values, style, color=color, marker="o", markersize=3,
                        label=f"{name} ({split})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, max(len(run) for run in runs) + 0.5)  # sensible even for one epoch
        ax.set_ylabel("accuracy (%)" if metric == "acc" else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Training curves -- {_datasets(runs)}", fontsize=11)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the returned value, not again by the inline backend
    return fig


Curve = Sequence[float] | tuple[Sequence[float], Sequence[float]]


def plot_curves(curves: Mapping[str, Curve], *, title: str, xlabel: str = "step",
                ylabel: str = "training loss", logy: bool = True,
                ylim: tuple[float, float] | None = None, vlines: Sequence[float] = (),
                steps: int | None = None, markers: Sequence[str] = (),
                colors: Mapping[str, str] | None = None,
                lrs: tuple[Sequence[float], Sequence[float]] | None = None,
                lr_position: str = "below"):
    """Loss curves of several runs in one panel, optionally with a learning-rate panel.

    - ``curves``: label -> values (plotted at x = 1, 2, ...) or label -> ``(x, values)``.
    - ``vlines``: x positions marked by dotted lines (e.g. the steps of a step decay).
    - ``steps``: the planned length of the runs; a curve that ends earlier (a run stopped
      because it diverged) gets an ``x`` at its end, labelled "diverged: stopped".
    - ``markers``: labels of curves drawn with dots (e.g. a metric checked now and then).
    - ``lrs``: ``(x, rates)`` drawn as a staircase in a second, smaller panel ``"below"`` or
      ``"above"`` the curves, with a tick at every distinct rate when there are few.

    Returns the matplotlib figure (show it with ``display(fig)`` or as a cell's value).
    """
    if lr_position not in ("below", "above"):
        raise ValueError(f"lr_position must be 'below' or 'above', got {lr_position!r}")
    plt = _pyplot()
    colors = dict(colors or {})
    if lrs is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        axes = [ax]
    else:
        ratios = [2, 1] if lr_position == "below" else [1, 2]
        fig, pair = plt.subplots(2, 1, figsize=(5.6, 4.8), sharex=True, height_ratios=ratios)
        ax, lr_ax = (pair[0], pair[1]) if lr_position == "below" else (pair[1], pair[0])
        axes = list(pair)
    for label, curve in curves.items():
        if isinstance(curve, tuple) and len(curve) == 2:
            xs, ys = list(curve[0]), list(curve[1])
        else:
            ys = list(curve)
            xs = list(range(1, len(ys) + 1))
        style = "o-" if label in markers else "-"
        (line,) = ax.plot(xs, ys, style, markersize=3, alpha=0.8, label=label,
                          color=colors.get(label))
        if steps is not None and len(ys) < steps:
            ax.plot(xs[-1], ys[-1], "kx", markersize=8)
            ax.annotate("diverged: stopped", (xs[-1], ys[-1]), fontsize=8, xytext=(8, -4),
                        textcoords="offset points")
    for x in vlines:
        ax.axvline(x, color="gray", ls=":")
    ax.set(ylabel=ylabel, yscale="log" if logy else "linear")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    if lrs is not None:
        lr_x, lr_values = list(lrs[0]), list(lrs[1])
        lr_ax.plot(lr_x, lr_values, drawstyle="steps-post", color=colors.get("lr", "tab:orange"))
        levels = sorted(set(lr_values))
        if len(levels) <= 6 and min(levels) > 0:
            lr_ax.set_yscale("log")
            lr_ax.set_yticks(levels, [f"{v:g}" for v in levels], minor=False)
            lr_ax.minorticks_off()
        lr_ax.set_ylabel(r"$\eta$")
    axes[0].set_title(title)
    axes[-1].set_xlabel(xlabel)
    for a in axes:
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    plt.close(fig)  # shown once, as the returned value
    return fig


class LivePlot(Callback):
    """Redraws the training curves after every epoch.

    In Jupyter the figure is updated in place (and the last drawing stays in the saved
    notebook, so the rendered book shows it); in a plain script it prints one line per epoch.
    """

    def __init__(self, metrics: Sequence[str] = ("loss", "acc")) -> None:
        self.metrics = tuple(metrics)
        self._handle = None
        self._notebook = in_notebook()
        # In a script this callback prints the per-epoch lines, so fit() need not.
        self.replaces_epoch_lines = not self._notebook

    def on_fit_start(self, history: History) -> None:
        self._handle = None

    def on_epoch_end(self, history: History) -> None:
        if not self._notebook:
            print(history.epoch_line())
            return None
        from IPython.display import display

        plt = _pyplot()
        fig = plot_histories(history, metrics=self.metrics)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)
        return None


def plot_samples(data, n: int = 16, split: str = "train", columns: int = 8):
    """A grid of the first ``n`` images of a split with their class names.

    Images are shown as stored (before normalization and augmentation); the title names the
    dataset, so the offline stand-in is labelled as such.
    """
    plt = _pyplot()
    loader = data.train if split == "train" else data.test
    images, labels = loader.images[:n].cpu(), loader.labels[:n].cpu()
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray_r" if data.key == "fashion_mnist" else "gray")
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(data.classes[int(label)], fontsize=8)
    fig.suptitle(f"{data.name} -- {split} split", fontsize=10)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the returned value
    return fig
