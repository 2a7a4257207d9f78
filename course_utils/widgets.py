"""Interactive figures: the optimizer playground and the learning-rate schedule explorer.

Each is an object that, shown as the last value of a notebook cell, displays ipywidgets
controls in a live kernel *and* carries a static PNG of its default settings in the same
output. Front ends that run widgets (JupyterLab, Notebook, Colab, VS Code) show the controls;
the rendered book, which cannot, shows the figure. The drawing functions
(``plot_trajectories``, ``plot_schedules``) are also usable on their own.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from .optim import SCHEDULES, TEACHING_OPTIMIZERS, schedule_lrs
from .plots import _pyplot, in_notebook
from .surfaces import SURFACES, Surface, Trajectory, get_surface, run_optimizer

ADAPTIVE = ("AdaGrad", "RMSProp", "Adam")
COLORS = {"SGD": "tab:blue", "Momentum": "tab:orange", "Nesterov": "tab:green",
          "AdaGrad": "tab:red", "RMSProp": "tab:purple", "Adam": "tab:brown"}


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


def plot_trajectories(surface: str | Surface, trajectories: Mapping[str, Trajectory],
                      title: str | None = None, loss_panel: bool = True):
    """Contour plot of ``surface`` with each trajectory on it, and loss above the minimum.

    ``trajectories`` maps a label to a :class:`~course_utils.surfaces.Trajectory`. The loss
    panel sits *below* the contour plot and the figure is 5.6 inches wide, so both stay
    readable at phone width (400 px). Paths are thin and the minimum is drawn on top of them.
    Returns the matplotlib figure (closed, so a notebook shows it exactly once).
    """
    plt = _pyplot()
    surface = get_surface(surface)
    nrows = 2 if loss_panel else 1
    fig, axes = plt.subplots(nrows, 1, figsize=(5.6, 3.6 * nrows), squeeze=False,
                             height_ratios=[1.25, 1][:nrows])
    ax = axes[0, 0]
    X, Y, Z = (t.numpy() for t in surface.grid(200))
    gap = Z - Z.min()
    levels = Z.min() + np.geomspace(max(np.percentile(gap, 0.5), 1e-4), gap.max(), 18)
    ax.contourf(X, Y, Z, levels=levels, cmap="Blues_r", alpha=0.55, extend="both")
    ax.contour(X, Y, Z, levels=levels, colors="k", linewidths=0.4, alpha=0.35)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, tr) in enumerate(trajectories.items()):
        color = COLORS.get(label, colors[i % len(colors)])
        pts = tr.points.numpy()
        name = f"{label} (diverged)" if tr.diverged else label
        # A diverging path shoots off the plot; draw it faintly, behind the others.
        style = ({"alpha": 0.45, "linewidth": 0.7, "zorder": 1} if tr.diverged
                 else {"linewidth": 1.0, "zorder": 2, "alpha": 0.9})
        ax.plot(pts[:, 0], pts[:, 1], "-o", color=color, markersize=1.6, label=name, **style)
        ax.plot(pts[0, 0], pts[0, 1], "ko", markersize=4, zorder=3)
    # The minimum last and on top, so that no path hides it.
    ax.plot(*surface.minimum, marker="*", color="gold", markersize=14, markeredgecolor="k",
            linestyle="none", label="minimum", zorder=10)
    (x0, x1), (y0, y1) = surface.bounds
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel=r"$\theta_1$", ylabel=r"$\theta_2$",
           title=surface.title)
    ax.legend(fontsize=8, loc="best")
    if loss_panel:
        ax2 = axes[1, 0]
        for i, (label, tr) in enumerate(trajectories.items()):
            color = COLORS.get(label, colors[i % len(colors)])
            gap = (tr.losses - surface.min_loss).clamp_min(1e-16).numpy()
            ax2.semilogy(gap, color=color, label=label)
        ax2.set(xlabel="step", ylabel="loss above the minimum")
        ax2.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_schedules(names: Sequence[str] = SCHEDULES, total: int = 90, lr: float = 0.1,
                   title: str | None = None, **kwargs: Any):
    """Learning rate against step for each named schedule (``optim.make_scheduler`` options)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for name in names:
        ax.plot(range(total), schedule_lrs(name, total, lr=lr, **kwargs), label=name,
                linewidth=1.6)
    ax.set(xlabel="epoch (or step)", ylabel="learning rate",
           title=title or "Learning-rate schedules (torch.optim.lr_scheduler)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _Interactive:
    """Controls + an output area in a live kernel, a static PNG on the rendered page."""

    description = "interactive figure"
    _quiet = False

    def figure(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _build(self, controls: list) -> None:
        import ipywidgets as W

        self.output = W.Output()
        for control in self.controls.values():
            control.observe(lambda _change: self.redraw(), names="value")
        self.widget = W.VBox([*controls, self.output])
        self.redraw()

    def redraw(self) -> None:
        """Recompute for the current control values and show the new figure."""
        if self._quiet or not in_notebook():  # no output area to draw in outside Jupyter
            return
        self._show(self.figure())

    def _show(self, fig, text: str | None = None) -> None:
        """Make the output area show ``fig`` and, under it, ``text``.

        The outputs are set on the widget's state rather than displayed: a front end with
        widgets renders them in the output area, and a run without one (nbclient, the book
        build) records nothing in the cell, whose static picture is the bundle's PNG (a
        displayed figure would show twice on the page).
        """
        from IPython import get_ipython

        data, metadata = get_ipython().display_formatter.format(fig)
        outputs = [{"output_type": "display_data", "data": data, "metadata": metadata}]
        if text is not None:
            outputs.append({"output_type": "stream", "name": "stdout", "text": text + "\n"})
        self.output.outputs = tuple(outputs)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = dict(self.widget._repr_mimebundle_())
        # Widget-capable front ends render the controls; the static site (and any front end
        # without widgets) falls back to this picture of the current settings.
        bundle["image/png"] = _png(self.figure())
        bundle["text/plain"] = (f"<{self.description}: run this notebook to use the "
                                "controls; the figure shows the current settings>")
        return bundle


# --------------------------------------------------------------------------------------
# The optimizer playground
# --------------------------------------------------------------------------------------


def optimizer_factory(name: str, lr: float, rho: float = 0.9, beta1: float = 0.9,
                      beta2: float = 0.999, alpha: float = 0.9):
    """A factory for ``run_optimizer``: the teaching optimizer ``name`` with these settings.

    ``alpha`` is RMSProp's decay rate (torch's name; the book's $\\beta_2$ for RMSProp).
    """
    if name not in TEACHING_OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; valid names are "
                         f"{', '.join(TEACHING_OPTIMIZERS)}.")
    cls = TEACHING_OPTIMIZERS[name]
    extra: dict[str, Any] = {}
    if name in ("Momentum", "Nesterov"):
        extra = {"rho": rho}
    elif name == "RMSProp":
        extra = {"alpha": alpha}
    elif name == "Adam":
        extra = {"betas": (beta1, beta2)}
    return partial(cls, lr=lr, **extra)


class OptimizerPlayground(_Interactive):
    """Pick a surface and optimizers, set their hyperparameters, watch the trajectories.

    Two learning rates, because the two families step differently: the SGD family moves
    ``lr`` times the gradient, the adaptive methods about ``lr`` per coordinate.
    """

    description = "Optimizer playground"

    def __init__(self, surface: str = "taco",
                 optimizers: Sequence[str] = ("SGD", "Momentum", "Adam"),
                 lr: float | None = None, adaptive_lr: float | None = None, rho: float = 0.9,
                 beta1: float = 0.9, beta2: float = 0.999, alpha: float = 0.9,
                 steps: int = 100, noise: float = 0.0) -> None:
        import ipywidgets as W

        s = get_surface(surface)
        unknown = set(optimizers) - set(TEACHING_OPTIMIZERS)
        if unknown:
            raise ValueError(f"Unknown optimizer(s) {sorted(unknown)}; valid names are "
                             f"{', '.join(TEACHING_OPTIMIZERS)}.")
        style = {"description_width": "110px"}
        log = partial(W.FloatLogSlider, base=10, style=style, readout_format=".2g",
                      continuous_update=False)
        slider = partial(W.FloatSlider, style=style, continuous_update=False)
        self.controls = {
            "surface": W.Dropdown(options=list(SURFACES), value=s.name, description="surface",
                                  style=style),
            "lr": log(value=lr or s.sgd_lr, min=-4, max=0.5, description="lr (SGD family)"),
            "adaptive_lr": log(value=adaptive_lr or s.adaptive_lr, min=-4, max=0.5,
                               description="lr (adaptive)"),
            "rho": slider(value=rho, min=0.0, max=0.99, step=0.01, description="momentum rho"),
            "beta1": slider(value=beta1, min=0.0, max=0.99, step=0.01, description="Adam beta1"),
            "beta2": slider(value=beta2, min=0.9, max=0.9999, step=0.0001,
                            readout_format=".4f", description="Adam beta2"),
            "alpha": slider(value=alpha, min=0.5, max=0.999, step=0.001, readout_format=".3f",
                            description="RMSProp beta2"),
            "steps": W.IntSlider(value=steps, min=5, max=500, step=5, description="steps",
                                 style=style, continuous_update=False),
            "noise": slider(value=noise, min=0.0, max=2.0, step=0.05,
                            description="gradient noise"),
        }
        self.checks = {name: W.Checkbox(value=name in optimizers, description=name,
                                        indent=False, layout=W.Layout(width="105px"))
                       for name in TEACHING_OPTIMIZERS}
        self.controls.update({f"use_{k}": v for k, v in self.checks.items()})
        # A new surface brings its own suggested learning rates.
        self.controls["surface"].observe(self._surface_changed, names="value")
        c = self.controls
        self._build([
            W.HBox([c["surface"], c["steps"], c["noise"]]),
            W.HBox(list(self.checks.values())),
            W.HBox([c["lr"], c["rho"]]),
            W.HBox([c["adaptive_lr"], c["beta1"], c["beta2"]]),
            W.HBox([c["alpha"]]),
        ])

    def _surface_changed(self, change: dict) -> None:
        s = get_surface(change["new"])
        self._quiet = True  # one redraw (by the surface's own observer), not three
        try:
            self.controls["lr"].value = s.sgd_lr
            self.controls["adaptive_lr"].value = s.adaptive_lr
        finally:
            self._quiet = False

    def settings(self) -> dict[str, Any]:
        """The current value of every control."""
        out = {k: v.value for k, v in self.controls.items() if not k.startswith("use_")}
        out["optimizers"] = [k for k, box in self.checks.items() if box.value]
        return out

    def run(self) -> dict[str, Trajectory]:
        """One trajectory per ticked optimizer, for the current settings."""
        s = self.settings()
        runs = {}
        for name in s["optimizers"]:
            lr = s["adaptive_lr"] if name in ADAPTIVE else s["lr"]
            factory = optimizer_factory(name, lr, rho=s["rho"], beta1=s["beta1"],
                                        beta2=s["beta2"], alpha=s["alpha"])
            runs[name] = run_optimizer(s["surface"], factory, s["steps"], noise=s["noise"])
        return runs

    def figure(self):
        s = self.settings()
        noise = f", gradient noise {s['noise']:g}" if s["noise"] else ""
        return plot_trajectories(
            s["surface"], self.run(),
            title=(f"lr {s['lr']:.2g} (SGD family), {s['adaptive_lr']:.2g} (adaptive), "
                   f"rho {s['rho']:g}, betas ({s['beta1']:g}, {s['beta2']:g}), "
                   f"{s['steps']} steps{noise}"))


def optimizer_playground(surface: str = "taco",
                         optimizers: Sequence[str] = ("SGD", "Momentum", "Adam"),
                         **settings: Any) -> OptimizerPlayground:
    """The optimizer playground; make it the last line of a cell to display it."""
    return OptimizerPlayground(surface, optimizers, **settings)


# --------------------------------------------------------------------------------------
# The learning-rate schedule explorer
# --------------------------------------------------------------------------------------


class ScheduleExplorer(_Interactive):
    """Tick schedules and set their parameters; the curves come from torch's schedulers."""

    description = "Learning-rate schedule explorer"

    def __init__(self, schedules: Sequence[str] = ("constant", "step", "cosine",
                                                   "warmup_cosine"),
                 total: int = 90, lr: float = 0.1, gamma: float = 0.1, step_size: int = 30,
                 decay: float = 0.05, warmup: int = 5, restart: int = 30) -> None:
        import ipywidgets as W

        unknown = set(schedules) - set(SCHEDULES)
        if unknown:
            raise ValueError(f"Unknown schedule(s) {sorted(unknown)}; valid schedules are "
                             f"{', '.join(SCHEDULES)}.")
        style = {"description_width": "90px"}
        ints = partial(W.IntSlider, style=style, continuous_update=False)
        self.checks = {name: W.Checkbox(value=name in schedules, description=name,
                                        indent=False, layout=W.Layout(width="140px"))
                       for name in SCHEDULES}
        self.controls = {
            "total": ints(value=total, min=10, max=300, step=5, description="epochs"),
            "lr": W.FloatLogSlider(value=lr, base=10, min=-4, max=0, description="base lr",
                                   style=style, readout_format=".2g", continuous_update=False),
            "gamma": W.FloatLogSlider(value=gamma, base=10, min=-3, max=-0.05,
                                      description="gamma", style=style, readout_format=".2g",
                                      continuous_update=False),
            "step_size": ints(value=step_size, min=1, max=150, description="step size"),
            "decay": W.FloatLogSlider(value=decay, base=10, min=-3, max=0, style=style,
                                      description="1/t decay", readout_format=".2g",
                                      continuous_update=False),
            "warmup": ints(value=warmup, min=0, max=50, description="warm-up"),
            "restart": ints(value=restart, min=1, max=150, description="restart every"),
        }
        self.controls.update({f"use_{k}": v for k, v in self.checks.items()})
        c = self.controls
        self._build([
            W.HBox(list(self.checks.values())[:4]), W.HBox(list(self.checks.values())[4:]),
            W.HBox([c["total"], c["lr"], c["gamma"]]),
            W.HBox([c["step_size"], c["decay"], c["warmup"], c["restart"]]),
        ])

    def settings(self) -> dict[str, Any]:
        out = {k: v.value for k, v in self.controls.items() if not k.startswith("use_")}
        out["schedules"] = [k for k, box in self.checks.items() if box.value]
        return out

    def figure(self):
        s = self.settings()
        return plot_schedules(s["schedules"], s["total"], lr=s["lr"], gamma=s["gamma"],
                              step_size=s["step_size"], decay=s["decay"], warmup=s["warmup"],
                              restart=s["restart"])


def schedule_explorer(schedules: Sequence[str] = ("constant", "step", "cosine",
                                                  "warmup_cosine"),
                      **settings: Any) -> ScheduleExplorer:
    """The schedule explorer; make it the last line of a cell to display it."""
    return ScheduleExplorer(schedules, **settings)


# --------------------------------------------------------------------------------------
# The overfitting explorer (Chapter 2)
# --------------------------------------------------------------------------------------

WEIGHT_DECAYS = (0.0, 1e-3, 1e-2, 3e-2, 1e-1)


class OverfittingExplorer(_Interactive):
    """Training-set size, dropout and weight decay -> training and test curves.

    Each setting trains ``models.dropout_cnn`` with SGD (learning rate 0.02, momentum 0.9)
    from the same seed, next to the same network without dropout or decay, so the effect on
    the gap is seen against a reference. Runs are cached: moving a slider back is instant.
    """

    description = "Overfitting explorer"

    def __init__(self, train_size: int = 128, dropout: float = 0.5, weight_decay: float = 0.0,
                 epochs: int = 20, dataset: str = "fashion_mnist", seed: int = 0) -> None:
        import ipywidgets as W

        if weight_decay not in WEIGHT_DECAYS:
            raise ValueError(f"weight_decay must be one of {WEIGHT_DECAYS}, got {weight_decay}.")
        style = {"description_width": "100px"}
        self.dataset, self.seed = dataset, seed
        self._data: dict[int, Any] = {}
        self._runs: dict[tuple, Any] = {}
        self.controls = {
            "train_size": W.IntSlider(value=train_size, min=32, max=1024, step=32, style=style,
                                      description="train images", continuous_update=False),
            "dropout": W.FloatSlider(value=dropout, min=0.0, max=0.8, step=0.1, style=style,
                                     description="dropout p", continuous_update=False),
            "weight_decay": W.SelectionSlider(options=list(WEIGHT_DECAYS), value=weight_decay,
                                              description="weight decay", style=style,
                                              continuous_update=False),
            "epochs": W.IntSlider(value=epochs, min=5, max=60, step=5, style=style,
                                  description="epochs", continuous_update=False),
        }
        c = self.controls
        self._build([W.HBox([c["train_size"], c["dropout"]]),
                     W.HBox([c["weight_decay"], c["epochs"]])])

    def settings(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.controls.items()}

    def run(self, train_size: int, dropout: float, weight_decay: float, epochs: int):
        """The History of one setting (trained once, then cached)."""
        import torch

        from .data import load_data
        from .models import dropout_cnn
        from .seed import seed_everything
        from .train import fit

        key = (train_size, round(dropout, 3), weight_decay, epochs)
        if key not in self._runs:
            if train_size not in self._data:
                self._data[train_size] = load_data(self.dataset, batch_size=32,
                                                   train_size=train_size, verbose=False)
            data = self._data[train_size]
            seed_everything(self.seed)
            model = dropout_cnn(data.in_channels, data.num_classes, data.image_size, p=dropout)
            label = f"dropout {dropout:.1f}, decay {weight_decay:g}"
            self._runs[key] = fit(model, data, epochs, optimizer=partial(
                torch.optim.SGD, lr=0.02, momentum=0.9, weight_decay=weight_decay),
                label=label, progress=False, verbose=False)
        return self._runs[key]

    def figure(self):
        from .plots import plot_histories

        s = self.settings()
        reference = self.run(s["train_size"], 0.0, 0.0, s["epochs"])
        runs = [reference]
        if (s["dropout"], s["weight_decay"]) != (0.0, 0.0):
            runs.append(self.run(**s))
        return plot_histories(runs, title=f"{s['train_size']} training images -- "
                              f"{reference.meta['dataset']}")


def overfitting_explorer(**settings: Any) -> OverfittingExplorer:
    """The overfitting explorer; make it the last line of a cell to display it."""
    return OverfittingExplorer(**settings)
