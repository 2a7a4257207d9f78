"""Making a trained network smaller: sizes, pruning, weight sharing, Huffman coding, quantization.

Chapter 5 takes one small trained network and compresses it page after page; what those pages
(and their interactive figure) share lives here, once:

- :func:`trained_cnn`: the chapter's reference network (``models.dropout_cnn`` without
  dropout), trained from a fixed seed. It takes seconds, so every page retrains it instead of
  passing a checkpoint around: the same seed gives the same weights on the same machine.
- :data:`BITS` and :func:`model_bytes`: the size of a model's parameters under a number format.
- :func:`prune_weights`, :func:`sparsity`, :func:`make_pruning_permanent`: magnitude pruning
  with ``torch.nn.utils.prune`` (per layer or global), and how much of a model is zero.
- :func:`kmeans_share`: weight sharing by k-means clustering (scikit-learn's ``KMeans``).
- :func:`huffman_code`, :func:`canonical_code`, :func:`huffman_encode`, :func:`huffman_decode`:
  Huffman coding, written by hand (why: see :func:`huffman_code`).
- :func:`compress_tensor` / :class:`CompressedTensor`: the deep-compression pipeline for one
  weight tensor (prune, share, Huffman-code values and positions), with the bytes it writes.
- :func:`fake_quantize`: uniform ``bits``-bit quantization of a tensor, per output channel,
  with ``torch.fake_quantize_per_channel_affine``.
- :func:`latency`: median seconds of a call, measured with ``torch.utils.benchmark``.
- :func:`require_torchao`: the PT2E quantization flow, or a clear message if torchao is missing.
- :class:`CompressionExplorer`: sparsity and bits per weight -> accuracy and size.
"""

from __future__ import annotations

import heapq
import itertools
import math
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from .models import dropout_cnn
from .plots import _pyplot
from .profile import get_profile
from .seed import seed_everything
from .train import evaluate, fit
from .widgets import _Interactive

# --------------------------------------------------------------------------------------
# The reference network
# --------------------------------------------------------------------------------------


def trained_cnn(data: Any, epochs: int = 10, seed: int = 0, lr: float = 1e-3,
                verbose: bool = True) -> nn.Sequential:
    """The chapter's reference network, trained on ``data`` from seed ``seed``.

    ``models.dropout_cnn`` without dropout: two 5x5 convolutions (8 and 16 channels) and two
    fully connected layers (256 hidden units), so that, as in AlexNet and VGG, nearly all the
    parameters sit in the fully connected layers. Adam at ``lr`` for ``epochs`` epochs. Its
    training history is attached as ``model.history``.
    """
    seed_everything(seed)
    model = dropout_cnn(data.in_channels, data.num_classes, data.image_size, p=0.0)
    history = fit(model, data, epochs, optimizer="adam", lr=lr, label="reference CNN",
                  progress=False, verbose=False)
    model.history = history
    if verbose:
        print(f"reference CNN: {count_nonzero(model):,} parameters, trained {epochs} epochs on "
              f"{data.name}: test accuracy {history.final_test_acc:.1%}")
    return model


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------

#: bits per value of the number formats the chapter uses
BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4,
                        "ternary": 2, "binary": 1}


def _bits(fmt: str | int) -> int:
    if isinstance(fmt, int):
        return fmt
    if fmt not in BITS:
        raise ValueError(f"Unknown number format {fmt!r}; valid formats are "
                         f"{', '.join(BITS)} (or a number of bits).")
    return BITS[fmt]


def model_bytes(model: nn.Module, fmt: str | int = "fp32") -> float:
    """Bytes of ``model``'s parameters if every one is stored in ``fmt`` (a name or bits).

    Counts parameters only (not buffers such as batch-norm statistics), dense: a zero costs as
    much as any other value. Works on the ``meta`` device.
    """
    return sum(p.numel() for p in model.parameters()) * _bits(fmt) / 8


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero parameters (pruned weights count as zero)."""
    return sum(int(torch.count_nonzero(p.detach())) for p in _weights_and_biases(model))


def _weights_and_biases(model: nn.Module) -> Iterable[torch.Tensor]:
    # With a pruning mask in place, ``weight`` (the masked tensor) is what the layer uses.
    for module in model.modules():
        for name, _ in list(module.named_parameters(recurse=False)):
            yield getattr(module, name.removesuffix("_orig"))


# --------------------------------------------------------------------------------------
# Pruning (torch.nn.utils.prune)
# --------------------------------------------------------------------------------------

PRUNABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def prunable(model: nn.Module, kinds: Sequence[type[nn.Module]] = PRUNABLE
             ) -> list[tuple[nn.Module, str]]:
    """The ``(module, "weight")`` pairs of every layer of one of ``kinds``."""
    return [(m, "weight") for m in model.modules() if isinstance(m, tuple(kinds))]


def prune_weights(model: nn.Module, amount: float | dict[type[nn.Module], float],
                  scope: str = "global", kinds: Sequence[type[nn.Module]] = PRUNABLE
                  ) -> nn.Module:
    """Magnitude-prune the weights of ``model`` in place, with ``torch.nn.utils.prune``.

    ``amount`` is the fraction of weights to zero, counted over *all* the weights of the
    layers of ``kinds`` when ``scope="global"`` (``prune.global_unstructured``: the smallest
    magnitudes anywhere go first, so layers end up with different sparsities), or in every
    layer separately when ``scope="layer"`` (``prune.l1_unstructured``). With
    ``scope="layer"``, ``amount`` may map a layer type to its own fraction, e.g.
    ``{nn.Conv2d: 0.5, nn.Linear: 0.9}``. Pruning again prunes the weights still alive, and
    the masks stay in place (a forward pre-hook), so fine-tuning keeps pruned weights at zero.
    The fraction is of all weights, not of the survivors: pruning twice with ``amount=0.5``
    leaves half of them, not a quarter (``amount`` is converted for the library, which counts
    survivors).
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}.")
    pairs = prunable(model, kinds)
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no layers of type "
                         f"{', '.join(k.__name__ for k in kinds)} to prune.")

    def survivors_fraction(target: float, weights: list[torch.Tensor]) -> float:
        if not 0.0 <= target < 1.0:
            raise ValueError(f"amount must be in [0, 1), got {target}.")
        total = sum(w.numel() for w in weights)
        alive = sum(int(torch.count_nonzero(w)) for w in weights)
        to_prune = round(target * total) - (total - alive)
        return max(0, to_prune) / alive if alive else 0.0

    if scope == "global":
        if isinstance(amount, dict):
            raise ValueError("a per-type amount needs scope='layer'.")
        weights = [getattr(m, n).detach() for m, n in pairs]
        fraction = survivors_fraction(amount, weights)
        prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=fraction)
        return model
    for module, name in pairs:
        target = (amount.get(type(module), 0.0) if isinstance(amount, dict) else amount)
        fraction = survivors_fraction(target, [getattr(module, name).detach()])
        prune.l1_unstructured(module, name, amount=fraction)
    return model


def make_pruning_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (``prune.remove``): zeros stay, hooks go."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def sparsity(model_or_tensor: nn.Module | torch.Tensor,
             kinds: Sequence[type[nn.Module]] = PRUNABLE) -> float:
    """Fraction of zeros in a tensor, or in the weights of a model's layers of ``kinds``."""
    if isinstance(model_or_tensor, torch.Tensor):
        t = model_or_tensor.detach()
        return 1.0 - int(torch.count_nonzero(t)) / t.numel()
    weights = [getattr(m, n).detach() for m, n in prunable(model_or_tensor, kinds)]
    total = sum(w.numel() for w in weights)
    return 1.0 - sum(int(torch.count_nonzero(w)) for w in weights) / total


# --------------------------------------------------------------------------------------
# Weight sharing (scikit-learn's KMeans)
# --------------------------------------------------------------------------------------


def kmeans_share(weight: torch.Tensor, clusters: int, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the *non-zero* entries of ``weight`` into ``clusters`` shared values.

    Returns ``(centroids, index)``: ``centroids`` sorted ascending (``clusters`` values) and,
    for every entry of ``weight``, the index of its centroid (-1 for pruned zeros, which are
    not clustered: they are stored by their absence). Centroids start spread linearly between
    the smallest and the largest weight -- the initialization Han et al. found best, because it
    keeps a few centroids for the rare large weights -- then scikit-learn's ``KMeans`` runs
    Lloyd's algorithm on the values.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    w = weight.detach().cpu().double().flatten()
    alive = w != 0
    values = w[alive].numpy().reshape(-1, 1)
    if len(values) == 0:
        raise ValueError("weight has no non-zero entries to cluster.")
    clusters = min(clusters, len(np.unique(values)))
    init = np.linspace(values.min(), values.max(), clusters).reshape(-1, 1)
    with warnings.catch_warnings():  # fewer distinct values than clusters: not an error here
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=clusters, init=init, n_init=1, random_state=seed).fit(values)
    order = np.argsort(km.cluster_centers_.ravel())
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    index = torch.full(w.shape, -1, dtype=torch.long)
    index[alive] = torch.from_numpy(rank[km.labels_]).long()
    centroids = torch.from_numpy(km.cluster_centers_.ravel()[order]).to(weight.dtype)
    return centroids, index.view(weight.shape)


def shared_weight(centroids: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The weight tensor that ``kmeans_share`` describes (zeros where ``index`` is -1)."""
    full = torch.cat([centroids.new_zeros(1), centroids])
    return full[index + 1]


# --------------------------------------------------------------------------------------
# Huffman coding
# --------------------------------------------------------------------------------------


def huffman_code(counts: dict[Hashable, int] | Iterable[Hashable]) -> dict[Hashable, str]:
    """An optimal prefix code for symbols with these counts: symbol -> bit string.

    Accepts a mapping of counts or an iterable of symbols (counted here). Written by hand:
    building the tree is a dozen lines with ``heapq`` (repeatedly merge the two least
    frequent subtrees), it is what the deep-compression page teaches, and the small Huffman
    packages on PyPI would add a dependency without saving code. Ties are broken by insertion
    order, so the code is deterministic; any Huffman code has the same total length
    ``sum(count * len(code))``, the minimum over all prefix codes. A single symbol gets the
    one-bit code ``"0"``.
    """
    counts = dict(counts) if isinstance(counts, dict) else dict(Counter(counts))
    counts = {s: c for s, c in counts.items() if c > 0}
    if not counts:
        raise ValueError("Huffman coding needs at least one symbol with a positive count.")
    if len(counts) == 1:
        return {next(iter(counts)): "0"}
    tie = itertools.count()
    heap = [(c, next(tie), {s: ""}) for s, c in counts.items()]
    heapq.heapify(heap)
    while len(heap) > 1:
        c0, _, zero = heapq.heappop(heap)  # the two least frequent subtrees ...
        c1, _, one = heapq.heappop(heap)
        merged = {s: "0" + code for s, code in zero.items()}  # ... become one, a bit deeper
        merged.update({s: "1" + code for s, code in one.items()})
        heapq.heappush(heap, (c0 + c1, next(tie), merged))
    return heap[0][2]


def canonical_code(code: dict[Hashable, str]) -> dict[Hashable, str]:
    """The canonical prefix code with the same code lengths as ``code`` (sortable symbols).

    Symbols sorted by (length, symbol) get consecutive binary numbers, shifted left whenever
    the length grows. A decoder needs only each symbol's code length to rebuild it, which is
    why a compressed file stores lengths, not code words (DEFLATE does the same).
    """
    out: dict[Hashable, str] = {}
    value, previous = 0, 0
    for symbol in sorted(code, key=lambda s: (len(code[s]), s)):
        length = len(code[symbol])
        value <<= length - previous
        out[symbol] = format(value, f"0{length}b")
        value, previous = value + 1, length
    return out


def huffman_bits(symbols: Sequence[Hashable] | dict[Hashable, int]) -> int:
    """Total length in bits of ``symbols`` (or of these counts) under their Huffman code."""
    counts = dict(symbols) if isinstance(symbols, dict) else dict(Counter(symbols))
    code = huffman_code(counts)
    return sum(c * len(code[s]) for s, c in counts.items())


def huffman_encode(symbols: Sequence[Hashable], code: dict[Hashable, str]) -> tuple[bytes, int]:
    """Pack ``symbols`` under ``code`` into bytes; returns ``(data, number_of_bits)``."""
    bits = "".join(code[s] for s in symbols)
    padded = bits + "0" * (-len(bits) % 8)
    data = np.packbits(np.frombuffer(padded.encode(), dtype=np.uint8) - ord("0")).tobytes()
    return data, len(bits)


def huffman_decode(data: bytes, n_bits: int, code: dict[Hashable, str]) -> list[Hashable]:
    """Read back the symbols that :func:`huffman_encode` wrote."""
    decode = {v: k for k, v in code.items()}
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:n_bits]
    out, current = [], ""
    for b in bits.tolist():
        current += "1" if b else "0"
        if current in decode:
            out.append(decode[current])
            current = ""
    if current:
        raise ValueError("the bit stream ends in the middle of a code word.")
    return out


# --------------------------------------------------------------------------------------
# The deep-compression pipeline for one tensor
# --------------------------------------------------------------------------------------


@dataclass
class CompressedTensor:
    """A pruned, weight-shared tensor stored as Han et al.'s sparse format, Huffman-coded.

    The non-zero entries, in row-major order, are stored as two streams of small integers:
    the *gap* since the previous non-zero (``gap_bits`` bits at most; a longer gap inserts a
    filler entry whose value is the pruned zero) and the *cluster index* of the value. Each
    stream is Huffman-coded; the centroids (32-bit floats) and the two code tables are stored
    alongside.
    """

    shape: tuple[int, ...]
    centroids: torch.Tensor
    gap_bits: int
    gaps: bytes
    gaps_nbits: int
    gaps_code: dict
    values: bytes
    values_nbits: int
    values_code: dict

    @property
    def table_bits(self) -> int:
        """Bits of the two code tables: a 5-bit code length (codes here are never longer than
        31 bits) for every symbol of each alphabet, in symbol order, 0 for a symbol that does
        not occur -- enough for a decoder to rebuild a canonical Huffman code with the same
        lengths. The alphabets: gaps ``1 .. 2**gap_bits - 1``; values ``0`` (the filler) to
        ``len(centroids)``."""
        return 5 * ((2**self.gap_bits - 1) + (len(self.centroids) + 1))

    @property
    def total_bits(self) -> int:
        """Every bit written: both streams, the centroids and the code tables."""
        return (8 * (len(self.gaps) + len(self.values)) + 32 * len(self.centroids)
                + self.table_bits)

    def decompress(self) -> torch.Tensor:
        """The dense tensor back, exactly as it was compressed."""
        gaps = huffman_decode(self.gaps, self.gaps_nbits, self.gaps_code)
        values = huffman_decode(self.values, self.values_nbits, self.values_code)
        flat = torch.zeros(math.prod(self.shape), dtype=self.centroids.dtype)
        full = torch.cat([self.centroids.new_zeros(1), self.centroids])  # index 0: a filler
        position = -1
        for gap, value in zip(gaps, values, strict=True):
            position += gap
            flat[position] = full[value]
        return flat.view(self.shape)


def compress_tensor(weight: torch.Tensor, clusters: int, gap_bits: int = 5,
                    seed: int = 0) -> CompressedTensor:
    """Weight-share the non-zero entries of ``weight`` and Huffman-code the result.

    ``weight`` is assumed pruned already (zeros are not stored); its non-zeros are clustered
    into ``clusters`` shared values (:func:`kmeans_share`). Positions are stored as gaps of at
    most ``2**gap_bits - 1``; longer gaps are bridged with filler entries (value index 0,
    meaning zero), as in the deep-compression paper.
    """
    centroids, index = kmeans_share(weight, clusters, seed=seed)
    flat = index.flatten()
    positions = torch.nonzero(flat >= 0).flatten().tolist()
    longest = 2**gap_bits - 1
    gaps, values, previous = [], [], -1
    for p in positions:
        while p - previous > longest:  # bridge a long run of zeros with a filler entry
            previous += longest
            gaps.append(longest)
            values.append(0)
        gaps.append(p - previous)
        values.append(int(flat[p]) + 1)  # 1..clusters; 0 is the filler
        previous = p
    # canonical codes: the stored code lengths (``table_bits``) are all a decoder needs
    gaps_code = canonical_code(huffman_code(gaps))
    values_code = canonical_code(huffman_code(values))
    g, g_bits = huffman_encode(gaps, gaps_code)
    v, v_bits = huffman_encode(values, values_code)
    return CompressedTensor(tuple(weight.shape), centroids, gap_bits, g, g_bits, gaps_code,
                            v, v_bits, values_code)


# --------------------------------------------------------------------------------------
# Uniform quantization of weights
# --------------------------------------------------------------------------------------


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` rounded to ``bits``-bit integers and back, one scale per output channel.

    Symmetric (zero point 0, levels ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1``), the scale of
    each output channel set by its largest magnitude, with
    ``torch.fake_quantize_per_channel_affine``. Zeros stay exactly zero, so pruning survives.
    ``bits >= 32`` returns the weight unchanged; ``bits=1`` gives sign times the channel's mean
    magnitude (binary weights with a scale).
    """
    if bits >= 32:
        return weight.clone()
    if bits < 1:
        raise ValueError(f"bits must be at least 1, got {bits}.")
    w = weight.detach().float()
    per_channel = w.reshape(len(w), -1)
    if bits == 1:
        nz = per_channel != 0
        mean = (per_channel.abs().sum(1) / nz.sum(1).clamp_min(1)).view(-1, *[1] * (w.ndim - 1))
        return (torch.sign(w) * mean).to(weight.dtype)
    top = 2 ** (bits - 1) - 1
    scale = per_channel.abs().amax(1).clamp_min(1e-12) / top
    zero_point = torch.zeros(len(w), dtype=torch.int32)
    out = torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, -top, top)
    return out.to(weight.dtype)


# --------------------------------------------------------------------------------------
# Timing and the PT2E flow
# --------------------------------------------------------------------------------------


def latency(fn: Callable, *args: Any, min_run_time: float = 0.2, grad: bool = False) -> float:
    """Median seconds of one ``fn(*args)`` call, by ``torch.utils.benchmark``.

    ``blocked_autorange`` repeats the call until ``min_run_time`` seconds have passed and
    synchronizes CUDA itself. It runs with as many threads as torch uses here
    (``torch.get_num_threads()``; the benchmark Timer's own default is one thread), and
    without gradients unless ``grad=True`` (to time a training step). Compare two latencies
    measured in the same run, as a ratio.
    """
    import logging

    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPU-only machines
    try:
        from torch.utils import benchmark
    finally:
        quiet.setLevel(level)
    timer = benchmark.Timer(stmt="fn(*args)", globals={"fn": fn, "args": args},
                            num_threads=torch.get_num_threads())
    with torch.set_grad_enabled(grad):
        return timer.blocked_autorange(min_run_time=min_run_time).median


def require_torchao():
    """The ``torchao.quantization.pt2e`` module, or an ImportError that says what to do.

    Also imports the pieces the chapter uses (``quantize_pt2e``, the x86 quantizer), with the
    one-line notice that torchao's import prints through torch's logger silenced.
    """
    import logging

    quiet = logging.getLogger("torch.utils._pytree")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Enum subclass ... register_constant()": not ours to fix
    try:
        import torchao.quantization.pt2e as pt2e
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401 - prepare/convert
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
    except ImportError as error:
        raise ImportError("Post-training quantization on this page uses torchao's PT2E flow: "
                          "`pip install torchao` (or `pip install -e .` in the course "
                          "repository, which lists it).") from error
    finally:
        quiet.setLevel(level)
    return pt2e


# --------------------------------------------------------------------------------------
# The compression explorer: sparsity and bits per weight -> accuracy and size
# --------------------------------------------------------------------------------------


def compressed_model(model: nn.Module, sparsity_: float, bits: int,
                     gap_bits: int = 5) -> tuple[nn.Module, int]:
    """A copy of ``model`` with every weight globally magnitude-pruned to ``sparsity_`` and
    uniformly quantized to ``bits`` bits (:func:`fake_quantize`), without fine-tuning, and the
    bits needed to store it.

    The storage count: each weight that survives pruning as a ``bits``-bit value, plus a
    ``gap_bits``-bit relative position when the layer was pruned (dense layers need no
    positions); a 32-bit scale per output channel when ``bits < 32``; biases in fp32. Zeros
    that quantization itself creates are still stored: the positions are fixed by pruning.
    """
    import copy

    out = copy.deepcopy(model)
    if sparsity_ > 0:
        prune_weights(out, sparsity_)
        make_pruning_permanent(out)
    total = 0
    weights = set()
    with torch.no_grad():
        for module, name in prunable(out):
            w = getattr(module, name)
            weights.add(id(w))
            nnz = int(torch.count_nonzero(w)) if sparsity_ > 0 else w.numel()
            total += nnz * (bits + (gap_bits if sparsity_ > 0 else 0))
            total += 32 * len(w) if bits < 32 else 0
            w.copy_(fake_quantize(w, bits))
    total += sum(32 * p.numel() for p in out.parameters() if id(p) not in weights)
    return out, total


class CompressionExplorer(_Interactive):
    """Sliders for sparsity and bits per weight; accuracy and size of the compressed model.

    Every setting prunes (globally, by magnitude) and quantizes (:func:`fake_quantize`) a copy
    of a trained model, without fine-tuning, and evaluates it on ``data.test``. The figure
    shows accuracy against bits per weight for a grid of sparsities, and accuracy against
    stored size (:func:`compressed_model`), with the current setting marked. Results are cached.
    The ``smoke`` profile (CI) draws a coarser grid (``SMOKE_GRID``), to stay within its time.
    """

    description = "Compression explorer"
    SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)
    BIT_CHOICES = (1, 2, 3, 4, 6, 8, 32)
    SMOKE_GRID = ((0.0, 0.5, 0.8, 0.95), (1, 2, 4, 8, 32))

    def __init__(self, model: nn.Module, data: Any, sparsity: float = 0.8,
                 bits: int = 4) -> None:
        import ipywidgets as W

        if get_profile().name == "smoke":
            self.SPARSITIES, self.BIT_CHOICES = self.SMOKE_GRID

        if sparsity not in self.SPARSITIES or bits not in self.BIT_CHOICES:
            raise ValueError(f"sparsity must be one of {self.SPARSITIES} and bits one of "
                             f"{self.BIT_CHOICES}; got {sparsity}, {bits}.")
        self.model, self.data = model, data
        self._cache: dict[tuple[float, int], tuple[float, float]] = {}
        style = {"description_width": "110px"}
        self.controls = {
            "sparsity": W.SelectionSlider(options=list(self.SPARSITIES), value=sparsity,
                                          description="sparsity", style=style),
            "bits": W.SelectionSlider(options=list(self.BIT_CHOICES), value=bits,
                                      description="bits per weight", style=style),
        }
        self._build(list(self.controls.values()))

    def settings(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.controls.items()}

    def result(self, sparsity: float, bits: int) -> tuple[float, float]:
        """(test accuracy, stored size in kB) of one setting."""
        key = (sparsity, bits)
        if key not in self._cache:
            small, size = compressed_model(self.model, sparsity, bits)
            acc = evaluate(small, self.data.test, amp=False).accuracy
            self._cache[key] = (acc, size / 8e3)
        return self._cache[key]

    def grid(self) -> dict[float, list[tuple[int, float, float]]]:
        """For every sparsity: (bits, accuracy, kB) for every choice of bits."""
        return {s: [(b, *self.result(s, b)) for b in self.BIT_CHOICES] for s in self.SPARSITIES}

    def figure(self):
        plt = _pyplot()
        s = self.settings()
        acc, kb = self.result(s["sparsity"], s["bits"])
        fig, axes = plt.subplots(2, 1, figsize=(6.2, 6.4))
        for sp, rows in self.grid().items():
            b, a, k = zip(*rows, strict=True)
            axes[0].plot(range(len(b)), [100 * x for x in a], "o-", ms=3,
                         label=f"sparsity {sp:.0%}")
            axes[1].plot(k, [100 * x for x in a], "o-", ms=3, label=f"sparsity {sp:.0%}")
        axes[0].set_xticks(range(len(self.BIT_CHOICES)), [str(b) for b in self.BIT_CHOICES])
        axes[0].plot(self.BIT_CHOICES.index(s["bits"]), 100 * acc, "k*", ms=14, label="chosen")
        axes[1].plot(kb, 100 * acc, "k*", ms=14, label="chosen")
        axes[0].set(xlabel="bits per weight", ylabel="test accuracy (%)")
        axes[1].set(xlabel="stored size (kB, log scale)", ylabel="test accuracy (%)",
                    xscale="log")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8, ncols=2)
        axes[0].set_title(f"sparsity {s['sparsity']:.0%}, {s['bits']} bits: accuracy "
                          f"{acc:.1%}, {kb:.1f} kB -- {self.data.name}", fontsize=9)
        fig.tight_layout()
        plt.close(fig)
        return fig


def compression_explorer(model: nn.Module, data: Any, **settings: Any) -> CompressionExplorer:
    """The compression explorer; make it the last line of a cell to display it."""
    return CompressionExplorer(model, data, **settings)
