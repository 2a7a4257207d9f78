"""The optimizer playground and the schedule explorer, driven without a browser."""

from __future__ import annotations

import base64

import pytest

from course_utils.surfaces import run_optimizer
from course_utils.widgets import (
    optimizer_factory,
    optimizer_playground,
    plot_schedules,
    plot_trajectories,
    schedule_explorer,
)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _is_png(data: str) -> bool:
    return base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_playground_runs_ticked_optimizers_and_reacts_to_controls():
    pg = optimizer_playground("taco", optimizers=("SGD", "Adam"), steps=30)
    runs = pg.run()
    assert list(runs) == ["SGD", "Adam"] and all(len(t.losses) == 31 for t in runs.values())
    pg.checks["Nesterov"].value = True
    pg.controls["steps"].value = 20
    runs = pg.run()
    assert list(runs) == ["SGD", "Nesterov", "Adam"] and len(runs["SGD"].losses) == 21


def test_changing_surface_brings_its_learning_rates():
    pg = optimizer_playground("taco", optimizers=("SGD",), steps=10)
    pg.controls["surface"].value = "rosenbrock"
    assert pg.controls["lr"].value == pytest.approx(0.01)
    assert pg.settings()["surface"] == "rosenbrock"


def test_playground_output_has_widget_and_static_png():
    bundle = optimizer_playground("saddle", optimizers=("SGD", "Momentum"), steps=10,
                                  noise=0.1)._repr_mimebundle_()
    assert WIDGET_MIME in bundle and _is_png(bundle["image/png"])
    assert "run this notebook" in bundle["text/plain"]


def test_playground_figure_has_one_line_per_optimizer():
    fig = optimizer_playground("rotated_taco", optimizers=("SGD", "RMSProp", "Adam"),
                               steps=10).figure()
    contour, losses = fig.axes[:2]
    assert len(losses.get_lines()) == 3


def test_bad_optimizer_names_are_listed():
    with pytest.raises(ValueError, match="valid names are SGD, Momentum"):
        optimizer_playground("taco", optimizers=("LBFGS",))
    with pytest.raises(ValueError, match="valid names are SGD"):
        optimizer_factory("sgd", 0.1)


def test_plot_trajectories_marks_divergence():
    import torch

    tr = run_optimizer("taco", lambda p: torch.optim.SGD(p, lr=1.0), 50)
    fig = plot_trajectories("taco", {"too high": tr})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "too high (diverged)" in labels


def test_schedule_explorer_and_plot():
    ex = schedule_explorer(("step", "cosine"), total=40)
    assert ex.settings()["schedules"] == ["step", "cosine"]
    ex.checks["exponential"].value = True
    assert len(ex.figure().axes[0].get_lines()) == 3
    assert _is_png(ex._repr_mimebundle_()["image/png"])
    assert len(plot_schedules(total=20).axes[0].get_lines()) == 7
    with pytest.raises(ValueError, match="valid schedules are"):
        schedule_explorer(("linear",))


def test_trajectory_figure_fits_a_phone_and_keeps_the_minimum_visible():
    runs = {name: run_optimizer("rosenbrock", optimizer_factory(name, 0.01), 50)
            for name in ("SGD", "Momentum", "Nesterov")}
    fig = plot_trajectories("rosenbrock", runs)
    contour, losses = fig.axes[:2]
    assert fig.get_figwidth() <= 6  # readable when scaled down to 400 px
    assert losses.get_position().y1 < contour.get_position().y0  # stacked, not side by side
    star = [line for line in contour.get_lines() if line.get_label() == "minimum"]
    assert len(star) == 1
    assert star[0].get_zorder() > max(line.get_zorder() for line in contour.get_lines()
                                      if line is not star[0])
    assert contour.get_xlabel() == r"$\theta_1$"
