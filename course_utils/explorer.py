"""The architecture explorer: pick a network and an input size, see its layers and totals.

``architecture_explorer()`` (the last value of a notebook cell) shows a model dropdown and an
input-size slider in a live kernel, and a static figure of its current settings on the
rendered page. For each choice the network is built on the ``meta`` device and read by
:func:`course_utils.summary.summarize`, so even VGG-16 at 320x320 takes well under a second:
per-layer multiply-adds, activations and parameters as bars, the totals in the title, and
the layer table under the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .models import get_model
from .plots import _pyplot, in_notebook
from .summary import Summary, summarize
from .widgets import _Interactive

# The networks the explorer offers (registry names), in the order of the chapter.
EXPLORER_MODELS: tuple[str, ...] = (
    "lenet", "alexnet", "zfnet", "vgg11", "vgg16", "vgg19", "nin", "googlenet", "resnet18",
    "resnet34", "resnet50", "resnet152", "resnext50_32x4d", "wide_resnet50_2", "densenet121",
    "squeezenet1_0", "mobilenet_v1",
)


def explore(model: str, image_size: int = 224, in_channels: int = 3,
            num_classes: int = 1000) -> Summary:
    """Summary of ``model`` (a registry name) on one ``in_channels x image_size^2`` input,
    built on the meta device. Networks with many layers are summarized one level deep
    (blocks, not single layers), so the figure stays readable."""
    with torch.device("meta"):
        net = get_model(model, in_channels, num_classes, image_size)
    leaves = sum(1 for m in net.modules() if not any(m.children()))
    depth = None if leaves <= 40 else (2 if model.startswith(("resnet", "resnext", "wide"))
                                       else 1)
    return summarize(net, (in_channels, image_size, image_size), depth=depth, name=model)


def plot_summary(summary: Summary):
    """Bars per layer: multiply-adds, activations and parameters, with the totals on top."""
    plt = _pyplot()
    rows = [r for r in summary.rows if r.params or r.macs or r.activations]
    names = [r.name for r in rows]
    # 6.5 inches wide and 9-point text: readable when the page shrinks it to a phone's width
    fig, axes = plt.subplots(3, 1, figsize=(6.5, 7), sharex=True)
    series = (("mult-adds (M)", [r.macs / 1e6 for r in rows], "tab:blue"),
              ("activations (MB)", [4 * r.activations / 1e6 for r in rows], "tab:orange"),
              ("parameters (M)", [r.params / 1e6 for r in rows], "tab:green"))
    for ax, (label, values, color) in zip(axes, series, strict=True):
        ax.bar(range(len(rows)), values, color=color)
        ax.set_ylabel(label, fontsize=10)
        ax.tick_params(axis="y", labelsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[-1].set_xticks(range(len(rows)), names, rotation=90, fontsize=9)
    c, h, w = summary.input_shape
    fig.suptitle(f"{summary.model_name} on {c}x{h}x{w}: {summary.params / 1e6:,.2f}M parameters,\n"
                 f"{summary.macs / 1e9:,.2f}G multiply-adds, "
                 f"{summary.activation_bytes / 1e6:,.1f} MB activations (fp32)", fontsize=11)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _message_figure(text: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    plt.close(fig)
    return fig


class ArchitectureExplorer(_Interactive):
    """Model dropdown and input-size slider; the figure and table follow the controls."""

    description = "Architecture explorer"

    def __init__(self, model: str = "vgg16", image_size: int = 224,
                 models: Sequence[str] = EXPLORER_MODELS, in_channels: int = 3,
                 num_classes: int = 1000) -> None:
        import ipywidgets as W

        if model not in models:
            raise ValueError(f"Unknown model {model!r}; valid models are {', '.join(models)}.")
        self.in_channels, self.num_classes = in_channels, num_classes
        style = {"description_width": "80px"}
        self.controls = {
            "model": W.Dropdown(options=list(models), value=model, description="model",
                                style=style),
            "image_size": W.IntSlider(value=image_size, min=16, max=320, step=1,
                                      description="input size", style=style,
                                      continuous_update=False),
        }
        self._build([W.HBox([self.controls["model"], self.controls["image_size"]])])

    def settings(self) -> dict[str, Any]:
        """The current value of every control."""
        return {k: v.value for k, v in self.controls.items()}

    def summary(self) -> Summary:
        """The summary for the current settings (raises ValueError if the input is too small)."""
        s = self.settings()
        return explore(s["model"], s["image_size"], self.in_channels, self.num_classes)

    def figure(self):
        try:
            return plot_summary(self.summary())
        except ValueError as error:  # too small an input: say which size is needed
            return _message_figure(str(error))

    def redraw(self) -> None:
        """Show the figure and, under it, the layer table (or why there is none)."""
        if self._quiet or not in_notebook():
            return
        try:
            text = self.summary().table(max_rows=40)
        except ValueError as error:
            text = str(error)
        self._show(self.figure(), text)


def architecture_explorer(model: str = "vgg16", image_size: int = 224,
                          **settings: Any) -> ArchitectureExplorer:
    """The architecture explorer; make it the last line of a cell to display it."""
    return ArchitectureExplorer(model, image_size, **settings)
