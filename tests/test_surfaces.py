"""The 2-D loss surfaces and run_optimizer."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from course_utils import optim
from course_utils.surfaces import (
    FLAT_MINIMUM,
    LOCAL_MINIMUM,
    SURFACES,
    Surface,
    Trajectory,
    get_surface,
    run_optimizer,
)


@pytest.mark.parametrize("name", list(SURFACES))
def test_minimum_is_stationary_and_lowest(name):
    s = get_surface(name)
    assert isinstance(s, Surface) and s.name == name
    m = torch.tensor(s.minimum, dtype=torch.float64)
    assert s.grad(m).abs().max() < 1e-8
    assert torch.linalg.eigvalsh(s.hessian(m)).min() > 0  # a true minimum, not a saddle
    X, Y, Z = s.grid(60)
    assert Z.shape == (60, 60) and Z.min() >= s.min_loss - 1e-9
    (x0, x1), (y0, y1) = s.bounds
    assert x0 < s.start[0] < x1 and y0 < s.start[1] < y1
    assert x0 < s.minimum[0] < x1 and y0 < s.minimum[1] < y1


def test_grad_matches_formula_and_batches():
    s = get_surface("taco")
    xy = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(s.grad(xy), torch.tensor([[0.1, 8.0], [-0.3, 2.0]],
                                                        dtype=torch.float64))
    assert s.loss(xy).shape == (2,)


def test_taco_condition_number_and_rotation():
    h = get_surface("taco").hessian((0.3, -0.2))
    torch.testing.assert_close(h, torch.diag(torch.tensor([0.1, 4.0], dtype=torch.float64)))
    eig = torch.linalg.eigvalsh(get_surface("rotated_taco").hessian((1.0, 1.0)))
    torch.testing.assert_close(eig, torch.tensor([0.1, 4.0], dtype=torch.float64))


def test_saddle_is_a_saddle():
    eig = torch.linalg.eigvalsh(get_surface("saddle").hessian((0.0, 0.0)))
    assert eig[0] < 0 < eig[1]


def test_sharp_flat_has_a_sharp_global_and_a_flat_local_minimum():
    s = get_surface("sharp_flat")
    sharp = torch.tensor(s.minimum, dtype=torch.float64)
    flat = torch.tensor(FLAT_MINIMUM, dtype=torch.float64)
    assert abs(s.minimum[0] - 0.997) < 1e-3 and abs(FLAT_MINIMUM[0] + 1.332) < 1e-3
    assert s.grad(flat).abs().max() < 1e-8
    curv_sharp = torch.linalg.eigvalsh(s.hessian(sharp))[-1]
    curv_flat = torch.linalg.eigvalsh(s.hessian(flat))[-1]
    assert curv_sharp > 30 * curv_flat > 0, "the sharp dip is far narrower"
    assert 0 < s.loss(flat) - s.loss(sharp) < 0.01, "the sharp dip is a hair deeper"
    # along theta_2 = 0, fn is the 1-D landscape the chapter's pages draw
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(s.fn(x, torch.zeros_like(x)),
                               s.loss(torch.stack([x, torch.zeros_like(x)], -1)))


def test_unknown_surface_lists_valid_names():
    with pytest.raises(ValueError, match="valid surfaces are taco, rotated_taco"):
        get_surface("bowl")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        get_surface("taco").loss(torch.zeros(3))


def test_run_optimizer_with_torch_factory_and_update_fn_agree():
    s = get_surface("rosenbrock")
    a = run_optimizer(s, partial(torch.optim.SGD, lr=0.01), 50)

    def gd(xy, grad, state):
        state["calls"] = state.get("calls", 0) + 1
        return xy - 0.01 * grad

    b = run_optimizer(s, gd, 50)
    assert isinstance(a, Trajectory) and a.points.shape == (51, 2) and a.losses.shape == (51,)
    torch.testing.assert_close(a.points, b.points)
    path, losses = a  # unpacks as a pair
    assert losses[-1] < losses[0]


def test_teaching_optimizer_and_lbfgs_run():
    s = get_surface("taco")
    tr = run_optimizer(s, partial(optim.Adam, lr=s.adaptive_lr), 200)
    assert tr.losses[-1] < 1e-6 and not tr.diverged
    lb = run_optimizer(s, partial(torch.optim.LBFGS, lr=1, line_search_fn="strong_wolfe"), 5)
    assert lb.losses[-1] < 1e-9


def test_divergence_is_reported():
    tr = run_optimizer("taco", partial(torch.optim.SGD, lr=1.0), 100)  # lr * 4 > 2: explodes
    assert tr.diverged and torch.isnan(tr.points[-1]).all()
    assert torch.isfinite(tr.final).all()


def test_noise_is_seeded_and_changes_the_path():
    s = get_surface("taco", noise=0.5)
    f = partial(torch.optim.SGD, lr=0.1)
    a, b = run_optimizer(s, f, 20, seed=1), run_optimizer(s, f, 20, seed=1)
    c = run_optimizer(s, f, 20, seed=2)
    torch.testing.assert_close(a.points, b.points)
    assert not torch.allclose(a.points, c.points)
    clean = run_optimizer("taco", f, 20)
    assert not torch.allclose(a.points, clean.points)


def test_momentum_escapes_the_local_minimum_sgd_does_not():
    s = get_surface("local_minimum")
    sgd = run_optimizer(s, partial(optim.SGD, lr=s.sgd_lr), 300).final
    mom = run_optimizer(s, partial(optim.Momentum, lr=s.sgd_lr, rho=0.9), 300).final
    assert sgd[0].item() == pytest.approx(LOCAL_MINIMUM[0], abs=1e-2)
    assert mom[0].item() == pytest.approx(s.minimum[0], abs=1e-2)


def test_steps_to():
    tr = Trajectory(torch.zeros(4, 2), torch.tensor([3.0, 2.0, 1.0, 0.5]))
    assert tr.steps_to(1.0) == 2 and tr.steps_to(0.1) is None
    assert not math.isnan(tr.losses[-1])
