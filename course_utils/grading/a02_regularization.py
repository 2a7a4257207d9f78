"""Assignment 2 -- Regularization and normalization: questions, tests, library references.

Every expected value is computed by a library, never by a copy of the solution:

==============================  =======================================================
student function                reference
==============================  =======================================================
``dropout_forward/backward``    ``F.dropout`` under a seed whose mask is the one given to
                                the student (``bernoulli_(1 - p)`` draws the same mask),
                                its gradient by autograd; in eval mode ``F.dropout(...,
                                training=False)``; the statistics of the student's own
                                masks against those of ``F.dropout``
``batch_norm_forward``          ``F.batch_norm`` in train and eval mode, running statistics
                                updated in place by the library
``batch_norm_backward``         autograd through ``F.batch_norm(training=True)``
``group_norm``                  ``F.group_norm``; one group against ``F.layer_norm``
``l2_penalty``, ``sgd_...``     ``torch.optim.SGD(weight_decay=lambda)``
``ema_update``                  ``torch.optim.swa_utils.AveragedModel`` with
                                ``get_ema_multi_avg_fn(decay)``
==============================  =======================================================

Every input, hyperparameters included, is drawn from the case seed. The edge values a real
run meets are included: ``p = 0`` and ``p`` close to 1, a batch of one in eval mode, 2-, 3-
and 4-D tensors, a large ``eps`` next to channels of tiny variance, long EMA runs.

Grading policy (stated in the notebook, enforced by ``policy.py`` and ``probe.py``): each
answer may not use the library function it re-implements (see ``forbidden`` below).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .core import (
    Assignment,
    Case,
    Question,
    StudentError,
    call_student,
    check_tensor,
    compare_trajectory,
    student_function,
)


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + 200 + salt)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return round(float(torch.empty((), dtype=torch.float64).uniform_(low, high,
                                                                     generator=gen)), 4)


def _int_seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (), generator=gen))


def _pair(result: Any, n: int, where: str, name: str, what: str) -> tuple:
    if not (isinstance(result, tuple) and len(result) == n):
        raise StudentError(f"{where}: `{name}` must return {what}, but returned "
                           f"{type(result).__name__}"
                           + (" (did you forget `return`?)" if result is None else ""))
    return result


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _first_difference(g: Any, e: torch.Tensor, at: str, name: str, rtol: float,
                      atol: float) -> str | None:
    if not isinstance(g, torch.Tensor) or g.shape != e.shape:
        shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        return f"{at}: expected shape {tuple(e.shape)}, got {shape}"
    close = torch.isclose(g.double(), e.double(), rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    # The entry furthest outside its tolerance (not the largest difference).
    diff = ((g.double() - e.double()).abs() / (atol + rtol * e.double().abs())
            ).nan_to_num(float("inf"))
    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) \
        if diff.ndim else ()
    index = "[" + ", ".join(map(str, idx)) + "]" if idx else ""
    message = (f"{at}: expected {name}{index} = {_fmt(float(e[idx]))}, got "
               f"{_fmt(float(g[idx]))} ({int((~close).sum())} of {close.numel()} entries "
               "differ)")
    if not bool(torch.isfinite(g).all()):
        message += " (your result has nan or inf entries: a division by zero?)"
    return message


def compare_parts(got: Any, expected: Mapping[str, Any], *, rtol: float = 1e-4,
                  atol: float = 1e-5, hints: Mapping[str, Any] | None = None) -> str | None:
    """Compare named tensors, or lists of them (one per step, compared step by step); name
    the first difference, with the hint for that result (a string, or a function of the step)."""
    if not isinstance(got, dict):
        return f"expected the results {', '.join(expected)}, got {type(got).__name__}"
    hints = hints or {}
    steps = {name: exp if isinstance(exp, list) else [exp] for name, exp in expected.items()}
    values = {}
    for name, exp in expected.items():
        value = got.get(name) if isinstance(exp, list) else [got.get(name)]
        if not isinstance(value, list) or len(value) != len(steps[name]):
            return f"{name}: expected {len(steps[name])} results, got {type(value).__name__}"
        values[name] = value
    for k in range(max(len(v) for v in steps.values())):
        for name, exp_list in steps.items():
            if k >= len(exp_list):
                continue
            at = (f"{name} at step {k + 1} of {len(exp_list)}"
                  if isinstance(expected[name], list) else name)
            message = _first_difference(values[name][k], exp_list[k], at, name, rtol, atol)
            if message:
                hint = hints.get(name, "")
                hint = hint(k) if callable(hint) else hint
                return message + (f". Hint: {hint}" if hint else "")
    return None


# --------------------------------------------------------------------------------------
# Q1: inverted dropout
# --------------------------------------------------------------------------------------

DROPOUT_FORBIDDEN = ("torch.nn.functional.dropout", "torch.nn.functional.dropout1d",
                     "torch.nn.functional.dropout2d", "torch.nn.functional.dropout3d",
                     "torch.nn.functional.alpha_dropout",
                     "torch.nn.functional.feature_alpha_dropout", "torch.nn.modules.dropout",
                     "torch.dropout", "torch.native_dropout")


def _dropout_call(ns: Mapping[str, Any], x: torch.Tensor, p: float, training: bool,
                  mask: torch.Tensor | None, grad_out: torch.Tensor,
                  where: str) -> tuple[torch.Tensor, torch.Tensor]:
    forward = student_function(ns, "dropout_forward")
    backward = student_function(ns, "dropout_backward")
    kwargs = {"training": training} if mask is None else {"training": training, "mask": mask}
    result = call_student(forward, where, x.clone(), p, **kwargs)
    out, cache = _pair(result, 2, where, "dropout_forward", "a pair (out, cache)")
    check_tensor(out, x, where, "the output of `dropout_forward`")
    grad = call_student(backward, where, grad_out.clone(), cache)
    check_tensor(grad, x, where, "the gradient returned by `dropout_backward`")
    return out.detach().clone(), grad.detach().clone()


def _dropout_reference(x: torch.Tensor, p: float, training: bool, seed: int,
                       grad_out: torch.Tensor) -> dict[str, torch.Tensor]:
    import torch.nn.functional as F  # noqa: N812

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        leaf = x.clone().requires_grad_(True)
        out = F.dropout(leaf, p, training=training)
        (grad,) = torch.autograd.grad(out, leaf, grad_out)
    return {"out": out.detach(), "grad": grad}


MASK_HINTS = {
    "out": "with the mask given, out = x * mask / (1 - p): check the scale (the mask keeps a "
           "unit with probability 1 - p)",
    "grad": "the backward pass multiplies by the same mask and the same scale as the forward "
            "pass: keep the mask in the cache, never draw a new one",
}
EVAL_HINTS = {
    "out": "in eval mode (training=False) dropout is the identity: out = x",
    "grad": "in eval mode the gradient passes through unchanged",
}


def _mask_case(gen: torch.Generator, shape: tuple[int, ...], p: float) -> Case:
    seed = _int_seed(gen)
    x = torch.randn(shape, generator=gen)
    grad_out = torch.randn(shape, generator=gen)
    mask = torch.empty(shape).bernoulli_(1 - p, generator=torch.Generator().manual_seed(seed))

    def run(ns: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out, grad = _dropout_call(ns, x, p, True, mask.clone(), grad_out, "with a given mask")
        return {"out": out, "grad": grad}

    label = (f"dropout_forward(x, p={p:g}, training=True, mask=...) and dropout_backward on "
             f"shape {shape}, the mask given")
    return Case(label, run, functools.partial(_dropout_reference, x, p, True, seed, grad_out),
                functools.partial(compare_parts, rtol=1e-5, atol=1e-6, hints=MASK_HINTS))


def _eval_case(gen: torch.Generator, shape: tuple[int, ...], p: float) -> Case:
    x = torch.randn(shape, generator=gen)
    grad_out = torch.randn(shape, generator=gen)

    def run(ns: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out, grad = _dropout_call(ns, x, p, False, None, grad_out, "in eval mode")
        return {"out": out, "grad": grad}

    label = f"dropout_forward(x, p={p:g}, training=False) (eval mode) on shape {shape}"
    return Case(label, run, functools.partial(_dropout_reference, x, p, False, 0, grad_out),
                functools.partial(compare_parts, rtol=0, atol=0, hints=EVAL_HINTS))


SAMPLES, STAT_SHAPE = 200, (64, 32)


def _dropout_statistics(outs: list[torch.Tensor], grads: list[torch.Tensor],
                        x: torch.Tensor) -> dict[str, float]:
    """Fraction dropped, mean of out / x, and entries where grad != out / x (mask reused)."""
    out, grad = torch.stack(outs).double(), torch.stack(grads).double()
    ratio = out / x.double()
    return {"dropped": float((out == 0).double().mean()), "mean_ratio": float(ratio.mean()),
            "mismatch": float((~torch.isclose(grad, ratio, rtol=1e-5, atol=1e-6)).sum())}


def _statistics_case(gen: torch.Generator, p: float) -> Case:
    seed = _int_seed(gen)
    x = torch.rand(STAT_SHAPE, generator=gen) * 1.5 + 0.5  # no zeros: a zero marks a drop
    ones = torch.ones(STAT_SHAPE)

    def run(ns: Mapping[str, Any]) -> dict[str, float]:
        torch.manual_seed(seed)
        outs, grads = [], []
        for k in range(SAMPLES):
            out, grad = _dropout_call(ns, x, p, True, None, ones, f"call {k + 1}")
            outs.append(out)
            grads.append(grad)
        return _dropout_statistics(outs, grads, x)

    def reference() -> dict[str, float]:
        import torch.nn.functional as F  # noqa: N812

        outs, grads = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            for _ in range(SAMPLES):
                leaf = x.clone().requires_grad_(True)
                out = F.dropout(leaf, p, training=True)
                outs.append(out.detach())
                grads.append(torch.autograd.grad(out, leaf, ones)[0])
        return _dropout_statistics(outs, grads, x)

    def compare(got: Any, expected: dict[str, float]) -> str | None:
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"expected statistics {sorted(expected)}, got {type(got).__name__}"
        n = SAMPLES * x.numel()
        # Both sides are estimates from n draws; 8 standard deviations of their difference:
        # a correct answer fails with probability below 1e-14, whatever the seed.
        tol_drop = 8 * (2 * p * (1 - p) / n) ** 0.5 + 1e-12
        tol_mean = 8 * (2 * p / ((1 - p) * n)) ** 0.5 + 1e-9
        if got["mismatch"] != 0:
            return (f"expected the gradient to reuse the forward pass's mask, but in "
                    f"{int(got['mismatch'])} of {n} entries the gradient of "
                    "dropout_backward (for an upstream gradient of ones) is not the factor the "
                    "forward pass applied (out / x). Hint: reuse the forward pass's mask, "
                    "kept in the cache")
        if abs(got["dropped"] - expected["dropped"]) > tol_drop:
            return (f"over {SAMPLES} calls, expected a fraction {expected['dropped']:.4f} of "
                    f"the units zeroed (as by F.dropout; p = {p:g} is the probability of "
                    f"dropping), got {got['dropped']:.4f}. Hint: keep a unit when "
                    "torch.rand(...) >= p")
        if abs(got["mean_ratio"] - expected["mean_ratio"]) > tol_mean:
            return (f"averaged over {SAMPLES} calls, expected out / x = "
                    f"{expected['mean_ratio']:.4f} (as for F.dropout: inverted dropout keeps "
                    f"the expected activation, E[out] = x), got {got['mean_ratio']:.4f}. "
                    "Hint: divide the kept units by 1 - p")
        return None

    label = (f"dropout_forward(x, p={p:g}) drawing its own masks, {SAMPLES} calls on shape "
             f"{STAT_SHAPE}: fraction dropped, E[out] = x, backward reuses the mask")
    return Case(label, run, reference, compare, weight=2.0)


def _dropout_cases(seed: int) -> list[Case]:
    gen = _generator(seed, 1)
    low, high = _uniform(gen, 0.1, 0.4), _uniform(gen, 0.6, 0.9)
    return [
        _mask_case(gen, (16, 10), low),
        _mask_case(gen, (8, 4, 5, 5), high),
        _mask_case(gen, (12, 7), 0.0),
        _mask_case(gen, (32, 50), 0.99),
        _eval_case(gen, (5, 3, 4, 4), high),
        _eval_case(gen, (1, 20), low),  # a batch of one at test time
        _statistics_case(gen, _uniform(gen, 0.15, 0.4)),
        _statistics_case(gen, _uniform(gen, 0.6, 0.9)),
    ]


# --------------------------------------------------------------------------------------
# Q2: batch norm forward, train and eval, with running statistics
# --------------------------------------------------------------------------------------

BN_FORBIDDEN = ("torch.nn.functional.batch_norm", "torch.nn.functional.instance_norm",
                "torch.nn.modules.batchnorm", "torch.nn.modules.instancenorm",
                "torch.batch_norm", "torch.native_batch_norm", "torch.instance_norm")


def _batches(gen: torch.Generator, shapes: list[tuple[int, ...]], channels: int,
             tiny: bool = True) -> list[torch.Tensor]:
    """Batches whose channels have their own mean and spread (with ``tiny``, one tiny)."""
    shift = torch.randn(channels, generator=gen) * 3
    scale = torch.rand(channels, generator=gen) * 2 + 0.5
    if tiny:
        scale[0] = 0.01  # a channel of tiny variance: where eps goes matters there
    out = []
    for shape in shapes:
        view = [1, channels] + [1] * (len(shape) - 2)
        out.append(torch.randn(shape, generator=gen) * scale.view(view) + shift.view(view))
    return out


def _bn_hints(train_steps: int) -> dict[str, Callable[[int], str]]:
    def out_hint(k: int) -> str:
        if k < train_steps:
            return ("training mode: normalize with the batch mean and the biased (1/m) "
                    "variance over every axis but the channel axis (N, H, W), eps inside the "
                    "square root")
        return ("eval mode: normalize with the running statistics, not the batch's own "
                "(a batch of one at test time must work)")

    def stat_hint(k: int) -> str:
        if k < train_steps:
            return ("running = (1 - momentum) * running + momentum * batch statistic; the "
                    "running variance uses the unbiased (1/(m-1)) batch variance")
        return "eval mode leaves the running statistics unchanged"

    return {"out": out_hint, "running_mean": stat_hint, "running_var": stat_hint}


def _bn_forward_case(gen: torch.Generator, train_shapes: list[tuple[int, ...]],
                     eval_shapes: list[tuple[int, ...]], momentum: float, eps: float) -> Case:
    channels = train_shapes[0][1]
    batches = _batches(gen, train_shapes + eval_shapes, channels)
    modes = [True] * len(train_shapes) + [False] * len(eval_shapes)
    gamma = torch.randn(channels, generator=gen) * 0.5 + 1
    beta = torch.randn(channels, generator=gen)
    mean0 = torch.randn(channels, generator=gen) * 0.1
    var0 = torch.rand(channels, generator=gen) + 0.5

    def run(ns: Mapping[str, Any]) -> dict[str, list[torch.Tensor]]:
        fn = student_function(ns, "batch_norm_forward")
        rm, rv = mean0.clone(), var0.clone()
        got: dict[str, list[torch.Tensor]] = {"out": [], "running_mean": [], "running_var": []}
        for k, (x, training) in enumerate(zip(batches, modes, strict=True)):
            where = f"step {k + 1} ({'train' if training else 'eval'}, batch {tuple(x.shape)})"
            result = call_student(fn, where, x.clone(), gamma.clone(), beta.clone(), rm.clone(),
                                  rv.clone(), training=training, momentum=momentum, eps=eps)
            out, rm, rv = _pair(result, 3, where, "batch_norm_forward",
                                "a triple (out, new_running_mean, new_running_var)")
            check_tensor(out, x, where, "the output of `batch_norm_forward`")
            check_tensor(rm, mean0, where, "the new running mean")
            check_tensor(rv, var0, where, "the new running variance")
            rm, rv = rm.detach().clone(), rv.detach().clone()
            got["out"].append(out.detach().clone())
            got["running_mean"].append(rm)
            got["running_var"].append(rv)
        return got

    def reference() -> dict[str, list[torch.Tensor]]:
        import torch.nn.functional as F  # noqa: N812

        rm, rv = mean0.clone(), var0.clone()
        expected: dict[str, list[torch.Tensor]] = {"out": [], "running_mean": [],
                                                   "running_var": []}
        for x, training in zip(batches, modes, strict=True):
            expected["out"].append(F.batch_norm(x, rm, rv, gamma, beta, training, momentum, eps))
            expected["running_mean"].append(rm.clone())
            expected["running_var"].append(rv.clone())
        return expected

    label = (f"batch_norm_forward(momentum={momentum:g}, eps={eps:g}): {len(train_shapes)} "
             f"training batches of shape {train_shapes[0]}"
             + (" (and others)" if len(set(train_shapes)) > 1 else "")
             + f", then eval on {', '.join(str(s) for s in eval_shapes)}")
    return Case(label, run, reference,
                functools.partial(compare_parts, rtol=1e-4, atol=5e-4,
                                  hints=_bn_hints(len(train_shapes))))


def _bn_forward_cases(seed: int) -> list[Case]:
    gen = _generator(seed, 2)
    mom = _uniform(gen, 0.05, 0.5)
    eps = float(10 ** -_uniform(gen, 3, 6))
    return [
        _bn_forward_case(gen, [(16, 6)] * 5, [(7, 6), (1, 6)], 0.1, 1e-5),
        _bn_forward_case(gen, [(8, 4, 5, 5)] * 4, [(3, 4, 5, 5), (1, 4, 5, 5)], mom, eps),
        # Small batches: the unbiased factor m / (m - 1) is 2 for m = 2.
        _bn_forward_case(gen, [(2, 5), (3, 5), (2, 5)], [(4, 5)], _uniform(gen, 0.2, 0.8),
                         1e-5),
        # A large eps next to a channel of tiny variance; 3-D input (N, C, L).
        _bn_forward_case(gen, [(4, 3, 9)] * 3, [(2, 3, 9)], 0.1, 0.1),
        # A long run: the running statistics converge to the data's.
        _bn_forward_case(gen, [(4, 3, 6, 6)] * 60, [(1, 3, 6, 6)], 0.1, 1e-5),
    ]


# --------------------------------------------------------------------------------------
# Q3: batch norm backward (training mode)
# --------------------------------------------------------------------------------------

BN_BACKWARD_FORBIDDEN = (*BN_FORBIDDEN, "torch.autograd.grad", "torch.autograd.backward",
                         "torch.Tensor.backward", "torch.autograd.functional", "torch.func")

BACKWARD_HINTS = {
    "grad_x": "the batch mean and variance depend on every x in the batch: their gradients add "
              "two terms to gamma * grad_out / sqrt(var + eps)",
    "grad_gamma": "grad_gamma sums grad_out * x_hat over every axis but the channel axis",
    "grad_beta": "grad_beta sums grad_out over every axis but the channel axis",
}


def _bn_backward_case(gen: torch.Generator, shape: tuple[int, ...], eps: float) -> Case:
    # A tiny variance only next to a large eps: float32 rounding, amplified by
    # 1 / sqrt(var + eps), would otherwise decide the comparison.
    (x,) = _batches(gen, [shape], shape[1], tiny=eps >= 0.01)
    gamma = torch.randn(shape[1], generator=gen) * 0.5 + 1
    beta = torch.randn(shape[1], generator=gen)
    grad_out = torch.randn(shape, generator=gen)

    def run(ns: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = student_function(ns, "batch_norm_backward")
        where = f"on a batch of shape {shape}"
        result = call_student(fn, where, grad_out.clone(), x.clone(), gamma.clone(), eps=eps)
        gx, gg, gb = _pair(result, 3, where, "batch_norm_backward",
                           "a triple (grad_x, grad_gamma, grad_beta)")
        check_tensor(gx, x, where, "grad_x")
        check_tensor(gg, gamma, where, "grad_gamma")
        check_tensor(gb, gamma, where, "grad_beta")
        return {"grad_x": gx.detach().clone(), "grad_gamma": gg.detach().clone(),
                "grad_beta": gb.detach().clone()}

    def reference() -> dict[str, torch.Tensor]:
        import torch.nn.functional as F  # noqa: N812

        leaves = [t.double().requires_grad_(True) for t in (x, gamma, beta)]
        out = F.batch_norm(leaves[0], None, None, leaves[1], leaves[2], True, 0.1, eps)
        gx, gg, gb = torch.autograd.grad(out, leaves, grad_out.double())
        return {"grad_x": gx, "grad_gamma": gg, "grad_beta": gb}

    return Case(f"batch_norm_backward on shape {shape}, eps={eps:g}", run, reference,
                functools.partial(compare_parts, rtol=1e-3, atol=5e-4, hints=BACKWARD_HINTS))


def _bn_backward_cases(seed: int) -> list[Case]:
    gen = _generator(seed, 3)
    return [_bn_backward_case(gen, (32, 5), 1e-5),
            _bn_backward_case(gen, (6, 3, 4, 4), float(10 ** -_uniform(gen, 3, 6))),
            _bn_backward_case(gen, (2, 4), 1e-5),  # two samples: m - 1 vs m matters
            _bn_backward_case(gen, (4, 5, 7), 1e-5),
            _bn_backward_case(gen, (3, 2, 3, 3), 0.1)]


# --------------------------------------------------------------------------------------
# Q4: group norm (layer norm and instance norm as special cases)
# --------------------------------------------------------------------------------------

GN_FORBIDDEN = (*BN_FORBIDDEN, "torch.nn.functional.group_norm",
                "torch.nn.functional.layer_norm", "torch.nn.functional.rms_norm",
                "torch.nn.modules.normalization", "torch.group_norm", "torch.layer_norm",
                "torch.native_group_norm", "torch.native_layer_norm")

GN_HINTS = {"out": "each sample's channels split into num_groups consecutive blocks (channels "
                   "0 .. C/G - 1 form group 0); normalize each block of each sample over its "
                   "channels and positions with the biased variance; gamma and beta are "
                   "per channel"}


def _group_norm_case(gen: torch.Generator, shape: tuple[int, ...], groups: int, eps: float,
                     layer_norm: bool = False) -> Case:
    (x,) = _batches(gen, [shape], shape[1])
    x = x + torch.randn(shape[0], *[1] * (len(shape) - 1), generator=gen) * 2  # per sample
    if layer_norm:
        gamma, beta = torch.ones(shape[1]), torch.zeros(shape[1])
    else:
        gamma = torch.randn(shape[1], generator=gen) * 0.5 + 1
        beta = torch.randn(shape[1], generator=gen)

    def run(ns: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        fn = student_function(ns, "group_norm")
        where = f"on shape {shape} with num_groups={groups}"
        out = call_student(fn, where, x.clone(), groups, gamma.clone(), beta.clone(), eps=eps)
        check_tensor(out, x, where, "the output of `group_norm`")
        return {"out": out.detach().clone()}

    def reference() -> dict[str, torch.Tensor]:
        import torch.nn.functional as F  # noqa: N812

        if layer_norm:
            return {"out": F.layer_norm(x, x.shape[1:], eps=eps)}
        return {"out": F.group_norm(x, groups, gamma, beta, eps)}

    kind = (" (layer norm: against F.layer_norm)" if layer_norm else
            " (instance norm)" if groups == shape[1] else "")
    return Case(f"group_norm on shape {shape}, num_groups={groups}, eps={eps:g}{kind}", run,
                reference, functools.partial(compare_parts, rtol=1e-4, atol=5e-4,
                                             hints=GN_HINTS))


def _group_norm_cases(seed: int) -> list[Case]:
    gen = _generator(seed, 4)
    groups = int(torch.randint(2, 5, (), generator=gen))
    return [_group_norm_case(gen, (4, 6, 5, 5), 3, 1e-5),
            _group_norm_case(gen, (3, 2 * groups, 4, 4), groups, 1e-5),
            _group_norm_case(gen, (2, 6, 10), 2, 1e-5),  # (N, C, L)
            _group_norm_case(gen, (1, 8, 4, 4), 4, 1e-5),  # a batch of one
            _group_norm_case(gen, (3, 4, 3, 3), 4, 1e-5),  # G = C
            _group_norm_case(gen, (3, 4, 5, 5), 1, 1e-5, layer_norm=True),
            _group_norm_case(gen, (2, 6, 3, 3), 2, 0.1)]


# --------------------------------------------------------------------------------------
# Q5: the L2 penalty's gradient is SGD's weight decay
# --------------------------------------------------------------------------------------

L2_FIRST = ("the first step is already off: with the penalty (lambda / 2) * sum of squares, "
            "SGD's step is param - lr * (grad + lambda * param)")
L2_LATER = "{matched}, then the paths drift apart"
CONV = (8, 3, 3, 3)


def _gradients(output: torch.Tensor, inputs: list[torch.Tensor]) -> tuple:
    """``torch.autograd.grad(output, inputs, allow_unused=True)`` through the engine itself.

    The grader's runner blocks every question's forbidden names once the cells have run,
    question 3's ``torch.autograd.grad`` included; the engine call below is what that
    function does, and a C method, which the block leaves alone.
    """
    from torch.autograd.variable import Variable

    return Variable._execution_engine.run_backward(  # noqa: SLF001
        (output,), (torch.ones_like(output),), False, False, tuple(inputs), True, False)


def _penalty_case(gen: torch.Generator, shapes: list[tuple[int, ...]], lr: float, lam: float,
                  steps: int) -> Case:
    starts = [torch.randn(s, generator=gen) for s in shapes]
    curvature = [torch.rand(s, generator=gen) + 0.2 for s in shapes]
    target = [torch.randn(s, generator=gen) for s in shapes]

    def data_grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
        return [c * (p - t) for p, c, t in zip(params, curvature, target, strict=True)]

    def run(ns: Mapping[str, Any]) -> list[torch.Tensor]:
        fn = student_function(ns, "l2_penalty")
        params, path = [s.clone() for s in starts], []
        for k in range(steps):
            leaves = [p.clone().requires_grad_(True) for p in params]
            penalty = call_student(fn, f"step {k + 1}", leaves, lam=lam)
            if not (isinstance(penalty, torch.Tensor) and penalty.dim() == 0
                    and penalty.requires_grad):
                raise StudentError(f"step {k + 1}: `l2_penalty` should return a 0-dim tensor "
                                   "that autograd can differentiate (no .item(), no "
                                   f"torch.no_grad), got {type(penalty).__name__}"
                                   + (f" of shape {tuple(penalty.shape)}"
                                      if isinstance(penalty, torch.Tensor) else ""))
            grads = _gradients(penalty, leaves)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads,
                                                                            strict=True)]
            params = [p - lr * (d + g) for p, d, g in zip(params, data_grads(params), grads,
                                                          strict=True)]
            path.append(torch.cat([p.detach().flatten() for p in params]))
        return torch.stack(path)

    def reference() -> torch.Tensor:
        params = [s.clone().requires_grad_(True) for s in starts]
        opt = torch.optim.SGD(params, lr=lr, weight_decay=lam)
        path = []
        for _ in range(steps):
            for p, g in zip(params, data_grads([p.detach() for p in params]), strict=True):
                p.grad = g.clone()
            opt.step()
            path.append(torch.cat([p.detach().flatten() for p in params]))
        return torch.stack(path)

    label = (f"SGD(lr={lr:g}) on a quadratic loss + l2_penalty(params, lam={lam:g}), params of "
             f"shapes {', '.join(str(s) for s in shapes)}, {steps} steps, against "
             "SGD(weight_decay=lam)")
    return Case(label, run, reference,
                functools.partial(compare_trajectory, hint_first=L2_FIRST, hint_later=L2_LATER))


def _decay_step_case(gen: torch.Generator, shape: tuple[int, ...], lr: float, wd: float,
                     steps: int) -> Case:
    start = torch.randn(shape, generator=gen)
    noise = torch.randn((steps, *shape), generator=gen)

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "sgd_weight_decay_step")
        param, path = start.clone(), []
        for k in range(steps):
            where = f"step {k + 1}"
            param = call_student(fn, where, param.clone(), noise[k].clone(), lr=lr,
                                 weight_decay=wd)
            check_tensor(param, start, where, "the new parameter")
            param = param.detach().clone()
            path.append(param)
        return torch.stack(path)

    def reference() -> torch.Tensor:
        p = start.clone().requires_grad_(True)
        opt = torch.optim.SGD([p], lr=lr, weight_decay=wd)
        path = []
        for k in range(steps):
            p.grad = noise[k].clone()
            opt.step()
            path.append(p.detach().clone())
        return torch.stack(path)

    label = (f"sgd_weight_decay_step(lr={lr:g}, weight_decay={wd:g}) on shape {shape}, {steps} "
             "steps on random gradients")
    hint = ("the step is param - lr * (grad + weight_decay * param): the decay enters once")
    return Case(label, run, reference,
                functools.partial(compare_trajectory, hint_first=hint, hint_later=L2_LATER))


def _l2_cases(seed: int) -> list[Case]:
    gen = _generator(seed, 5)
    lam, wd = _uniform(gen, 0.01, 0.3), _uniform(gen, 1e-3, 0.1)
    return [
        _penalty_case(gen, [(5, 3), (4,)], 0.1, lam, 20),
        _penalty_case(gen, [CONV], 0.05, _uniform(gen, 1e-4, 1e-2), 50),
        _penalty_case(gen, [(6,)], 0.1, 0.0, 10),
        _decay_step_case(gen, (5, 3), _uniform(gen, 0.01, 0.2), wd, 30),
        _decay_step_case(gen, CONV, 0.05, 5e-4, 200),
        _decay_step_case(gen, (7,), 0.1, 0.0, 10),
    ]


# --------------------------------------------------------------------------------------
# Q6: an exponential moving average of the weights
# --------------------------------------------------------------------------------------

EMA_HINTS = ("the first call (average=None) starts the average at the weights themselves, "
             "as AveragedModel does", "{matched}, then the paths drift apart: the new average "
             "is decay * average + (1 - decay) * param")


def _ema_case(gen: torch.Generator, shape: tuple[int, ...], decay: float, steps: int) -> Case:
    walk = torch.randn(shape, generator=gen) + torch.cumsum(
        torch.randn((steps, *shape), generator=gen) * 0.1, dim=0)

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "ema_update")
        average, path = None, []
        for k in range(steps):
            where = f"step {k + 1}"
            average = call_student(fn, where, None if average is None else average.clone(),
                                   walk[k].clone(), decay=decay)
            check_tensor(average, walk[k], where, "the new average")
            average = average.detach().clone()
            path.append(average)
        return torch.stack(path)

    def reference() -> torch.Tensor:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        model = torch.nn.Module()
        model.weight = torch.nn.Parameter(walk[0].clone())
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        path = []
        for k in range(steps):
            with torch.no_grad():
                model.weight.copy_(walk[k])
            ema.update_parameters(model)
            path.append(ema.module.weight.detach().clone())
        return torch.stack(path)

    label = (f"ema_update(decay={decay:g}) over {steps} steps of weights of shape {shape}, "
             "against AveragedModel(get_ema_multi_avg_fn)")
    return Case(label, run, reference,
                functools.partial(compare_trajectory, rtol=1e-4, atol=5e-4,
                                  hint_first=EMA_HINTS[0], hint_later=EMA_HINTS[1]))


def _ema_cases(seed: int) -> list[Case]:
    gen = _generator(seed, 6)
    return [_ema_case(gen, (10,), _uniform(gen, 0.5, 0.95), 50),
            _ema_case(gen, (4, 5), 0.9, 100),
            _ema_case(gen, (6,), 0.0, 10),  # decay 0: the average is the last weights
            _ema_case(gen, CONV, 0.999, 2000)]  # a long run, as in training


# --------------------------------------------------------------------------------------
# The assignment
# --------------------------------------------------------------------------------------

ASSIGNMENT = Assignment("02_regularization", "Regularization and normalization", [
    Question("q1", "Inverted dropout", 15, _dropout_cases,
             functions=("dropout_forward", "dropout_backward"), forbidden=DROPOUT_FORBIDDEN),
    Question("q2", "Batch norm forward (train and eval)", 20, _bn_forward_cases,
             functions=("batch_norm_forward",), forbidden=BN_FORBIDDEN),
    Question("q3", "Batch norm backward", 15, _bn_backward_cases,
             functions=("batch_norm_backward",), forbidden=BN_BACKWARD_FORBIDDEN),
    Question("q4", "Group norm", 10, _group_norm_cases, functions=("group_norm",),
             forbidden=GN_FORBIDDEN),
    Question("q5", "L2 penalty and weight decay", 10, _l2_cases,
             functions=("l2_penalty", "sgd_weight_decay_step"), forbidden=("torch.optim",)),
    Question("q6", "EMA of the weights", 10, _ema_cases, functions=("ema_update",),
             forbidden=("torch.optim.swa_utils",)),
    Question("q7", "Regularization at work (written)", 20,
             manual_note="Read the student's answer next to the model answer in "
                         "solutions/02_regularization.ipynb."),
])
