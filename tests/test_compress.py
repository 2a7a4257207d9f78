"""course_utils.compress: sizes, pruning, weight sharing, Huffman coding, quantization."""

import math
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from course_utils import compress as C


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def test_model_bytes_by_format():
    net = small_net()
    n = sum(p.numel() for p in net.parameters())
    assert C.model_bytes(net) == 4 * n
    assert C.model_bytes(net, "fp16") == C.model_bytes(net, "bf16") == 2 * n
    assert C.model_bytes(net, "int8") == n and C.model_bytes(net, 4) == n / 2
    with pytest.raises(ValueError, match="valid formats"):
        C.model_bytes(net, "fp12")


def test_global_pruning_hits_the_target_and_differs_per_layer():
    net = small_net()
    C.prune_weights(net, 0.7)
    assert abs(C.sparsity(net) - 0.7) < 1e-3
    # the same as torch's own global pruning on a fresh copy
    ref = small_net()
    prune.global_unstructured(C.prunable(ref), prune.L1Unstructured, amount=0.7)
    for (a, _), (b, _) in zip(C.prunable(net), C.prunable(ref), strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)
    # pruning again counts the fraction of all weights, not of the survivors
    C.prune_weights(net, 0.9)
    assert abs(C.sparsity(net) - 0.9) < 1e-3
    C.make_pruning_permanent(net)
    assert not hasattr(net[0], "weight_mask") and abs(C.sparsity(net) - 0.9) < 1e-3


def test_layer_pruning_per_type():
    net = small_net()
    C.prune_weights(net, {nn.Conv2d: 0.5, nn.Linear: 0.9}, scope="layer")
    assert abs(C.sparsity(net[0].weight) - 0.5) < 0.03
    assert abs(C.sparsity(net[3].weight) - 0.9) < 0.01
    assert C.count_nonzero(net) < sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="scope"):
        C.prune_weights(net, 0.5, scope="channel")


def test_kmeans_share_matches_scikit_learn_and_skips_zeros():
    from sklearn.cluster import KMeans

    torch.manual_seed(0)
    w = torch.randn(20, 30)
    w[w.abs() < 0.5] = 0
    centroids, index = C.kmeans_share(w, 8)
    assert (index[w == 0] == -1).all() and (index[w != 0] >= 0).all()
    assert torch.all(centroids[1:] > centroids[:-1])
    values = w[w != 0].double().numpy().reshape(-1, 1)
    import numpy as np

    ref = KMeans(8, init=np.linspace(values.min(), values.max(), 8).reshape(-1, 1),
                 n_init=1).fit(values)
    assert np.allclose(np.sort(ref.cluster_centers_.ravel()), centroids.double().numpy(),
                       atol=1e-6)
    shared = C.shared_weight(centroids, index)
    assert (shared[w == 0] == 0).all() and len(torch.unique(shared[w != 0])) == 8


def test_huffman_is_optimal_and_round_trips():
    counts = {"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5}  # the textbook example
    code = C.huffman_code(counts)
    assert C.huffman_bits(counts) == 224  # its optimal total (CLRS, section 16.3)
    codes = list(code.values())
    assert not any(x != y and y.startswith(x) for x in codes for y in codes)  # prefix-free
    symbols = [s for s, c in counts.items() for _ in range(c)]
    data, n_bits = C.huffman_encode(symbols, code)
    assert n_bits == 224 and len(data) == 28
    assert C.huffman_decode(data, n_bits, code) == symbols
    # within one bit per symbol of the entropy
    n = sum(counts.values())
    entropy = -sum(c * math.log2(c / n) for c in counts.values())
    assert entropy <= n_bits < entropy + n
    assert C.huffman_code(["x", "x"]) == {"x": "0"}
    with pytest.raises(ValueError):
        C.huffman_code({})


def test_canonical_code_keeps_lengths_and_is_prefix_free():
    counts = {3: 40, 1: 25, 7: 20, 2: 10, 5: 5}
    code = C.huffman_code(counts)
    canon = C.canonical_code(code)
    assert {s: len(c) for s, c in canon.items()} == {s: len(c) for s, c in code.items()}
    words = sorted(canon.values())
    assert not any(b.startswith(a) for a, b in zip(words[:-1], words[1:], strict=True))
    data, n = C.huffman_encode([3, 1, 7, 2, 5, 3], canon)
    assert C.huffman_decode(data, n, canon) == [3, 1, 7, 2, 5, 3]


def test_compress_tensor_round_trips_and_counts_its_bits():
    torch.manual_seed(0)
    w = torch.randn(64, 200)
    w[w.abs() < 1.5] = 0  # ~87% zeros, with gaps longer than 31
    ct = C.compress_tensor(w, clusters=16)
    back = ct.decompress()
    centroids, index = C.kmeans_share(w, 16)
    torch.testing.assert_close(back, C.shared_weight(centroids, index))
    gaps = Counter(C.huffman_decode(ct.gaps, ct.gaps_nbits, ct.gaps_code))
    assert max(gaps) <= 31
    assert ct.total_bits == (8 * (len(ct.gaps) + len(ct.values)) + 32 * 16 + ct.table_bits)
    assert ct.table_bits == 5 * (31 + 17)  # a length for every gap 1..31 and value 0..16
    assert 32 * w.numel() / ct.total_bits > 10


def test_fake_quantize_levels_and_zeros():
    torch.manual_seed(0)
    w = torch.randn(8, 50)
    w[:, :10] = 0
    for bits in (2, 4, 8):
        q = C.fake_quantize(w, bits)
        assert (q[:, :10] == 0).all()
        assert max(len(torch.unique(row)) for row in q) <= 2**bits - 1
        step = w.abs().amax(1, keepdim=True) / (2 ** (bits - 1) - 1)
        assert ((q - w).abs() <= step / 2 + 1e-6).all()
    binary = C.fake_quantize(w, 1)
    assert all(len(torch.unique(row[10:].abs())) == 1 for row in binary)
    assert torch.equal(C.fake_quantize(w, 32), w)


def test_compressed_model_size_and_explorer_grid():
    from course_utils import load_data

    data = load_data("fashion_mnist", batch_size=64, train_size=128, test_size=64, verbose=False)
    net = C.trained_cnn(data, epochs=1, verbose=False)
    n_weights = sum(m.weight.numel() for m, _ in C.prunable(net))
    n_other = sum(p.numel() for p in net.parameters()) - n_weights
    _, dense32 = C.compressed_model(net, 0.0, 32)
    assert dense32 == 32 * (n_weights + n_other)
    small, bits = C.compressed_model(net, 0.9, 4)
    assert abs(C.sparsity(small) - 0.9) < 0.01
    channels = sum(len(m.weight) for m, _ in C.prunable(net))
    assert bits == round(0.1 * n_weights) * 9 + 32 * channels + 32 * n_other
    explorer = C.compression_explorer(net, data, sparsity=0.5, bits=8)
    assert explorer.result(0.5, 8)[1] < dense32 / 8e3
    with pytest.raises(ValueError, match="sparsity must be one of"):
        C.compression_explorer(net, data, sparsity=0.3)


def test_latency_and_torchao_message():
    assert C.latency(torch.mm, torch.ones(8, 8), torch.ones(8, 8), min_run_time=0.01) > 0
    seen = {}

    def record(x):
        seen["threads"], seen["grad"] = torch.get_num_threads(), torch.is_grad_enabled()
        return x

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        C.latency(record, 1, min_run_time=0.001)
        assert seen == {"threads": 2, "grad": False}  # torch's thread count, not Timer's 1
        C.latency(record, 1, min_run_time=0.001, grad=True)
        assert seen["grad"]
    finally:
        torch.set_num_threads(before)
    try:
        C.require_torchao()
    except ImportError as error:
        assert "pip install torchao" in str(error)
