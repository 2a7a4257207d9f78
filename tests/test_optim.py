"""The teaching optimizers give the same iterates as torch.optim, step by step."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

from course_utils import optim

# (ours, its kwargs, torch's class, the matching kwargs)
PAIRS = [
    (optim.SGD, {"lr": 0.05}, torch.optim.SGD, {"lr": 0.05}),
    (optim.Momentum, {"lr": 0.02, "rho": 0.9}, torch.optim.SGD, {"lr": 0.02, "momentum": 0.9}),
    (optim.Momentum, {"lr": 0.01, "rho": 0.99}, torch.optim.SGD,
     {"lr": 0.01, "momentum": 0.99}),
    (optim.Nesterov, {"lr": 0.02, "rho": 0.9}, torch.optim.SGD,
     {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
    (optim.AdaGrad, {"lr": 0.1}, torch.optim.Adagrad, {"lr": 0.1}),
    (optim.AdaGrad, {"lr": 0.05, "eps": 1e-6}, torch.optim.Adagrad, {"lr": 0.05, "eps": 1e-6}),
    (optim.RMSProp, {"lr": 0.01}, torch.optim.RMSprop, {"lr": 0.01}),
    (optim.RMSProp, {"lr": 0.003, "alpha": 0.9, "eps": 1e-6}, torch.optim.RMSprop,
     {"lr": 0.003, "alpha": 0.9, "eps": 1e-6}),
    (optim.Adam, {"lr": 1e-3}, torch.optim.Adam, {"lr": 1e-3}),
    (optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}, torch.optim.Adam,
     {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}),
]


def _problem(seed: int):
    """A random regression problem and a small two-layer network (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    y = torch.randn(64, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    return x, y, model


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("ours", "kw", "theirs", "tkw"), PAIRS,
                         ids=[f"{p[0].__name__}-{i}" for i, p in enumerate(PAIRS)])
def test_same_iterates_as_torch(ours, kw, theirs, tkw, seed):
    x, y, model_a = _problem(seed)
    model_b = copy.deepcopy(model_a)
    opt_a, opt_b = ours(model_a.parameters(), **kw), theirs(model_b.parameters(), **tkw)
    g = torch.Generator().manual_seed(100 + seed)
    for _ in range(25):
        idx = torch.randint(0, len(x), (16,), generator=g)  # mini-batches: noisy gradients
        for model, opt in ((model_a, opt_a), (model_b, opt_b)):
            opt.zero_grad()
            nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            opt.step()
        for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)
    # and the parameters did move
    _, _, fresh = _problem(seed)
    assert not torch.allclose(next(model_a.parameters()), next(fresh.parameters()))


def test_closure_is_called_and_returned():
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = optim.Adam([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(5.0)
    assert p.detach().tolist() == pytest.approx([0.9, -1.9])  # Adam's first step is lr * sign(g)


def test_param_groups_have_their_own_lr():
    a = nn.Parameter(torch.ones(2))
    b = nn.Parameter(torch.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    assert a.tolist() == pytest.approx([0.9, 0.9])
    assert b.tolist() == pytest.approx([0.5, 0.5])


def test_parameters_without_grad_are_skipped():
    a = nn.Parameter(torch.ones(2))
    opt = optim.Momentum([a], lr=0.1)
    opt.step()
    assert a.tolist() == [1.0, 1.0] and not opt.state


def test_adam_without_bias_correction_first_step_is_larger():
    steps = {}
    for flag in (True, False):
        p = nn.Parameter(torch.tensor([0.1]))
        opt = optim.Adam([p], lr=1e-3, bias_correction=flag)
        p.grad = torch.tensor([0.1])
        opt.step()
        steps[flag] = abs(0.1 - p.item())
    assert steps[True] == pytest.approx(1e-3, rel=1e-4)
    # m = 0.1 g, s = 0.001 g^2: the step is lr * 0.1 / sqrt(0.001) = 3.16 lr
    assert steps[False] == pytest.approx(1e-3 * 0.1 / 0.001**0.5, rel=1e-3)


def test_negative_lr_is_rejected():
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.SGD([nn.Parameter(torch.ones(1))], lr=-1)


def test_registry_lists_all_six():
    assert list(optim.TEACHING_OPTIMIZERS) == [
        "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam"]


@pytest.mark.parametrize("name", optim.SCHEDULES)
def test_schedules(name):
    lrs = optim.schedule_lrs(name, 40, lr=0.1)
    assert len(lrs) == 40 and all(0 <= v <= 0.1 + 1e-12 for v in lrs)
    if name == "constant":
        assert lrs == [pytest.approx(0.1)] * 40
    elif name == "warmup_cosine":
        assert lrs[0] < lrs[4] and max(lrs) == pytest.approx(0.1) and lrs[-1] < 0.01
    else:
        assert lrs[0] == pytest.approx(0.1) and lrs[-1] < lrs[0]


def test_step_and_exponential_schedules_reach_gamma():
    assert optim.schedule_lrs("step", 30, lr=1.0, step_size=10)[::10] == pytest.approx(
        [1.0, 0.1, 0.01])
    exp = optim.schedule_lrs("exponential", 100, lr=1.0, gamma=0.01)
    assert exp[-1] == pytest.approx(0.01 ** (99 / 100))


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match="valid schedules are constant, step"):
        optim.schedule_lrs("triangle", 10)


def _fixed_problem():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)

    def loss_fn(m, idx):
        return nn.functional.cross_entropy(m(x[idx]), y[idx])

    return model, loss_fn


def test_loss_curve_full_batch_matches_a_plain_loop():
    model, loss_fn = _fixed_problem()
    reference = copy.deepcopy(model)
    curve = optim.loss_curve(model, loss_fn, lambda p: torch.optim.SGD(p, lr=0.1), 5, n=40)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    expected = []
    for _ in range(5):
        opt.zero_grad()
        loss_fn(reference, slice(None)).backward()
        opt.step()
        expected.append(loss_fn(reference, slice(None)).item())
    assert curve == pytest.approx(expected)


def test_loss_curve_counts_lbfgs_evaluations_and_stops_on_divergence():
    model, loss_fn = _fixed_problem()
    lbfgs = partial(torch.optim.LBFGS, lr=1, max_iter=1, line_search_fn="strong_wolfe")
    assert len(optim.loss_curve(model, loss_fn, lbfgs, 12, n=40, per="evaluation")) == 12
    model, loss_fn = _fixed_problem()
    curve = optim.loss_curve(model, loss_fn, lambda p: torch.optim.SGD(p, lr=1e4), 50, n=40,
                             stop_above=100.0)
    assert len(curve) < 50 and curve[-1] > 100
    with pytest.raises(ValueError, match="per must be"):
        optim.loss_curve(model, loss_fn, lambda p: torch.optim.SGD(p, lr=0.1), 1, n=40,
                         per="epoch")


def test_loss_curve_steps_plateau_scheduler_with_the_loss_and_records_lrs():
    model, loss_fn = _fixed_problem()
    lrs: list[float] = []
    curve = optim.loss_curve(
        model, loss_fn, lambda p: torch.optim.SGD(p, lr=0.1), 60, n=40, batch_size=8,
        scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0,
                                                                       threshold=0.5),
        lrs=lrs)
    assert len(lrs) == len(curve) == 60 and lrs[0] == 0.1 and min(lrs) < 0.1
