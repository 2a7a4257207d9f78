"""Two-dimensional loss surfaces, and running an optimizer on one of them.

A 2-D surface is the smallest setting in which the failure modes of gradient descent can be
*seen*: a narrow valley (zig-zag along the steep direction, crawl along the shallow one), a
saddle point, a local minimum, gradient noise. The optimization chapter, its playground and
its assignment all use the surfaces defined here.

The API (stable: other chapters and the assignments rely on it)::

    surface = get_surface("taco")            # unknown names raise, listing the valid ones
    surface.loss(xy)                         # xy: tensor (..., 2) -> tensor (...)
    surface.grad(xy)                         # gradient by autograd, same shape as xy
    surface.hessian(xy)                      # 2x2 Hessian by autograd
    surface.start, surface.minimum, surface.bounds
    path, losses = run_optimizer(surface, partial(torch.optim.SGD, lr=0.1), steps=100)
    path, losses = run_optimizer(surface, my_update, steps=100)  # my_update(xy, grad, state)

Everything is computed in float64, so comparisons between optimizers are exact up to
rounding, not up to float32 noise.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch.optim import Optimizer

DTYPE = torch.float64

Point = tuple[float, float]
Bounds = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Surface:
    """A loss ``f(x, y)`` on the plane, with a start point, its minimum and a plotting window.

    - ``fn(x, y)``: the loss, written with torch operations on tensors of any (equal) shape.
    - ``start``: where optimizers start by default.
    - ``minimum``: the global minimizer (for saddles and double wells: one of them).
    - ``bounds``: ``((xmin, xmax), (ymin, ymax))``, the window the contour plots show.
    - ``sgd_lr`` / ``adaptive_lr``: learning rates that suit this surface for the SGD family
      (steps proportional to the gradient) and for AdaGrad/RMSProp/Adam (steps of roughly
      ``lr`` per coordinate).
    - ``noise``: standard deviation of Gaussian noise added to every gradient (0: exact).
    """

    name: str
    title: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    start: Point
    minimum: Point
    bounds: Bounds
    sgd_lr: float
    adaptive_lr: float
    description: str = ""
    noise: float = 0.0

    def loss(self, xy: torch.Tensor) -> torch.Tensor:
        """Loss at ``xy`` (a tensor whose last dimension is 2: x and y)."""
        xy = torch.as_tensor(xy, dtype=DTYPE) if not torch.is_tensor(xy) else xy
        if xy.shape[-1] != 2:
            raise ValueError(f"expected points of shape (..., 2), got {tuple(xy.shape)}")
        return self.fn(xy[..., 0], xy[..., 1])

    def grad(self, xy: torch.Tensor) -> torch.Tensor:
        """Exact gradient at ``xy`` (shape (..., 2)), computed by autograd."""
        point = torch.as_tensor(xy, dtype=DTYPE).detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.loss(point).sum(), point)
        return g

    def hessian(self, xy: torch.Tensor | Point) -> torch.Tensor:
        """The 2x2 Hessian at one point, computed by autograd."""
        point = torch.as_tensor(xy, dtype=DTYPE).detach().reshape(2)
        return torch.autograd.functional.hessian(self.loss, point)

    @property
    def min_loss(self) -> float:
        """Loss at ``minimum``."""
        return float(self.loss(torch.tensor(self.minimum, dtype=DTYPE)))

    def with_noise(self, noise: float) -> Surface:
        """The same surface with Gaussian gradient noise of standard deviation ``noise``."""
        return replace(self, noise=float(noise))

    def grid(self, n: int = 200) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``X, Y, Z`` on an ``n x n`` grid over ``bounds`` (for contour plots)."""
        (x0, x1), (y0, y1) = self.bounds
        xs = torch.linspace(x0, x1, n, dtype=DTYPE)
        ys = torch.linspace(y0, y1, n, dtype=DTYPE)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        return X, Y, self.fn(X, Y)


# --------------------------------------------------------------------------------------
# The surfaces
# --------------------------------------------------------------------------------------

# Curvatures of the taco: shallow along x, steep along y (condition number 40).
TACO_CURVATURE = (0.1, 4.0)
ROTATION = math.pi / 4


def _taco(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a, b = TACO_CURVATURE
    return 0.5 * (a * x**2 + b * y**2)


def _rotated_taco(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The same valley turned by 45 degrees: the steep and shallow directions are now mixtures
    # of x and y, so no per-coordinate step size can tell them apart.
    c, s = math.cos(ROTATION), math.sin(ROTATION)
    return _taco(c * x + s * y, -s * x + c * y)


def _saddle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # A saddle at the origin (curving up along x, down along y) between two minima at
    # (0, +1) and (0, -1). The gradient is tiny everywhere near the saddle.
    return 0.5 * x**2 + 0.25 * y**4 - 0.5 * y**2


def _rosenbrock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Rosenbrock's banana valley with b = 10 instead of the classic 100, so that learning
    # rates that work on the other surfaces also work here.
    return (1 - x) ** 2 + 10 * (y - x**2) ** 2


def _double_well(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # A shallow local minimum near x = 1.13 and the global one near x = -1.30, separated by
    # a bump near x = 0.17; quadratic across y.
    return 0.25 * x**4 - 0.75 * x**2 + 0.3 * x + 0.5 * y**2


def _sharp_flat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # A narrow dip near x = 1 and a wide one near x = -1.33 on a gentle bowl, the narrow one a
    # hair deeper; quadratic across y. Along y = 0 it is the 1-D landscape of the chapter's
    # sharp-versus-flat demonstrations.
    sharp = -0.7 * torch.exp(-((x - 1.0) ** 2) / (2 * 0.1**2))
    flat = -0.8 * torch.exp(-((x + 1.5) ** 2) / (2 * 0.7**2))
    return 0.1 * x**2 + sharp + flat + 0.5 * y**2


def _root(fprime: Callable[[float], float], lo: float, hi: float) -> float:
    """Bisection for the 1-D minimizers of the double well (no closed form worth reading)."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if (fprime(lo) < 0) == (fprime(mid) < 0):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _well_slope(x: float) -> float:
    return x**3 - 1.5 * x + 0.3


def _slope_along_x(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                   ) -> Callable[[float], float]:
    """d fn(x, 0) / dx as a function of a float (by autograd), for ``_root``."""
    def slope(x: float) -> float:
        point = torch.tensor(x, dtype=DTYPE, requires_grad=True)
        (g,) = torch.autograd.grad(fn(point, torch.zeros((), dtype=DTYPE)), point)
        return float(g)
    return slope


# The taco's start point (-4.5, 1), turned with the valley.
_rot_start = (math.cos(ROTATION) * -4.5 - math.sin(ROTATION) * 1.0,
              math.sin(ROTATION) * -4.5 + math.cos(ROTATION) * 1.0)

SURFACES: dict[str, Surface] = {
    "taco": Surface(
        "taco", "taco shell (condition number 40)", _taco,
        start=(-4.5, 1.0), minimum=(0.0, 0.0), bounds=((-5.0, 5.0), (-1.5, 1.5)),
        sgd_lr=0.3, adaptive_lr=0.3,
        description="0.5 (0.1 x^2 + 4 y^2): steep across the valley, shallow along it",
    ),
    "rotated_taco": Surface(
        "rotated_taco", "rotated taco (45 degrees)", _rotated_taco,
        start=_rot_start, minimum=(0.0, 0.0), bounds=((-4.0, 4.0), (-4.0, 4.0)),
        sgd_lr=0.3, adaptive_lr=0.3,
        description="the taco turned by 45 degrees: the valley is not along an axis",
    ),
    "saddle": Surface(
        "saddle", "saddle point between two minima", _saddle,
        start=(-2.0, 1e-4), minimum=(0.0, 1.0), bounds=((-2.5, 2.5), (-1.6, 1.6)),
        sgd_lr=0.2, adaptive_lr=0.1,
        description="0.5 x^2 + 0.25 y^4 - 0.5 y^2: saddle at the origin, minima at (0, +-1)",
    ),
    "rosenbrock": Surface(
        "rosenbrock", "Rosenbrock banana (b = 10)", _rosenbrock,
        start=(-1.5, 2.0), minimum=(1.0, 1.0), bounds=((-2.0, 2.0), (-1.0, 3.0)),
        sgd_lr=0.01, adaptive_lr=0.1,
        description="(1 - x)^2 + 10 (y - x^2)^2: a curved, flat-bottomed valley",
    ),
    "local_minimum": Surface(
        "local_minimum", "double well (a local and a global minimum)", _double_well,
        start=(2.2, 1.0), minimum=(_root(_well_slope, -2.0, -0.5), 0.0),
        bounds=((-2.2, 2.4), (-1.5, 1.5)),
        sgd_lr=0.05, adaptive_lr=0.1,
        description="0.25 x^4 - 0.75 x^2 + 0.3 x + 0.5 y^2: local minimum on the right",
    ),
    "sharp_flat": Surface(
        "sharp_flat", "a sharp and a flat minimum", _sharp_flat,
        start=(3.0, 0.5), minimum=(_root(_slope_along_x(_sharp_flat), 0.9, 1.1), 0.0),
        bounds=((-3.5, 3.5), (-1.0, 1.0)),
        sgd_lr=0.02, adaptive_lr=0.05,
        description="a narrow dip near x = 1 (the global minimum, by a hair) and a wide one "
                    "near x = -1.33",
    ),
}

LOCAL_MINIMUM = (_root(_well_slope, 0.5, 2.0), 0.0)  # the trap of the "local_minimum" surface
# The wide, slightly higher dip of the "sharp_flat" surface.
FLAT_MINIMUM = (_root(_slope_along_x(_sharp_flat), -2.0, -0.8), 0.0)


def get_surface(name: str | Surface, noise: float | None = None) -> Surface:
    """The surface called ``name`` (see ``SURFACES``), optionally with gradient noise."""
    if isinstance(name, Surface):
        surface = name
    else:
        key = name.lower().replace("-", "_").replace(" ", "_")
        if key not in SURFACES:
            raise ValueError(f"Unknown surface {name!r}; valid surfaces are "
                             f"{', '.join(SURFACES)}.")
        surface = SURFACES[key]
    return surface if noise is None else surface.with_noise(noise)


# --------------------------------------------------------------------------------------
# Running an optimizer
# --------------------------------------------------------------------------------------


class Trajectory(NamedTuple):
    """Where an optimizer went: ``points`` (steps + 1, 2) and ``losses`` (steps + 1).

    Row 0 is the start. If the run diverged (a non-finite or huge value), the remaining rows
    are NaN and ``diverged`` is True.
    """

    points: torch.Tensor
    losses: torch.Tensor

    @property
    def diverged(self) -> bool:
        return bool(torch.isnan(self.losses).any())

    @property
    def final(self) -> torch.Tensor:
        """The last point reached (before divergence, if any)."""
        finite = torch.isfinite(self.losses).nonzero()
        return self.points[int(finite[-1])]

    def steps_to(self, loss: float) -> int | None:
        """First step at which the loss is at most ``loss`` (None if never)."""
        hits = (self.losses <= loss).nonzero()
        return int(hits[0]) if len(hits) else None


UpdateFn = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]
OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], Optimizer]

DIVERGED = 1e8  # a coordinate beyond this counts as divergence


def _required_positional(fn: Callable) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in sig.parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.default is p.empty)


def run_optimizer(
    surface: str | Surface,
    optimizer: OptimizerFactory | UpdateFn,
    steps: int,
    *,
    start: Point | None = None,
    noise: float | None = None,
    seed: int = 0,
) -> Trajectory:
    """Run ``steps`` optimization steps on ``surface`` from ``start`` and return the path.

    ``optimizer`` is either

    - a factory that builds a ``torch.optim.Optimizer`` from a list of parameters, e.g.
      ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)`` or an Optimizer class
      whose defaults suit; the step is called with a closure, so ``torch.optim.LBFGS`` works;
    - or an update function ``update(xy, grad, state) -> new_xy`` on detached tensors of
      shape (2,), with ``state`` a dict kept between steps (empty at the start).

    ``noise`` (default: the surface's own) adds seeded Gaussian noise to every gradient; the
    recorded losses are always the exact ones.
    """
    surface = get_surface(surface, noise)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    generator = torch.Generator().manual_seed(seed)
    point = torch.tensor(start if start is not None else surface.start, dtype=DTYPE)
    points = torch.full((steps + 1, 2), float("nan"), dtype=DTYPE)
    losses = torch.full((steps + 1,), float("nan"), dtype=DTYPE)
    points[0] = point
    losses[0] = surface.loss(point)

    def noisy(grad: torch.Tensor) -> torch.Tensor:
        if surface.noise:
            grad = grad + surface.noise * torch.randn(2, generator=generator, dtype=DTYPE)
        return grad

    if _required_positional(optimizer) >= 2 and not isinstance(optimizer, type):
        state: dict = {}

        def advance(xy: torch.Tensor) -> torch.Tensor:
            new = optimizer(xy.clone(), noisy(surface.grad(xy)), state)
            return torch.as_tensor(new, dtype=DTYPE).detach().reshape(2)
    else:
        param = torch.nn.Parameter(point.clone())
        opt = optimizer([param])
        if not isinstance(opt, Optimizer):
            raise TypeError("optimizer must build a torch.optim.Optimizer from a list of "
                            "parameters, or be an update function update(xy, grad, state); "
                            f"got {type(opt).__name__}.")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = surface.loss(param)
            loss.backward()
            param.grad = noisy(param.grad)
            return loss

        def advance(xy: torch.Tensor) -> torch.Tensor:
            opt.step(closure)
            return param.detach().clone()

    for t in range(1, steps + 1):
        point = advance(point)
        loss = surface.loss(point)
        if not (torch.isfinite(point).all() and point.abs().max() < DIVERGED
                and torch.isfinite(loss)):
            break
        points[t] = point
        losses[t] = loss
    return Trajectory(points, losses)
