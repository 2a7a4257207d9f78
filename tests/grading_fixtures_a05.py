"""Assignment 5's wrong answers: solutions/05_efficiency.ipynb with one classic bug typed in.

The variants use ``grading_fixtures``' machinery (``Variant``, ``with_bug``), so they follow
the solution when it changes; a substitution that no longer matches fails loudly.
"""

from __future__ import annotations

from grading_fixtures import AssignmentFiles, Variant, _v, replace_cell, swallowing_hang

FILES = AssignmentFiles("05_efficiency", 'check("q6")')
SOLUTION, ASSIGNMENT = FILES.solution_path, FILES.assignment_path
solution, student, answers_only = FILES.solution, FILES.student, FILES.answers_only

VARIANTS: list[Variant] = [
    # q1: magnitude pruning
    _v("pruning the largest weights", "magnitude_prune_mask", "q1",
       ("torch.argsort(weight.abs().flatten(), stable=True)",
        "torch.argsort(weight.abs().flatten(), stable=True, descending=True)")),
    _v("sparsity off by one element (int truncates)", "magnitude_prune_mask", "q1",
       ("n_prune = round(sparsity * weight.numel())",
        "n_prune = int(sparsity * weight.numel())")),
    _v("sparsity off by one element (ceil)", "magnitude_prune_mask", "q1",
       ("n_prune = round(sparsity * weight.numel())",
        "n_prune = -int(-sparsity * weight.numel() // 1)")),
    _v("pruning by signed value, not magnitude", "magnitude_prune_mask", "q1",
       ("torch.argsort(weight.abs().flatten(), stable=True)",
        "torch.argsort(weight.flatten(), stable=True)")),
    _v("a threshold that prunes every weight tied with the last one", "magnitude_prune_mask",
       "q1", ("mask[order[:n_prune]] = 0",
              "flat = weight.abs().flatten()\n"
              "    if n_prune:\n"
              "        mask[flat <= flat[order[n_prune - 1]]] = 0")),
    _v("ties broken by the last index (unstable order)", "magnitude_prune_mask", "q1",
       ("order = torch.argsort(weight.abs().flatten(), stable=True)",
        "order = weight.numel() - 1 - torch.argsort(weight.abs().flatten().flip(0), "
        "stable=True)")),
    # q2: affine int8 quantization
    _v("zero point with the wrong sign", "quantize", "q2",
       ("torch.round(x / scale) + zero_point", "torch.round(x / scale) - zero_point")),
    _v("rounding before scaling", "quantize", "q2",
       ("torch.round(x / scale)", "torch.round(x) / scale")),
    _v("no clamping (int8 wraps around)", "quantize", "q2",
       ("q.clamp(-128, 127).to(torch.int8)", "q.to(torch.int8)")),
    _v("truncation instead of rounding", "quantize", "q2",
       ("torch.round(x / scale)", "torch.trunc(x / scale)")),
    _v("dequantize forgets the zero point", "dequantize", "q2",
       ("(q.float() - zero_point) * scale", "q.float() * scale")),
    _v("dequantize in int8 arithmetic (q - zero_point wraps around)", "dequantize", "q2",
       ("(q.float() - zero_point) * scale", "((q - zero_point) * scale).float()")),
    _v("range not widened to include zero", "qparams", "q2",
       ("lo, hi = min(x_min, 0.0), max(x_max, 0.0)", "lo, hi = x_min, x_max")),
    _v("qparams zero point with the wrong sign", "qparams", "q2",
       ("zero_point = -128 - round(lo / scale)", "zero_point = -128 + round(lo / scale)")),
    _v("scale over 256 levels instead of 255 steps", "qparams", "q2",
       ("(hi - lo) / (127 - -128)", "(hi - lo) / 256")),
    _v("no floor on the scale (division by zero on an all-zero layer)", "qparams", "q2",
       ("max((hi - lo) / (127 - -128), torch.finfo(torch.float32).eps)",
        "(hi - lo) / (127 - -128)")),
    # q3: k-means weight sharing
    _v("k-means on the pruned zeros", "share_weights", "q3",
       ("keep = weight != 0", "keep = torch.ones_like(weight, dtype=torch.bool)")),
    _v("centroids never updated", "share_weights", "q3",
       ("                c[j] = members.mean()", "                pass")),
    _v("k-means: an empty cluster's centroid becomes the mean of nothing (nan)",
       "share_weights", "q3",
       ("            if len(members):\n                c[j] = members.mean()",
        "            c[j] = members.mean()")),
    _v("one k-means iteration too few", "share_weights", "q3",
       ("for _ in range(n_iter):", "for _ in range(n_iter - 1):")),
    _v("labels not reassigned after the last update", "share_weights", "q3",
       ("                c[j] = members.mean()\n    labels = nearest(c)",
        "                c[j] = members.mean()")),
    _v("nearest centroid by signed difference", "share_weights", "q3",
       ("(values[:, None] - c[None, :]).abs().argmin(dim=1)",
        "(values[:, None] - c[None, :]).argmin(dim=1)")),
    _v("k-means on the magnitudes |w|, not the weights", "share_weights", "q3",
       ("values = weight[keep].double()", "values = weight[keep].abs().double()")),
    # q4: Huffman coding
    _v("Huffman built on the wrong frequencies (every symbol once)", "huffman_bits", "q4",
       ("counts = counts.tolist()", "counts = [1] * len(values)")),
    _v("Huffman built on the wrong frequencies (absent symbols counted)", "huffman_bits", "q4",
       ("values, counts = torch.unique(symbols, return_counts=True)",
        "values = torch.arange(int(symbols.min()), int(symbols.max()) + 1)\n"
        "    counts = torch.bincount(symbols - symbols.min(), minlength=len(values))")),
    _v("a single symbol costs no bits", "huffman_bits", "q4",
       ("return counts[0]  # one symbol: one bit each", "return 0")),
    _v("merging the two most frequent groups", "huffman_bits", "q4",
       ("heap = [(c, i, [i])", "heap = [(-c, i, [i])")),
    _v("code lengths not weighted by the counts", "huffman_bits", "q4",
       ("sum(n * length for n, length in zip(counts, lengths, strict=True))",
        "sum(lengths)")),
    _v("heap entries that compare the groups when two counts tie", "huffman_bits", "q4",
       ("heap = [(c, i, [i]) for i, c in enumerate(counts)]",
        'heap = [(c, {"group": [i]}) for i, c in enumerate(counts)]'),
       ("c1, _, group1 = heapq.heappop(heap)",
        'c1, node1 = heapq.heappop(heap)\n        group1 = node1["group"]'),
       ("c2, _, group2 = heapq.heappop(heap)",
        'c2, node2 = heapq.heappop(heap)\n        group2 = node2["group"]'),
       ("heapq.heappush(heap, (c1 + c2, order, group1 + group2))",
        'heapq.heappush(heap, (c1 + c2, {"group": group1 + group2}))')),
    # q5: Winograd
    _v("Winograd input transform transposed (1-D)", "winograd_1d", "q5",
       ("(tiles @ BT.T)", "(tiles @ BT)")),
    _v("Winograd input transform transposed (2-D)", "winograd_2d", "q5",
       ("V = BT @ tiles @ BT.T", "V = BT.T @ tiles @ BT")),
    _v("Winograd with a flipped filter (convolution, not cross-correlation)", "winograd_1d",
       "q5", ("(G @ w)", "(G @ w.flip(0))")),
    _v("Winograd tiles that do not overlap", "winograd_1d", "q5",
       ("x.unfold(0, 4, 2)", "x.unfold(0, 4, 4)")),
    _v("Winograd input transform on one side only", "winograd_2d", "q5",
       ("V = BT @ tiles @ BT.T", "V = BT @ tiles")),
    _v("Winograd output tiles put back in the wrong order", "winograd_2d", "q5",
       ("Y.permute(0, 1, 3, 2, 4)", "Y")),
    _v("Winograd through F.conv2d", "winograd_2d", "q5",
       ("    U = G @ w @ G.T", "    return F.conv2d(x[None], w)[0]\n    U = G @ w @ G.T")),
    # q6: distillation
    _v("distillation without tau^2", "distillation_loss", "q6",
       ("alpha * temperature**2 * kl", "alpha * kl")),
    _v("softmax instead of log-softmax on the student", "distillation_loss", "q6",
       ("log_p_s = F.log_softmax(", "log_p_s = F.softmax(")),
    _v("teacher without the temperature", "distillation_loss", "q6",
       ("F.log_softmax(teacher_logits / temperature, dim=1)",
        "F.log_softmax(teacher_logits, dim=1)")),
    _v("hard-label term at temperature tau", "distillation_loss", "q6",
       ("F.cross_entropy(student_logits, labels)",
        "F.cross_entropy(student_logits / temperature, labels)")),
    _v("KL averaged over the classes too", "distillation_loss", "q6",
       (".sum(dim=1).mean()", ".mean()")),
    _v("alpha on the wrong term", "distillation_loss", "q6",
       ("alpha * temperature**2 * kl + (1 - alpha) * hard",
        "(1 - alpha) * temperature**2 * kl + alpha * hard")),
    _v("KL divergence the wrong way round", "distillation_loss", "q6",
       ("(log_p_t.exp() * (log_p_t - log_p_s))", "(log_p_s.exp() * (log_p_s - log_p_t))")),
    _v("F.kl_div on log-probabilities without log_target=True", "distillation_loss", "q6",
       ("kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()",
        "kl = F.kl_div(log_p_s, log_p_t, reduction='batchmean')")),
    _v("hard-label term not weighted by (1 - alpha)", "distillation_loss", "q6",
       ("+ (1 - alpha) * hard", "+ hard")),
    _v("loss detached from the student's logits", "distillation_loss", "q6",
       ("return alpha * temperature**2 * kl + (1 - alpha) * hard",
        "return torch.tensor((alpha * temperature**2 * kl + (1 - alpha) * hard).item())")),
]

HANGING_HUFFMAN = swallowing_hang("def huffman_bits(symbols):")


HONEST_FORMS = {  # correct answers written differently from the solution: all get full marks
    "magnitude_prune_mask": '''
def magnitude_prune_mask(weight, sparsity):
    """A boolean mask, from a stable sort of the magnitudes in float64."""
    k = round(sparsity * weight.numel())
    _, order = torch.sort(weight.detach().abs().reshape(-1).double(), stable=True)
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    keep[order[:k]] = False
    return keep.reshape(weight.shape)
''',
    "quantize": '''
import numpy as np


def qparams(x_min, x_max):
    lo, hi = np.minimum(x_min, 0.0), np.maximum(x_max, 0.0)
    scale = float(np.maximum((hi - lo) / 255.0, np.finfo(np.float32).eps))
    return scale, int(-128 - np.round(lo / scale))


def quantize(x, scale, zero_point):
    return torch.clamp(torch.round(x / scale + zero_point), -128, 127).to(torch.int8)


def dequantize(q, scale, zero_point):
    return scale * (q.to(torch.float32) - zero_point)
''',
    "share_weights": '''
def share_weights(weight, centroids, n_iter):
    """k-means in float32, centroids by index_add_ (no loop over the clusters)."""
    nonzero = weight.flatten() != 0
    v = weight.flatten()[nonzero]
    c = centroids.to(weight.dtype).clone()
    for _ in range(n_iter):
        labels = torch.argmin((v[:, None] - c[None, :]).abs(), dim=1)
        sums = torch.zeros_like(c).index_add_(0, labels, v)
        counts = torch.bincount(labels, minlength=len(c))
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    labels = torch.argmin((v[:, None] - c[None, :]).abs(), dim=1)
    out = torch.zeros_like(weight).flatten()
    out[nonzero] = c[labels]
    return out.view_as(weight), c
''',
    "huffman_bits": '''
from collections import Counter


def huffman_bits(symbols):
    """The sum of the merged nodes' counts (each merge adds one bit below it)."""
    heap = list(Counter(symbols.tolist()).values())
    if len(heap) == 1:
        return heap[0]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return total
''',
    "winograd_1d": '''
def winograd_1d(x, w):
    """One tile at a time."""
    u = G @ w
    out = []
    for i in range(0, len(x) - 2, 2):
        out.append(AT @ (u * (BT @ x[i:i + 4])))
    return torch.cat(out)


def winograd_2d(x, w):
    """Loops over output channels and tiles; sums the channels in the transformed domain."""
    c_out, c_in = w.shape[:2]
    h, wd = x.shape[1] - 2, x.shape[2] - 2
    out = torch.zeros(c_out, h, wd)
    for o in range(c_out):
        for i in range(0, h, 2):
            for j in range(0, wd, 2):
                m = sum((G @ w[o, c] @ G.T) * (BT @ x[c, i:i + 4, j:j + 4] @ BT.T)
                        for c in range(c_in))
                out[o, i:i + 2, j:j + 2] = AT @ m @ AT.T
    return out
''',
    "distillation_loss": '''
def distillation_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """With F.kl_div (log-probabilities in, probabilities as the target)."""
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                    F.softmax(teacher_logits / temperature, dim=-1), reduction="batchmean")
    return temperature**2 * alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)
''',
}


HONEST_FORMS_2 = {  # more correct answers in other forms: all get full marks
    "magnitude_prune_mask": '''
def magnitude_prune_mask(weight, sparsity):
    """Python's sorted() is stable too."""
    n = weight.numel()
    flat = weight.flatten().tolist()
    pruned = sorted(range(n), key=lambda i: abs(flat[i]))[:round(sparsity * n)]
    mask = torch.ones(n)
    mask[pruned] = 0.0
    return mask.reshape(weight.shape).to(weight.dtype)
''',
    "quantize": '''
def qparams(x_min, x_max):
    lo, hi = min(0.0, x_min), max(0.0, x_max)
    scale = (hi - lo) / 255.0
    if scale < torch.finfo(torch.float32).eps:
        scale = float(torch.finfo(torch.float32).eps)
    return scale, round(-lo / scale) - 128


def quantize(x, scale, zero_point):
    """Rounding half up: the same as round-half-even away from exact ties."""
    q = torch.floor(x / scale + 0.5) + zero_point
    return torch.clamp(q, min=-128, max=127).to(torch.int8)


def dequantize(q, scale, zero_point):
    return scale * (q.to(torch.int32) - zero_point).to(torch.float32)
''',
    "share_weights": '''
def share_weights(weight, centroids, n_iter):
    """Stops early once the assignment no longer changes (so does scikit-learn)."""
    nz = weight.nonzero(as_tuple=True)
    v = weight[nz].double()
    c = centroids.double().clone()
    labels = None
    for _ in range(n_iter):
        new = torch.cdist(v[:, None], c[:, None]).argmin(1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        c = torch.stack([v[labels == j].mean() if bool((labels == j).any()) else c[j]
                         for j in range(len(c))])
    labels = torch.cdist(v[:, None], c[:, None]).argmin(1)
    shared = weight.clone()
    shared[nz] = c[labels].to(weight.dtype)
    return shared, c
''',
    "huffman_bits": '''
def huffman_bits(symbols):
    """An explicit tree, then the depth of every leaf."""
    counts = torch.bincount(symbols - symbols.min())
    counts = [int(n) for n in counts if n > 0]
    if len(counts) == 1:
        return counts[0]
    nodes = [(n, i, None) for i, n in enumerate(counts)]
    heapq.heapify(nodes)
    uid = len(nodes)
    while len(nodes) > 1:
        a, b = heapq.heappop(nodes), heapq.heappop(nodes)
        heapq.heappush(nodes, (a[0] + b[0], uid, (a, b)))
        uid += 1

    def walk(node, depth):
        if node[2] is None:
            return node[0] * depth
        return walk(node[2][0], depth + 1) + walk(node[2][1], depth + 1)

    return walk(nodes[0], 0)
''',
    "winograd_1d": '''
def winograd_1d(x, w):
    tiles = torch.stack([x[i:i + 4] for i in range(0, len(x) - 2, 2)])
    return torch.einsum("ai,ti->ta", AT, (G @ w) * torch.einsum("ai,ti->ta", BT, tiles)).reshape(-1)


def winograd_2d(x, w):
    """einsum throughout; the channel sum after the output transform (it is linear)."""
    U = torch.einsum("ai,ocij,bj->ocab", G, w, G)
    t = x.unfold(1, 4, 2).unfold(2, 4, 2)
    V = torch.einsum("ai,cxyij,bj->cxyab", BT, t, BT)
    Y = torch.einsum("ai,ocxyij,bj->ocxyab", AT, U[:, :, None, None] * V[None], AT).sum(1)
    o, r, s = Y.shape[:3]
    return Y.transpose(2, 3).reshape(o, 2 * r, 2 * s)
''',
    "distillation_loss": '''
def distillation_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """kl_div summed, then divided by the batch size; the hard term by nll_loss."""
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                  reduction="sum", log_target=True) / student_logits.shape[0]
    hard = F.nll_loss(F.log_softmax(student_logits, -1), labels)
    return alpha * t * t * kl + (1 - alpha) * hard
''',
}


def honest_forms(forms: dict[str, str] = HONEST_FORMS):
    """The solution's answers, each replaced by one of ``forms``."""
    nb = answers_only(solution())
    for function, source in forms.items():
        replace_cell(nb, function, source.strip())
    return nb
