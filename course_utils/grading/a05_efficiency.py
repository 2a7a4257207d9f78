"""Assignment 5 -- Compressing a network: questions, tests, and their references.

Every expected value is computed by a library, or by an algorithm other than the solution's:

========================  ==============================================================
student function          reference
========================  ==============================================================
``magnitude_prune_mask``  ``torch.nn.utils.prune.l1_unstructured`` on a module holding the
                          weight; the tie rule (among equal magnitudes, the entry that
                          comes first in ``weight.flatten()`` is pruned first) is given to
                          it as ``importance_scores``: ``|w|`` in float64 plus the flat index
                          times a step smaller than any gap between distinct magnitudes
``qparams``               ``torch.ao.quantization.MinMaxObserver(dtype=torch.qint8)``
                          observing a tensor with that minimum and maximum
``quantize``              ``torch.quantize_per_tensor(x, scale, zero_point, torch.qint8)
                          .int_repr()``
``dequantize``            ``torch._make_per_tensor_quantized_tensor(q, scale, zero_point)
                          .dequantize()``
``share_weights``         scikit-learn's ``KMeans(init=centroids, n_init=1,
                          max_iter=n_iter, tol=0, algorithm="lloyd")`` fitted on the
                          nonzero weights (float64); the zeros stay zero. One case where
                          a cluster empties (scikit-learn would move its centroid): a
                          vectorized Lloyd loop (``index_add_``) that keeps it
``huffman_bits``          the optimal total of a Huffman code, computed as the sum of the
                          weights of the merged nodes (``heapq``), not from code lengths
``winograd_1d``,          ``F.conv1d`` / ``F.conv2d`` (valid cross-correlation)
``winograd_2d``
``distillation_loss``     ``alpha * T**2 * F.kl_div(F.log_softmax(z_s / T),
                          F.log_softmax(z_t / T), reduction="batchmean", log_target=True)
                          + (1 - alpha) * F.cross_entropy(z_s, y)``: the loss and its
                          gradient with respect to the student's logits
========================  ==============================================================

Every input (shapes, sparsities, scales, temperatures, initial centroids) is drawn from the
seed. Inputs a real run meets are included: weights already pruned to exact zeros, many ties
on a grid of values, sparsity 0 and 1, values that saturate int8, an all-zero layer, a
single-symbol layer, confident teachers at high temperature. Inputs whose expected value
would depend on a convention the notebook does not fix are redrawn: no value lies halfway
between two integers when quantized, and no k-means cluster becomes empty in the cases
compared with scikit-learn (which would move its centroid; the notebook asks to keep it, and
one case, with its own reference, checks that).

Grading policy (stated in the notebook): an answer may not hand its question to the library
that does it. The Python-level libraries are each question's ``forbidden`` list (checked and
blocked by ``policy.py`` and ``probe.py``); the C builtins among them
(``torch.quantize_per_tensor``, ``F.conv2d``, ...), which the block cannot replace, are
unbound from their modules while the student's function runs (:func:`_refusing`).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import importlib
import math
import reprlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .core import (
    Assignment,
    Case,
    Question,
    StudentError,
    call_student,
    compare_tensor,
    integer,
    real_number,
    student_function,
)
from .draw import choice, generator, randint, uniform
from .policy import policy_text

QMIN, QMAX = -128, 127  # torch.qint8


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ("," if t.ndim == 1 else "") + ")"


def _index(where: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in where) + "]"


def _with_hint(message: str, hint: str) -> str:
    return message + (f". Hint: {hint}" if hint else "")


def _tensor_like(value: Any, shape: tuple[int, ...], dtype: torch.dtype, where: str,
                 what: str) -> torch.Tensor:
    """``value`` if it is a tensor of ``shape`` and ``dtype``, else a StudentError."""
    if not isinstance(value, torch.Tensor):
        extra = " (did you forget `return`?)" if value is None else ""
        raise StudentError(f"{where}: {what} should be a tensor of shape {shape} and dtype "
                           f"{dtype}, got {type(value).__name__}{extra}")
    if tuple(value.shape) != tuple(shape):
        raise StudentError(f"{where}: {what} has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype != dtype:
        raise StudentError(f"{where}: {what} has dtype {value.dtype}, expected {dtype}")
    return value


def _refusal(name: str, forbidden: tuple[str, ...]) -> Any:
    message = f"grading policy: {policy_text(forbidden)} (it called {name})"

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)

    return refused


@contextlib.contextmanager
def _refusing(builtins: tuple[str, ...], forbidden: tuple[str, ...]) -> Iterator[None]:
    """While the student's function runs, the C builtins it may not use raise.

    ``policy.block`` replaces the code of Python functions, which C builtins do not have;
    here their names are rebound in their modules for the duration of the call and restored
    afterwards (the tests also call ``run`` in the test process).
    """
    saved = []
    try:
        for qualified in builtins:
            module_name, attr = qualified.rsplit(".", 1)
            module = importlib.import_module(module_name)
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, _refusal(qualified, forbidden))
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


def _call(fn: Any, where: str, builtins: tuple[str, ...], forbidden: tuple[str, ...],
          *args: Any, **kwargs: Any) -> Any:
    with _refusing(builtins, forbidden):
        return call_student(fn, where, *args, **kwargs)


# --------------------------------------------------------------------------------------
# Q1: magnitude pruning mask, against torch.nn.utils.prune.l1_unstructured
# --------------------------------------------------------------------------------------

COURSE = ("course_utils.compress",)
PRUNE_FORBIDDEN = ("torch.nn.utils.prune", *COURSE)
PRUNE_HINT = ("prune the round(s * n) entries of smallest |w| (Python's round), the first in "
              "flatten() order among equal magnitudes (a stable sort)")


def _prune_reference(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    from torch.nn.utils import prune

    magnitude = weight.abs().flatten().double()
    distinct = torch.unique(magnitude)  # sorted
    gaps = distinct[1:] - distinct[:-1]
    gap = float(gaps.min()) if len(gaps) else 1.0
    step = gap / (2 * weight.numel())  # the index never reorders distinct magnitudes
    scores = magnitude + step * torch.arange(weight.numel(), dtype=torch.float64)
    holder = nn.Module()
    holder.weight = nn.Parameter(weight.double().clone())
    prune.l1_unstructured(holder, "weight", amount=sparsity,
                          importance_scores=scores.view_as(weight))
    return holder.weight_mask.to(weight.dtype)


def compare_mask(got: Any, expected: torch.Tensor, *, weight: torch.Tensor,
                 sparsity: float) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"the mask should be a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"the mask has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    n = weight.numel()
    pruned, want = int((got == 0).sum()), int((expected == 0).sum())
    if pruned != want:
        return _with_hint(f"your mask prunes {pruned} of the {n} weights, expected "
                          f"round({sparsity:g} * {n}) = {want}", PRUNE_HINT)
    differ = (got != expected).nonzero()
    if len(differ) == 0:
        return None
    first = tuple(int(i) for i in differ[0])
    value = float(weight[first])
    verdict = "kept" if float(expected[first]) else "pruned"
    flat = weight.abs().flatten()
    ties = int((flat == abs(value)).sum())
    extra = (f" ({ties} weights have this magnitude: among them prune the first in "
             f"flatten() order)" if ties > 1 else "")
    return _with_hint(f"weight{_index(first)} = {value:.6g} should be {verdict}, your mask "
                      f"says {'kept' if verdict == 'pruned' else 'pruned'}{extra}", PRUNE_HINT)


def _prune_case(label: str, weight: torch.Tensor, sparsity: float) -> Case:
    where = f"magnitude_prune_mask(weight of shape {_shape(weight)}, sparsity={sparsity:g})"

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "magnitude_prune_mask")
        out = _call(fn, where, (), PRUNE_FORBIDDEN, weight.clone(), sparsity)
        if isinstance(out, torch.Tensor) and out.dtype == torch.bool:
            out = out.to(weight.dtype)
        out = _tensor_like(out, tuple(weight.shape), weight.dtype, where,
                           "the mask (the weight's shape and dtype)")
        if not bool(((out == 0) | (out == 1)).all()):
            raise StudentError(f"{where}: the mask should hold only 0.0 (pruned) and 1.0 "
                               "(kept)")
        return out

    return Case(f"{where}: {label}", run, functools.partial(_prune_reference, weight, sparsity),
                functools.partial(compare_mask, weight=weight, sparsity=sparsity))


def _sparsity_for(gen: torch.Generator, n: int, frac_low: float, frac_high: float) -> float:
    """A sparsity s in (0.2, 0.95) whose s * n has a fractional part in the given range."""
    whole = randint(gen, math.ceil(0.2 * n), int(0.95 * n) - 1)
    return round((whole + uniform(gen, frac_low, frac_high)) / n, 6)


def _prune_cases(seed: int) -> list[Case]:
    gen = generator(seed, 1)
    cases = []
    # a linear layer: s * n rounds up (int() or floor is one weight short)
    rows, cols = randint(gen, 20, 80), randint(gen, 20, 120)
    w = torch.randn(rows, cols, generator=gen) * 0.1
    cases.append(_prune_case("a linear layer's weight", w,
                             _sparsity_for(gen, w.numel(), 0.6, 0.9)))
    # a convolution: s * n rounds down (ceil is one weight too many)
    shape = (randint(gen, 4, 16), randint(gen, 1, 8), 3, 3)
    w = torch.randn(shape, generator=gen) * 0.2
    cases.append(_prune_case("a convolution's weight", w,
                             _sparsity_for(gen, w.numel(), 0.1, 0.4)))
    # weights already on a grid: many ties at the threshold
    w = torch.randint(-6, 7, (randint(gen, 8, 20), randint(gen, 8, 20)), generator=gen) / 8
    cases.append(_prune_case("many weights of equal magnitude (ties at the threshold)", w,
                             _sparsity_for(gen, w.numel(), 0.1, 0.4)))
    # iterative pruning: half the weights are already exact zeros
    w = torch.randn(randint(gen, 10, 40), randint(gen, 10, 40), generator=gen)
    w[torch.rand(w.shape, generator=gen) < 0.5] = 0.0
    zeros = int((w == 0).sum())
    cases.append(_prune_case("a weight already half pruned (exact zeros), pruned further", w,
                             round((zeros + randint(gen, 5, 20) + 0.3) / w.numel(), 6)))
    cases.append(_prune_case("a weight already half pruned, at a sparsity below its share of "
                             "zeros (ties among the zeros)", w,
                             round((zeros - randint(gen, 3, 10) + 0.3) / w.numel(), 6)))
    # the ends of the range
    w = torch.randn(randint(gen, 3, 9), randint(gen, 3, 9), generator=gen)
    cases.append(_prune_case("sparsity 0 prunes nothing", w, 0.0))
    cases.append(_prune_case("sparsity 1 prunes everything", w, 1.0))
    # signs matter: a weight of mostly large negative values
    w = torch.randn(randint(gen, 30, 200), generator=gen) - 1.0
    cases.append(_prune_case("a vector of mostly negative weights", w,
                             _sparsity_for(gen, w.numel(), 0.6, 0.9)))
    return cases


# --------------------------------------------------------------------------------------
# Q2: affine int8 quantization, against torch.quantize_per_tensor and MinMaxObserver
# --------------------------------------------------------------------------------------

# Not the whole of ``torch.ao.quantization``: its observer module defines enums, and blocking
# a module replaces the ``Enum.__new__`` its enum classes hold, which breaks every enum in the
# grader's process (``signal.signal`` included). The observers and fake quantization by name:
QUANT_FORBIDDEN = ("torch.ao.quantization.observer.UniformQuantizationObserverBase",
                   "torch.ao.quantization.observer.MinMaxObserver",
                   "torch.ao.quantization.observer.MovingAverageMinMaxObserver",
                   "torch.ao.quantization.observer.HistogramObserver",
                   "torch.ao.quantization.fake_quantize", "torch.quantization", *COURSE)
QUANT_BUILTINS = ("torch.quantize_per_tensor", "torch.quantize_per_tensor_dynamic",
                  "torch.fake_quantize_per_tensor_affine",
                  "torch._make_per_tensor_quantized_tensor", "torch.quantize_per_channel",
                  "torch.fake_quantize_per_channel_affine")
QUANTIZE_HINT = ("q = clamp(round(x / scale) + zero_point, -128, 127): divide first, then round "
                 "(to the nearest integer), add the zero point, clamp, and convert to torch.int8")
DEQUANTIZE_HINT = "x = scale * (q - zero_point), in float32"
QPARAMS_HINT = ("widen the range to include 0, scale = max((max' - min') / 255, eps), "
                "zero_point = -128 - round(min' / scale)")


def _avoid_halfway(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` with values near a rounding tie (x / scale halfway between integers) moved."""
    t = x.double() / scale
    frac = t - torch.floor(t)
    near = (frac - 0.5).abs() < 0.05
    return torch.where(near, x + 0.2 * scale, x).float()


def _quantize_case(label: str, x: torch.Tensor, scale: float, zero_point: int) -> Case:
    where = (f"quantize(x of shape {_shape(x)}, scale={scale:.6g}, "
             f"zero_point={zero_point})")

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "quantize")
        out = _call(fn, where, QUANT_BUILTINS, QUANT_FORBIDDEN, x.clone(), scale, zero_point)
        return _tensor_like(out, tuple(x.shape), torch.int8, where, "the result of `quantize`")

    def reference() -> torch.Tensor:
        with _quiet():
            return torch.quantize_per_tensor(x, scale, zero_point, torch.qint8).int_repr()

    return Case(f"{where}: {label}", run, reference,
                functools.partial(compare_tensor, what="the int8 codes", name="q",
                                  hint=QUANTIZE_HINT, rtol=0, atol=0))


def _dequantize_case(label: str, q: torch.Tensor, scale: float, zero_point: int) -> Case:
    where = (f"dequantize(q of shape {_shape(q)}, scale={scale:.6g}, "
             f"zero_point={zero_point})")

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, "dequantize")
        out = _call(fn, where, QUANT_BUILTINS, QUANT_FORBIDDEN, q.clone(), scale, zero_point)
        return _tensor_like(out, tuple(q.shape), torch.float32, where,
                            "the result of `dequantize`")

    def reference() -> torch.Tensor:
        with _quiet():
            return torch._make_per_tensor_quantized_tensor(q, scale, zero_point).dequantize()

    def compare(got: Any, expected: torch.Tensor) -> str | None:
        message = compare_tensor(got, expected, what="the dequantized values", name="x",
                                 hint=DEQUANTIZE_HINT)
        if message is None or not isinstance(got, torch.Tensor) or got.shape != q.shape:
            return message
        wrapped = ((q.to(torch.int32) - zero_point + 128) % 256 - 128).float() * scale
        if compare_tensor(got, wrapped) is None:  # q - zero_point computed in int8
            return message.split(". Hint:")[0] + (
                ". Hint: q is a torch.int8 tensor, so q - zero_point is computed in int8 and "
                "wraps around beyond 127 or below -128; convert q to float32 (or int32) "
                "before subtracting")
        return message

    return Case(f"{where}: {label}", run, reference, compare)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyTorch 2.15 deprecates its quantized tensors (``torch.quantize_per_tensor`` and the
    rest, pytorch/pytorch#184982) but still computes them; the references say so once, here,
    rather than in every student's feedback."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _observer_qparams(x: torch.Tensor) -> tuple[float, int]:
    with _quiet():
        from torch.ao.quantization.observer import MinMaxObserver

        observer = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
        observer(x)
        scale, zero_point = observer.calculate_qparams()
    return float(scale), int(zero_point)


def compare_qparams(got: Any, expected: list, *, hint: str) -> str | None:
    if not isinstance(got, list) or len(got) != 2:
        return f"expected (scale, zero_point), got {reprlib.repr(got)}"
    scale, zero_point = got
    if not math.isclose(scale, expected[0], rel_tol=1e-5, abs_tol=0):
        return _with_hint(f"scale: expected {expected[0]:.6g}, got {scale:.6g}", hint)
    if zero_point != expected[1]:
        return _with_hint(f"zero_point: expected {expected[1]}, got {zero_point}", hint)
    return None


def _qparams_case(label: str, x_min: float, x_max: float) -> Case:
    where = f"qparams(x_min={x_min:.6g}, x_max={x_max:.6g})"

    def run(ns: Mapping[str, Any]) -> list:
        fn = student_function(ns, "qparams")
        out = _call(fn, where, QUANT_BUILTINS, QUANT_FORBIDDEN, x_min, x_max)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise StudentError(f"{where}: `qparams` should return a pair (scale, zero_point), "
                               f"got {reprlib.repr(out)}")
        return [real_number(out[0], where, "qparams(...)[0] (the scale)"),
                integer(out[1], where, "qparams(...)[1] (the zero point)")]

    def reference() -> list:
        return list(_observer_qparams(torch.tensor([x_min, x_max])))

    return Case(f"{where}: {label}", run, reference,
                functools.partial(compare_qparams, hint=QPARAMS_HINT))


def _round_trip_case(x: torch.Tensor) -> Case:
    where = f"dequantize(quantize(x, *qparams(x.min(), x.max()))) for x of shape {_shape(x)}"

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fns = [student_function(ns, name) for name in ("qparams", "quantize", "dequantize")]
        pair = _call(fns[0], where, QUANT_BUILTINS, QUANT_FORBIDDEN, float(x.min()),
                     float(x.max()))
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise StudentError(f"{where}: `qparams` should return a pair (scale, zero_point)")
        q = _call(fns[1], where, QUANT_BUILTINS, QUANT_FORBIDDEN, x.clone(), *pair)
        out = _call(fns[2], where, QUANT_BUILTINS, QUANT_FORBIDDEN, q, *pair)
        return _tensor_like(out, tuple(x.shape), torch.float32, where, "the round trip")

    def reference() -> torch.Tensor:
        scale, zero_point = _observer_qparams(x)
        with _quiet():
            return torch.quantize_per_tensor(x, scale, zero_point, torch.qint8).dequantize()

    return Case(f"{where}: a layer's weights, with the range they span", run, reference,
                functools.partial(compare_tensor, what="the round trip", name="x",
                                  hint="all three functions together, as a layer is "
                                       "quantized", rtol=1e-5, atol=1e-7))


def _quant_cases(seed: int) -> list[Case]:
    gen = generator(seed, 2)
    cases = []
    for label, sym in (("values of both signs, some beyond the int8 range", True),
                       ("ReLU outputs (all >= 0), some saturating", False)):
        scale = uniform(gen, 0.005, 0.1)
        zero_point = randint(gen, -30, 30) if sym else randint(gen, -128, -100)
        shape = (randint(gen, 2, 6), randint(gen, 3, 30))
        x = torch.randn(shape, generator=gen) * 80 * scale
        if not sym:
            x = x.abs()
        x.view(-1)[0] = (QMAX + 40 - zero_point) * scale  # saturates at 127
        if sym:
            x.view(-1)[1] = (QMIN - 40 - zero_point) * scale  # saturates at -128
        cases.append(_quantize_case(label, _avoid_halfway(x, scale), scale, zero_point))
    scale = uniform(gen, 0.001, 0.05)
    x = torch.randn(randint(gen, 2, 5), randint(gen, 2, 5), 3, 3, generator=gen) * 30 * scale
    cases.append(_quantize_case("a convolution's weights, zero point 0", _avoid_halfway(x, scale),
                                scale, 0))
    for label, zero_point in (("a nonzero zero point", randint(gen, -100, 100)),
                              ("zero point -128 (values >= 0)", QMIN)):
        q = torch.randint(QMIN, QMAX + 1, (randint(gen, 2, 50),), generator=gen,
                          dtype=torch.int8)
        cases.append(_dequantize_case(label, q, uniform(gen, 0.001, 0.2), zero_point))
    lo, hi = -uniform(gen, 0.05, 3.0), uniform(gen, 0.05, 3.0)
    cases.append(_qparams_case("a range around 0", _f32(lo), _f32(hi)))
    cases.append(_qparams_case("a range of positive values (it must be widened to 0)",
                               _f32(uniform(gen, 0.5, 2.0)), _f32(uniform(gen, 3.0, 9.0))))
    cases.append(_qparams_case("a range of negative values", _f32(-uniform(gen, 3.0, 9.0)),
                               _f32(-uniform(gen, 0.5, 2.0))))
    cases.append(_qparams_case("an all-zero tensor (a fully pruned layer)", 0.0, 0.0))
    w = torch.randn(randint(gen, 16, 64), randint(gen, 16, 64), generator=gen) * 0.05
    w = w + uniform(gen, -0.02, 0.02)
    # no inner value halfway between two levels of the step its range gives (the extremes
    # set that step and stay put; the others move towards the middle)
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    step = (hi - lo) / (QMAX - QMIN)
    t = w.double() / step
    near = ((t - torch.floor(t)) - 0.5).abs() < 0.05
    near &= (w != w.max()) & (w != w.min())
    towards = torch.where(w < (lo + hi) / 2, 0.2, -0.2) * step
    cases.append(_round_trip_case(torch.where(near, w + towards, w).float()))
    return cases


def _f32(value: float) -> float:
    """``value`` rounded to float32, as a tensor's min and max are."""
    return float(torch.tensor(value, dtype=torch.float32))


# --------------------------------------------------------------------------------------
# Q3: k-means weight sharing, against scikit-learn's KMeans
# --------------------------------------------------------------------------------------

KMEANS_FORBIDDEN = ("sklearn.cluster", "scipy.cluster", *COURSE)
SHARE_HINT = ("cluster only the nonzero weights (the zeros stay 0); n_iter times: assign each "
              "weight to its nearest centroid, move each centroid to the mean of its "
              "weights; then assign once more")


def _ever_empty(values: torch.Tensor, init: torch.Tensor, n_iter: int) -> bool:
    """Whether a cluster empties during Lloyd's iterations (such inputs are redrawn)."""
    c = init.clone()
    for _ in range(n_iter + 1):
        labels = (values[:, None] - c[None, :]).abs().argmin(dim=1)
        counts = torch.bincount(labels, minlength=len(c))
        if bool((counts == 0).any()):
            return True
        c = torch.zeros_like(c).index_add_(0, labels, values) / counts
    return False


def _kmeans_reference(weight: torch.Tensor, init: torch.Tensor, n_iter: int) -> list:
    import numpy as np
    from sklearn.cluster import KMeans

    keep = weight != 0
    points = weight[keep].numpy().astype(np.float64).reshape(-1, 1)
    km = KMeans(n_clusters=len(init), init=init.double().numpy().reshape(-1, 1), n_init=1,
                max_iter=n_iter, tol=0.0, algorithm="lloyd").fit(points)
    centers = torch.from_numpy(np.ascontiguousarray(km.cluster_centers_[:, 0]))
    shared = torch.zeros_like(weight, dtype=torch.float64)
    shared[keep] = centers[torch.from_numpy(km.labels_.astype(np.int64))]
    return [shared.to(weight.dtype), centers]


def _kmeans_keep_empty(weight: torch.Tensor, init: torch.Tensor, n_iter: int) -> list:
    """Lloyd's iterations where an empty cluster keeps its centroid, vectorized (sums by
    ``index_add_``): scikit-learn moves such a centroid, so it cannot be the reference."""
    nonzero = weight.flatten() != 0
    points = weight.flatten()[nonzero].double()
    centers = init.double().clone()

    def closest(centers: torch.Tensor) -> torch.Tensor:
        return torch.cdist(points[:, None], centers[:, None]).argmin(dim=1)

    for _ in range(n_iter):
        member = closest(centers)
        counts = torch.bincount(member, minlength=len(centers))
        sums = torch.zeros_like(centers).index_add_(0, member, points)
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
    flat = torch.zeros(weight.numel(), dtype=torch.float64)
    flat[nonzero] = centers[closest(centers)]
    return [flat.view_as(weight).to(weight.dtype), centers]


def compare_shared(got: Any, expected: list, *, weight: torch.Tensor,
                   empties: bool = False) -> str | None:
    if not isinstance(got, list) or len(got) != 2:
        return f"expected (shared, centroids), got {reprlib.repr(got)}"
    shared, centroids = got
    if isinstance(shared, torch.Tensor) and shared.shape == weight.shape:
        moved = int(((weight == 0) & (shared != 0)).sum())
        if moved:
            return _with_hint(f"{moved} pruned weights (exact zeros) are nonzero in your "
                              "shared weight: they should stay 0",
                              "cluster only the nonzero weights")
    if any(isinstance(t, torch.Tensor) and t.is_floating_point() and bool(t.isnan().any())
           for t in (shared, centroids)):
        return _with_hint("your result has nan entries where finite values are expected: the "
                          "mean of a cluster that no weight was assigned to",
                          "in this test a cluster becomes empty: keep its centroid where it is"
                          if empties else "cluster the nonzero weights "
                          "themselves (signed values, not |w|), starting from the given "
                          "centroids: then no cluster of this test ever becomes empty")
    hint = SHARE_HINT + ("; a cluster that no weight is assigned to keeps its centroid"
                         if empties else "")
    message = compare_tensor(shared, expected[0], what="the shared weight", name="shared",
                             hint=hint, rtol=1e-4, atol=1e-6)
    if message:
        return message
    return compare_tensor(centroids, expected[1], what="the final centroids",
                          name="centroids", hint=hint, rtol=1e-4, atol=1e-6)


def _kmeans_case(label: str, weight: torch.Tensor, init: torch.Tensor, n_iter: int,
                 empties: bool = False) -> Case:
    where = (f"share_weights(weight of shape {_shape(weight)}, {len(init)} centroids, "
             f"n_iter={n_iter})")

    def run(ns: Mapping[str, Any]) -> list:
        fn = student_function(ns, "share_weights")
        out = _call(fn, where, (), KMEANS_FORBIDDEN, weight.clone(), init.clone(), n_iter)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise StudentError(f"{where}: `share_weights` should return a pair (shared, "
                               f"centroids), got {reprlib.repr(out)}")
        shared = _tensor_like(out[0], tuple(weight.shape), weight.dtype, where,
                              "the shared weight (the weight's shape and dtype)")
        centroids = out[1]
        if not isinstance(centroids, torch.Tensor) or centroids.shape != init.shape:
            raise StudentError(f"{where}: the centroids should be a tensor of shape "
                               f"{tuple(init.shape)}, got {reprlib.repr(centroids)}")
        return [shared, centroids.double()]

    reference = _kmeans_keep_empty if empties else _kmeans_reference
    return Case(f"{where}: {label}", run, functools.partial(reference, weight, init, n_iter),
                functools.partial(compare_shared, weight=weight, empties=empties))


def _kmeans_draw(gen: torch.Generator, shape: tuple[int, ...], zeros: float, n_c: int,
                 n_iter: int, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A (pruned) weight and initial centroids such that no cluster ever empties."""
    while True:
        w = torch.randn(shape, generator=gen) * 0.1
        w[torch.rand(shape, generator=gen) < zeros] = 0.0
        values = w[w != 0].double()
        if init == "linear":  # Deep Compression's choice: evenly spaced over the range
            c = torch.linspace(float(values.min()), float(values.max()), n_c,
                               dtype=torch.float64)
        else:  # Forgy: distinct weights picked at random
            picks = torch.randperm(len(values), generator=gen)[:n_c]
            c = values[picks].clone()
        if len(torch.unique(c)) == n_c and not _ever_empty(values, c, n_iter):
            return w, c


def _kmeans_cases(seed: int) -> list[Case]:
    gen = generator(seed, 3)
    cases = []
    specs = [("a pruned linear layer (about 70% zeros), linear initialization",
              (randint(gen, 20, 60), randint(gen, 20, 60)), 0.7, choice(gen, [4, 8]),
              randint(gen, 5, 20), "linear"),
             ("a pruned convolution (about 50% zeros), random initialization",
              (randint(gen, 4, 12), randint(gen, 2, 6), 3, 3), 0.5, choice(gen, [4, 8]),
              randint(gen, 3, 15), "random"),
             ("an unpruned layer, 16 shared values", (randint(gen, 20, 40), 32), 0.0, 16,
              randint(gen, 10, 25), "random"),
             ("a heavily pruned layer (about 90% zeros), one iteration",
              (randint(gen, 40, 80), randint(gen, 40, 80)), 0.9, choice(gen, [2, 4]), 1,
              "linear")]
    for label, shape, zeros, n_c, n_iter, init in specs:
        w, c = _kmeans_draw(gen, shape, zeros, n_c, n_iter, init)
        cases.append(_kmeans_case(label, w, c, n_iter))
    # Magnitude pruning leaves a gap around 0; evenly spaced centroids that fall into it get
    # no weight (as in the notebook's experiment), and an empty cluster keeps its centroid.
    n_iter = randint(gen, 5, 20)
    while True:
        w = torch.randn(randint(gen, 20, 50), randint(gen, 20, 50), generator=gen) * 0.1
        w.view(-1)[w.abs().flatten().argsort()[:round(0.8 * w.numel())]] = 0.0
        values = w[w != 0].double()
        c = torch.linspace(float(values.min()), float(values.max()), 8, dtype=torch.float64)
        if _ever_empty(values, c, n_iter):
            break
    cases.append(_kmeans_case("a layer pruned by magnitude (80% zeros, a gap around 0), "
                              "evenly spaced centroids: a cluster empties and keeps its "
                              "centroid", w, c, n_iter, empties=True))
    return cases


# --------------------------------------------------------------------------------------
# Q4: Huffman coding, against the optimal total computed from the merged nodes
# --------------------------------------------------------------------------------------

HUFFMAN_FORBIDDEN = COURSE
HUFFMAN_HINT = ("count how often each symbol occurs (only the symbols that occur); merge the "
                "two groups of smallest total count until one is left; total = sum of count "
                "times code length")


def _huffman_reference(symbols: torch.Tensor) -> list[int]:
    """The optimal total: every merge of two nodes adds their total count once."""
    counts = sorted(Counter(symbols.tolist()).values())
    if len(counts) == 1:
        return [counts[0]]
    heapq.heapify(counts)
    total = 0
    while len(counts) > 1:
        merged = heapq.heappop(counts) + heapq.heappop(counts)
        total += merged
        heapq.heappush(counts, merged)
    return [total]


def compare_bits(got: Any, expected: list[int], *, n: int, distinct: int) -> str | None:
    if not isinstance(got, list) or len(got) != 1:
        return f"expected one number of bits, got {reprlib.repr(got)}"
    if got[0] == expected[0]:
        return None
    hint = HUFFMAN_HINT
    if distinct == 1:
        hint = "with a single distinct symbol, count one bit per symbol"
    elif got[0] < expected[0]:
        hint = ("fewer bits than an optimal prefix code: " + HUFFMAN_HINT)
    return _with_hint(f"expected {expected[0]} bits for the {n} symbols "
                      f"({expected[0] / n:.4g} bits per symbol), got {got[0]}", hint)


def _huffman_case(label: str, symbols: torch.Tensor) -> Case:
    distinct = len(torch.unique(symbols))
    where = (f"huffman_bits(symbols) for {len(symbols)} symbols, {distinct} distinct between "
             f"{int(symbols.min())} and {int(symbols.max())}")

    def run(ns: Mapping[str, Any]) -> list[int]:
        fn = student_function(ns, "huffman_bits")
        try:
            bits = _call(fn, where, (), HUFFMAN_FORBIDDEN, symbols.clone())
        except StudentError as error:
            if "not supported between instances" not in str(error):
                raise
            raise StudentError(f"{error}. Hint: when two counts are equal, heapq compares "
                               "the next items of the entries; put a unique number second, "
                               "e.g. (count, i, group), so that it never reaches the "
                               "groups") from None
        return [integer(bits, where, "huffman_bits")]

    return Case(f"{where}: {label}", run, functools.partial(_huffman_reference, symbols),
                functools.partial(compare_bits, n=len(symbols), distinct=distinct))


def _huffman_cases(seed: int) -> list[Case]:
    gen = generator(seed, 4)
    cases = []
    # a pruned, shared layer: symbol 0 (pruned) dominates, then 1 + cluster index
    n, n_c = randint(gen, 2000, 6000), choice(gen, [4, 8, 16])
    probs = torch.cat([torch.tensor([uniform(gen, 0.6, 0.9)]),
                       torch.rand(n_c, generator=gen) ** 2 + 0.01])
    symbols = torch.multinomial(probs, n, replacement=True, generator=gen)
    cases.append(_huffman_case("the symbols of a pruned, shared layer (0: pruned)", symbols))
    # skewed counts over a range with gaps: symbols that never occur get no code
    values = torch.randperm(64, generator=gen)[:randint(gen, 6, 20)]
    weights = torch.rand(len(values), generator=gen) ** 3 + 0.001
    symbols = values[torch.multinomial(weights, randint(gen, 300, 2000), replacement=True,
                                       generator=gen)]
    cases.append(_huffman_case("skewed counts, with gaps between the symbols", symbols))
    # int8 codes of a weight tensor (bell-shaped counts, negative symbols)
    w = torch.randn(randint(gen, 1000, 4000), generator=gen) * uniform(gen, 5, 30)
    cases.append(_huffman_case("int8 codes of normally distributed weights",
                               w.round().clamp(QMIN, QMAX).long()))
    # nearly uniform counts
    k = randint(gen, 5, 12)
    cases.append(_huffman_case("nearly uniform counts",
                               torch.randint(0, k, (randint(gen, 200, 600),), generator=gen)))
    # two symbols, and a single one (a fully pruned layer)
    cases.append(_huffman_case("two distinct symbols", (torch.rand(
        randint(gen, 10, 100), generator=gen) < 0.2).long() * randint(gen, 1, 9)))
    cases.append(_huffman_case("a single distinct symbol (a fully pruned layer)",
                               torch.zeros(randint(gen, 10, 500), dtype=torch.long)))
    return cases


# --------------------------------------------------------------------------------------
# Q5: Winograd F(2,3) and F(2x2,3x3), against F.conv1d and F.conv2d
# --------------------------------------------------------------------------------------

CONV_FORBIDDEN = ("torch.nn.modules.conv", *COURSE)
CONV_BUILTINS = ("torch.conv1d", "torch.conv2d", "torch.convolution", "torch._convolution",
                 "torch.nn.functional.conv1d", "torch.nn.functional.conv2d")
WINOGRAD_1D_HINT = ("tiles of 4 inputs at a step of 2 (they overlap by 2); per tile "
                    "AT @ ((G @ w) * (BT @ x)), with the matrices as given (BT is B transposed)")
WINOGRAD_2D_HINT = ("4x4 tiles at a step of 2 in both directions; (G @ w @ G.T) * (BT @ x @ "
                    "BT.T), summed over the input channels, then AT @ ... @ AT.T; the 2x2 "
                    "output tiles go back in their places (tile row, row in tile, tile column, "
                    "column in tile)")


def _winograd_case(kind: str, x: torch.Tensor, w: torch.Tensor, label: str) -> Case:
    name = f"winograd_{kind}"
    where = f"{name}(x of shape {_shape(x)}, w of shape {_shape(w)})"

    def run(ns: Mapping[str, Any]) -> torch.Tensor:
        fn = student_function(ns, name)
        out = _call(fn, where, CONV_BUILTINS, CONV_FORBIDDEN, x.clone(), w.clone())
        if not isinstance(out, torch.Tensor):
            raise StudentError(f"{where}: `{name}` should return a tensor, got "
                               f"{type(out).__name__}")
        return out

    def reference() -> torch.Tensor:
        if kind == "1d":
            return F.conv1d(x[None, None], w[None, None])[0, 0]
        return F.conv2d(x[None], w)[0]

    def flipped() -> torch.Tensor:  # what a convolution (flipped filter) would give
        if kind == "1d":
            return F.conv1d(x[None, None], w.flip(0)[None, None])[0, 0]
        return F.conv2d(x[None], w.flip(-2, -1))[0]

    def compare(got: Any, expected: torch.Tensor) -> str | None:
        hint = WINOGRAD_1D_HINT if kind == "1d" else WINOGRAD_2D_HINT
        message = compare_tensor(got, expected, what="the output", name="y", hint=hint,
                                 rtol=1e-4, atol=1e-4)
        if message and compare_tensor(got, flipped(), rtol=1e-4, atol=1e-4) is None:
            message = message.split(". Hint:")[0] + (
                ". Hint: your output is a convolution with the flipped filter; F.conv1d and "
                "F.conv2d (and the Winograd formulas) do not flip it")
        return message

    return Case(f"{where}: {label}", run, reference, compare)


def _winograd_cases(seed: int) -> list[Case]:
    gen = generator(seed, 5)
    cases = []
    cases.append(_winograd_case("1d", torch.randn(4, generator=gen), torch.randn(3, generator=gen),
                                "one tile"))
    for _ in range(2):
        length = 2 + 2 * randint(gen, 3, 20)
        cases.append(_winograd_case("1d", torch.randn(length, generator=gen),
                                    torch.randn(3, generator=gen), "a signal of several tiles"))
    cases.append(_winograd_case("2d", torch.randn(1, 4, 4, generator=gen),
                                torch.randn(1, 1, 3, 3, generator=gen), "one tile, one channel"))
    for label in ("several channels, a rectangular input", "several channels and filters"):
        cin, cout = randint(gen, 2, 5), randint(gen, 1, 4)
        h, w = 2 + 2 * randint(gen, 1, 5), 2 + 2 * randint(gen, 1, 5)
        if label.startswith("several channels, a"):
            w = h + 2 * randint(gen, 1, 3)
        cases.append(_winograd_case("2d", torch.randn(cin, h, w, generator=gen),
                                    torch.randn(cout, cin, 3, 3, generator=gen), label))
    return cases


# --------------------------------------------------------------------------------------
# Q6: the distillation loss, against F.kl_div and F.cross_entropy
# --------------------------------------------------------------------------------------

DISTILL_FORBIDDEN = COURSE
DISTILL_HINT = ("L = alpha * tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau)), summed over "
                "the classes and averaged over the batch, + (1 - alpha) * cross-entropy of "
                "z_s at temperature 1; logarithms with F.log_softmax")


def _distill_reference(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, tau: float,
                       alpha: float) -> list[torch.Tensor]:
    s = s.clone().requires_grad_(True)
    soft = F.kl_div(F.log_softmax(s / tau, dim=1), F.log_softmax(t / tau, dim=1),
                    reduction="batchmean", log_target=True)
    loss = alpha * tau**2 * soft + (1 - alpha) * F.cross_entropy(s, y)
    loss.backward()
    return [loss.detach(), s.grad]


def _distill_mistakes(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, tau: float,
                      alpha: float) -> dict[str, float]:
    """What classic mistakes give on these inputs (computed with F.kl_div), to name them."""
    def loss(student: torch.Tensor, teacher: torch.Tensor, scale: float, reduction: str,
             hard_tau: float, a: float, hard_weight: float | None = None) -> float:
        with _quiet():  # reduction="mean" warns that it is not the KL divergence: the point
            soft = F.kl_div(student, teacher, reduction=reduction, log_target=True)
        weight = 1 - a if hard_weight is None else hard_weight
        return float(a * scale * soft + weight * F.cross_entropy(s / hard_tau, y))

    log_s, log_t = F.log_softmax(s / tau, dim=1), F.log_softmax(t / tau, dim=1)
    return {
        "the factor tau^2 is missing": loss(log_s, log_t, 1.0, "batchmean", 1.0, alpha),
        "the teacher's logits are not divided by the temperature":
            loss(log_s, F.log_softmax(t, dim=1), tau**2, "batchmean", 1.0, alpha),
        "the cross-entropy with the labels is taken at temperature tau (it is at 1)":
            loss(log_s, log_t, tau**2, "batchmean", tau, alpha),
        "the KL divergence is averaged over the classes too (sum over the classes, mean "
        "over the batch)": loss(log_s, log_t, tau**2, "mean", 1.0, alpha),
        "the student's term is a softmax, not a log-softmax (F.kl_div takes "
        "log-probabilities)": loss(F.softmax(s / tau, dim=1), log_t, tau**2, "batchmean", 1.0,
                                   alpha),
        "alpha weights the wrong term": loss(log_s, log_t, tau**2, "batchmean", 1.0,
                                             1 - alpha),
        "the KL divergence is the wrong way round (KL(student || teacher))":
            loss(log_t, log_s, tau**2, "batchmean", 1.0, alpha),
        "the cross-entropy with the labels is not weighted by (1 - alpha)":
            loss(log_s, log_t, tau**2, "batchmean", 1.0, alpha, hard_weight=1.0),
    }


def compare_distill(got: Any, expected: list, *, mistakes: Callable[[], dict[str, float]]
                    ) -> str | None:
    if not isinstance(got, list) or len(got) != 2 or not isinstance(got[0], torch.Tensor):
        return f"expected the loss and its gradient, got {reprlib.repr(got)}"
    value, want = float(got[0]), float(expected[0])
    if not math.isfinite(value):
        return _with_hint(f"expected L = {want:.6g}, got {value}", (
            "F.kl_div(input, target) reads the target as probabilities unless "
            "log_target=True: with log-probabilities as the target, pass log_target=True "
            "(and take every logarithm with F.log_softmax, never log(softmax(...)), which is "
            "-inf where the softmax underflows)"))
    if not math.isclose(value, want, rel_tol=1e-5, abs_tol=1e-6):
        named = [why for why, wrong in mistakes().items()
                 if math.isclose(value, wrong, rel_tol=1e-5, abs_tol=1e-6)]
        hint = (f"your value is what you get when {named[0]}" if named else DISTILL_HINT)
        return _with_hint(f"expected L = {want:.6g}, got {value:.6g}", hint)
    return compare_tensor(got[1], expected[1], what="the gradient with respect to the "
                          "student's logits", name="grad", hint=DISTILL_HINT, rtol=1e-4,
                          atol=1e-7)


def _distill_case(label: str, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, tau: float,
                  alpha: float) -> Case:
    where = (f"distillation_loss(logits of shape {_shape(s)}, temperature={tau:g}, "
             f"alpha={alpha:g})")

    def run(ns: Mapping[str, Any]) -> list:
        fn = student_function(ns, "distillation_loss")
        logits = s.clone().requires_grad_(True)
        loss = _call(fn, where, (), DISTILL_FORBIDDEN, logits, t.clone(), y.clone(), tau, alpha)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise StudentError(f"{where}: `distillation_loss` should return a scalar tensor, "
                               f"got {reprlib.repr(loss)}")
        if not loss.requires_grad:
            raise StudentError(f"{where}: no gradient reaches the student's logits from your "
                               "loss (a .item(), .detach() or torch.no_grad() on the way?)")
        try:
            loss.reshape(()).backward()
        except RuntimeError as error:
            raise StudentError(f"{where}: the loss's backward pass failed: {error}") from None
        if logits.grad is None:
            raise StudentError(f"{where}: no gradient reaches the student's logits")
        return [loss.detach().reshape(()), logits.grad]

    return Case(f"{where}: {label}", run,
                functools.partial(_distill_reference, s, t, y, tau, alpha),
                functools.partial(compare_distill, mistakes=functools.partial(
                    _distill_mistakes, s, t, y, tau, alpha)))


def _distill_cases(seed: int) -> list[Case]:
    gen = generator(seed, 6)
    cases = []
    specs = [("a batch at a moderate temperature", uniform(gen, 2.0, 5.0),
              round(uniform(gen, 0.3, 0.9), 3), 3.0),
             ("a confident teacher at a high temperature", uniform(gen, 8.0, 20.0),
              round(uniform(gen, 0.5, 0.95), 3), 12.0),
             ("soft targets only (alpha = 1)", uniform(gen, 2.0, 8.0), 1.0, 4.0),
             ("temperature 1", 1.0, round(uniform(gen, 0.2, 0.8), 3), 2.0),
             ("one example, many classes", uniform(gen, 2.0, 6.0),
              round(uniform(gen, 0.3, 0.9), 3), 5.0)]
    for label, tau, alpha, spread in specs:
        batch = 1 if label.startswith("one example") else randint(gen, 4, 32)
        k = randint(gen, 50, 200) if label.startswith("one example") else randint(gen, 3, 20)
        s = torch.randn(batch, k, generator=gen) * 2
        t = torch.randn(batch, k, generator=gen) * spread
        y = torch.randint(0, k, (batch,), generator=gen)
        cases.append(_distill_case(label, s, t, y, round(tau, 3), alpha))
    return cases


# --------------------------------------------------------------------------------------
# The assignment
# --------------------------------------------------------------------------------------

ASSIGNMENT = Assignment(
    id="05_efficiency",
    title="Assignment 5 -- Compressing a network",
    questions=[
        Question("q1", "Magnitude-pruning mask", 10, _prune_cases, ("magnitude_prune_mask",),
                 forbidden=PRUNE_FORBIDDEN),
        Question("q2", "Affine int8 quantization", 15, _quant_cases,
                 ("qparams", "quantize", "dequantize"), forbidden=QUANT_FORBIDDEN),
        Question("q3", "Weight sharing by k-means", 15, _kmeans_cases, ("share_weights",),
                 forbidden=KMEANS_FORBIDDEN),
        Question("q4", "Huffman coding: total bits", 10, _huffman_cases, ("huffman_bits",),
                 forbidden=HUFFMAN_FORBIDDEN),
        Question("q5", "Winograd convolution F(2,3) and F(2x2,3x3)", 15, _winograd_cases,
                 ("winograd_1d", "winograd_2d"), forbidden=CONV_FORBIDDEN),
        Question("q6", "The distillation loss", 15, _distill_cases, ("distillation_loss",),
                 forbidden=DISTILL_FORBIDDEN),
        Question("q7", "Your size/accuracy trade-off", 20,
                 manual_note="The instructor reads your numbers and your answer."),
    ],
)
