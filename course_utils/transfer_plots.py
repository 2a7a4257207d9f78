"""Figures of Chapter 4's experiments: the decision table as a heat map, accuracy against the
number of labels per class, and the strategy explorer (a widget with a static figure).

All three read the same records: a list of dicts with keys ``kind`` ("similar" or
"different"), ``per_class`` (labelled images per class), ``strategy``, ``seed`` and
``accuracy`` -- one per training run, computed on the page that draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean, stdev
from typing import Any

import numpy as np

from .plots import _pyplot
from .widgets import _Interactive

Record = Mapping[str, Any]
COLORS = {"linear probe": "tab:blue", "probe, top": "tab:blue", "probe, stage 2": "tab:cyan",
          "fine-tune top": "tab:orange", "fine-tune all": "tab:green", "scratch": "tab:gray"}
KIND_TITLES = {"similar": "similar target", "different": "very different target"}


def _count_axis(ax, counts: Sequence[int]) -> None:
    """Log-scaled x axis with a tick at each number of labels that was run."""
    ax.set_xscale("log")
    ax.set_xticks(list(counts), [str(n) for n in counts])
    ax.minorticks_off()


Stats = dict[tuple[str, int, str], tuple[float, float, int]]


def summarize_runs(records: Sequence[Record]) -> Stats:
    """(kind, per_class, strategy) -> (mean accuracy, standard deviation over seeds, runs)."""
    groups: dict[tuple[str, int, str], list[float]] = {}
    for r in records:
        groups.setdefault((r["kind"], r["per_class"], r["strategy"]), []).append(r["accuracy"])
    return {k: (mean(v), stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def _strategies(records: Sequence[Record]) -> list[str]:
    seen: list[str] = []
    for r in records:
        if r["strategy"] not in seen:
            seen.append(r["strategy"])
    return seen


def plot_decision_table(records: Sequence[Record], few: int, lots: int, *,
                        baseline: str = "scratch", title: str = "",
                        advice: Mapping[tuple[str, str], str] | None = None):
    """The 2x2 decision table as one heat map: a column per cell ({similar, different} x
    {``few``, ``lots``} labels per class), a row per strategy. Each square shows the mean
    test accuracy over seeds (and its spread); its colour is the difference to
    ``baseline`` (green: better than training from scratch, red: worse). A solid box marks
    the best mean of each column; ``advice`` -- ``{(kind, "few" or "lots"): strategy}`` --
    puts a dashed box on the strategy the textbook table recommends for that cell."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    stats = summarize_runs(records)
    strategies = _strategies(records)
    cells = [(kind, n) for kind in ("similar", "different") for n in (few, lots)]
    acc = np.array([[stats[(k, n, s)][0] for (k, n) in cells] for s in strategies])
    sd = np.array([[stats[(k, n, s)][1] for (k, n) in cells] for s in strategies])
    base = np.array([stats[(k, n, baseline)][0] for (k, n) in cells])
    gain = acc - base
    span = max(0.05, float(np.abs(gain).max()))
    fig, ax = plt.subplots(figsize=(6.5, 0.55 * len(strategies) + 2.3))
    im = ax.imshow(100 * gain, cmap="RdYlGn", vmin=-100 * span, vmax=100 * span, aspect="auto")
    for i in range(len(strategies)):
        for j in range(len(cells)):
            ax.text(j, i, f"{100 * acc[i, j]:.0f}%\n±{100 * sd[i, j]:.0f}", ha="center",
                    va="center", fontsize=8)
    for j in range(len(cells)):  # the measured best of each column
        ax.add_patch(Rectangle((j - 0.47, int(acc[:, j].argmax()) - 0.47), 0.94, 0.94,
                               fill=False, lw=2, ec="black"))
    for (kind, size), strategy in (advice or {}).items():
        j = cells.index((kind, few if size == "few" else lots))
        ax.add_patch(Rectangle((j - 0.40, strategies.index(strategy) - 0.40), 0.80, 0.80,
                               fill=False, lw=1.5, ec="navy", ls="--"))
    short = {"similar": "similar", "different": "very different"}
    amount = {few: "very little", lots: "quite a lot"}
    labels = [f"{short.get(k, k)}\n{amount[n]}\n$n_{{\\mathrm{{lab}}}}$ = {n}"
              for k, n in cells]
    ax.set_xticks(range(len(cells)), labels, fontsize=8)
    ax.set_yticks(range(len(strategies)), strategies, fontsize=9)
    ax.set_xlabel("cell of the table: target vs source, labelled target data", fontsize=8)
    ax.set_ylabel("strategy", fontsize=8)
    bar = fig.colorbar(im, ax=ax, fraction=0.04)
    bar.set_label(f"accuracy minus {baseline} (points)", fontsize=8)
    handles = [Line2D([], [], color="black", lw=2, label="best mean in the column")]
    if advice:
        handles.append(Line2D([], [], color="navy", lw=1.5, ls="--",
                              label="the textbook table's advice"))
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3),
              ncol=len(handles), frameon=False)
    ax.set_title(title or "Test accuracy by strategy (mean ± sd over seeds)", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_label_curves(records: Sequence[Record], *, title: str = "", mark: int | None = None,
                      kinds: Sequence[str] = ("similar", "different")):
    """Accuracy against labelled images per class (log scale), one panel per kind of
    source-target pair, one line per strategy with a band of one standard deviation over
    seeds. ``mark`` draws a vertical line at that number of labels."""
    plt = _pyplot()
    stats = summarize_runs(records)
    strategies = _strategies(records)
    fig, axes = plt.subplots(len(kinds), 1, figsize=(6, 3.0 * len(kinds)), squeeze=False,
                             sharex=True)
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        for s in strategies:
            ns = sorted(n for (k, n, st) in stats if k == kind and st == s)
            if not ns:
                continue
            m = np.array([stats[(kind, n, s)][0] for n in ns]) * 100
            d = np.array([stats[(kind, n, s)][1] for n in ns]) * 100
            ax.plot(ns, m, "o-", color=COLORS.get(s), label=s, markersize=4)
            ax.fill_between(ns, m - d, m + d, color=COLORS.get(s), alpha=0.15)
        if mark is not None:
            ax.axvline(mark, color="k", ls=":", lw=1)
        _count_axis(ax, sorted({n for (k, n, _) in stats if k == kind}))
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(KIND_TITLES.get(kind, kind), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("labelled training images per class")
    fig.suptitle(title or "Accuracy against labels per class", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


class StrategyExplorer(_Interactive):
    """Pick a kind of source and a number of labels per class; see every strategy's test
    accuracy there (one dot per seed, a bar for the mean) next to the full curves."""

    description = "Strategy explorer"

    def __init__(self, records: Sequence[Record], kind: str = "similar",
                 per_class: int | None = None, title: str = "") -> None:
        import ipywidgets as W

        self.records, self.title = list(records), title
        kinds = sorted({r["kind"] for r in self.records}, key=["similar", "different"].index)
        counts = sorted({r["per_class"] for r in self.records})
        if kind not in kinds:
            raise ValueError(f"Unknown kind {kind!r}; valid kinds are {', '.join(kinds)}.")
        per_class = counts[0] if per_class is None else per_class
        if per_class not in counts:
            raise ValueError(f"per_class must be one of {counts}, got {per_class}.")
        style = {"description_width": "120px"}
        self.controls = {
            "kind": W.Dropdown(options=kinds, value=kind, description="source vs target",
                               style=style),
            "per_class": W.SelectionSlider(options=counts, value=per_class, style=style,
                                           description="labels per class",
                                           continuous_update=False),
        }
        self._build([W.HBox([self.controls["kind"], self.controls["per_class"]])])

    def settings(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.controls.items()}

    def figure(self):
        plt = _pyplot()
        s = self.settings()
        runs = [r for r in self.records
                if r["kind"] == s["kind"] and r["per_class"] == s["per_class"]]
        strategies = _strategies(self.records)
        fig, (ax, curve) = plt.subplots(2, 1, figsize=(6, 6.2), height_ratios=[1, 1.2])
        for i, st in enumerate(strategies):
            accs = [100 * r["accuracy"] for r in runs if r["strategy"] == st]
            if not accs:
                continue
            ax.barh(i, np.mean(accs), color=COLORS.get(st), alpha=0.5)
            ax.plot(accs, [i] * len(accs), "k.", markersize=5)
            ax.text(max(accs) + 1.5, i, f"{np.mean(accs):.0f}%", va="center", fontsize=8)
        ax.set_yticks(range(len(strategies)), strategies, fontsize=8)
        ax.invert_yaxis()  # the strategies top to bottom, in the heat map's order
        ax.set_xlim(0, 105)
        ax.set_xlabel("test accuracy (%) -- dots: seeds")
        ax.set_title(f"{KIND_TITLES[s['kind']]}, {s['per_class']} labels per class"
                     + (f"\n{self.title}" if self.title else ""), fontsize=9)
        stats = summarize_runs(self.records)
        for st in strategies:
            ns = sorted(n for (k, n, x) in stats if k == s["kind"] and x == st)
            curve.plot(ns, [100 * stats[(s["kind"], n, st)][0] for n in ns], "o-",
                       color=COLORS.get(st), label=st, markersize=3)
        curve.axvline(s["per_class"], color="k", ls=":", lw=1)
        _count_axis(curve, sorted({n for (k, n, _) in stats if k == s["kind"]}))
        curve.set(xlabel="labelled training images per class", ylabel="mean test accuracy (%)")
        curve.set_title(f"{KIND_TITLES[s['kind']]}: every number of labels that was run",
                        fontsize=9)
        curve.grid(alpha=0.3, which="both")
        curve.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        plt.close(fig)
        return fig


def strategy_explorer(records: Sequence[Record], **settings: Any) -> StrategyExplorer:
    """The strategy explorer over ``records``; make it the last line of a cell."""
    return StrategyExplorer(records, **settings)


def plot_filters(weight, title: str, columns: int = 16):
    """The filters of a convolution, one small image each: ``weight`` of shape
    (C_out, C_in, k, k); three input channels are shown in colour, otherwise the mean over
    input channels in grey. Each filter is scaled to its own range (mid-grey is zero)."""
    plt = _pyplot()
    w = weight.detach().float().cpu()
    rows = -(-w.shape[0] // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(0.4 * columns, 0.4 * rows + 0.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, f in zip(axes.flat, w, strict=False):
        f = f / (2 * f.abs().max().clamp_min(1e-8)) + 0.5
        if f.shape[0] == 3:
            ax.imshow(f.permute(1, 2, 0).numpy())
        else:
            ax.imshow(f.mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_feature_maps(maps: Mapping[str, Any], image, title: str, per_stage: int = 6):
    """An input image and, for each named stage, the first ``per_stage`` channels of its
    output for that image (each map scaled to its own range), one row per stage."""
    plt = _pyplot()
    rows = len(maps)
    fig, axes = plt.subplots(rows, per_stage + 1, figsize=(0.95 * (per_stage + 1),
                                                          0.95 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (name, fmap) in enumerate(maps.items()):
        if r == 0:
            axes[0, 0].imshow(image.float().mean(0).cpu().numpy(), cmap="gray")
            axes[0, 0].set_title("input", fontsize=7)
        for c in range(min(per_stage, fmap.shape[0])):
            axes[r, c + 1].imshow(fmap[c].float().cpu().numpy(), cmap="viridis")
        h, w = fmap.shape[-2:]
        axes[r, 1].set_title(f"{name}: {fmap.shape[0]} maps of {h}x{w}", fontsize=7,
                             loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_tasks(tasks: Mapping[str, Any], n: int = 10):
    """The first ``n`` training images of each task (an ImageData), one row per task, with
    the task's name (which says when it is the offline stand-in) and the class names."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(tasks), n, figsize=(0.65 * n, 1.15 * len(tasks)),
                             squeeze=False, gridspec_kw={"hspace": 0.9, "wspace": 0.1})
    for ax in axes.flat:
        ax.axis("off")
    for r, (label, data) in enumerate(tasks.items()):
        loader = getattr(data.train, "distinct", data.train)
        images, labels = loader.images[:n].cpu(), loader.labels[:n].cpu()
        for ax, img, y in zip(axes[r], images, labels, strict=False):
            ax.imshow(img.float().mean(0).numpy(), cmap="gray")
            ax.set_title(str(data.classes[int(y)])[:7], fontsize=6)
        axes[r, 0].text(0, -0.3, f"{label}: {data.name}", fontsize=7,
                        transform=axes[r, 0].transAxes, va="top")
    plt.close(fig)
    return fig


def plot_stage_probes(accuracies: Mapping[str, Mapping[str, Sequence[float]]], title: str):
    """Linear-probe accuracy by stage: ``accuracies[panel][network]`` is one accuracy per
    stage (bottom to top); ``stages`` are taken from the ``"stages"`` entry of each panel.
    One panel per target task, one group of bars per stage, one bar per network."""
    plt = _pyplot()
    panels = list(accuracies)
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.6 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        entry = dict(accuracies[panel])
        names = list(entry.pop("stages"))
        width = 0.8 / max(1, len(entry))
        for i, (net, accs) in enumerate(entry.items()):
            xs = np.arange(len(names)) + (i - (len(entry) - 1) / 2) * width
            ax.bar(xs, [100 * a for a in accs], width, label=net, alpha=0.8)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("probe accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
