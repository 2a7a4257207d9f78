"""Reading a network layer by layer: output shape, parameters, multiply-adds, activations.

``summarize(model, (C, H, W))`` runs one image through ``model`` and returns a
:class:`Summary`: one row per layer with the shape of its output, its parameters, its
multiply-adds (counted by ``torch.utils.flop_counter``, which counts one multiply-add as two
FLOPs) and the number of values it writes (its activations), plus the totals. Printing it
gives the table every page of the architectures chapter shows.

Build a large network on the ``meta`` device (``with torch.device("meta"): model = ...``)
and the summary costs almost nothing: shapes, parameters and multiply-adds only need the
shapes, not the numbers, so VGG-16 at 224x224 is summarized without computing a single
convolution.

What counts as an activation: the output of every layer (a module without sub-modules), one
tensor per call, plus the input image. Outputs written in place (``ReLU(inplace=True)``) or
that are views of the input (``Flatten``, ``Dropout`` in eval mode) hold no new memory and
are not counted; neither are tensors made inside a ``forward`` method (the concatenation of
an Inception module, the addition of a residual block). It is the forward-pass footprint of
one image that lecture notes tabulate, not the exact memory autograd keeps for backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerRow:
    """One row of a :class:`Summary`; counts are per image."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activations: int


@dataclass
class Summary:
    """Per-layer table and totals for one image of shape ``input_shape``."""

    model_name: str
    input_shape: tuple[int, int, int]
    rows: list[LayerRow]
    params: int
    macs: int
    activations: int  # including the input image
    bytes_per_value: int = 4
    output_shape: tuple[int, ...] = field(default_factory=tuple)

    @property
    def activation_bytes(self) -> int:
        """Forward activation memory of one image, in bytes, at ``bytes_per_value``."""
        return self.activations * self.bytes_per_value

    def row(self, name: str) -> LayerRow:
        """The row called ``name``; an unknown name lists the valid ones."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"No layer {name!r}; layers are {', '.join(r.name for r in self.rows)}.")

    def select(self, kinds: str | Sequence[str]) -> list[LayerRow]:
        """The rows whose layer type is one of ``kinds`` (e.g. ``"Conv2d"``)."""
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        return [r for r in self.rows if r.kind in kinds]

    def table(self, skip_empty: bool = True, max_rows: int | None = None) -> str:
        """The table as text. ``skip_empty`` hides rows with no parameters, multiply-adds or
        activations (in-place ReLUs, flattens); ``max_rows`` keeps the first and last rows."""
        rows = [r for r in self.rows if not skip_empty or r.params or r.macs or r.activations]
        if max_rows is not None and len(rows) > max_rows:
            half = max_rows // 2
            rows = rows[:half] + [None] + rows[-(max_rows - half):]
        width = max([len(r.name) for r in rows if r is not None] + [5])
        c, h, w = self.input_shape
        head = (f"{'layer':{width}s} {'type':17s} {'output':>16s} {'parameters':>12s} "
                f"{'mult-adds':>14s} {'activations':>12s}")
        lines = [f"{self.model_name} on one {c}x{h}x{w} input", head, "-" * len(head)]
        for r in rows:
            if r is None:
                lines.append(f"{'...':{width}s}")
                continue
            shape = "x".join(map(str, r.output_shape))
            lines.append(f"{r.name:{width}s} {r.kind[:17]:17s} {shape:>16s} {r.params:12,d} "
                         f"{r.macs:14,d} {r.activations:12,d}")
        lines.append("-" * len(head))
        lines.append(f"{'total':{width}s} {'':17s} {'':>16s} {self.params:12,d} "
                     f"{self.macs:14,d} {self.activations:12,d}")
        lines.append(f"activations: {c * h * w:,} input values included; "
                     f"{self.activation_bytes / 1e6:,.1f} MB at {self.bytes_per_value} bytes each")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _is_new_tensor(output: torch.Tensor, inputs: tuple) -> bool:
    """False for outputs written in place or that are views of an input."""
    for x in inputs:
        if not isinstance(x, torch.Tensor):
            continue
        if output is x or (output._base is not None and output._base is (x._base or x)):
            return False
    return True


def summarize(model: nn.Module, input_shape: tuple[int, int, int], *,
              depth: int | None = None, bytes_per_value: int = 4,
              name: str | None = None) -> Summary:
    """Summarize ``model`` on one image of shape ``input_shape`` = (C, H, W).

    ``depth=None`` gives one row per layer (module without sub-modules); ``depth=1`` one
    row per top-level child (e.g. ResNet's ``layer1`` ... ``layer4``), ``depth=2`` one level
    further, and so on -- each row adds up the layers inside it. The input is created on the
    device of the model's parameters (use the ``meta`` device for large networks). The model
    runs in eval mode under ``torch.no_grad`` and is left in the mode it had.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}.")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    leaves = {n: m for n, m in model.named_modules() if n and not any(m.children())}
    shapes: dict[str, tuple[int, ...]] = {}
    written: dict[str, int] = {n: 0 for n in leaves}

    def hook(module_name: str):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor):
                shapes[module_name] = tuple(output.shape[1:])
                if module_name in written and _is_new_tensor(output, inputs):
                    written[module_name] += output[0].numel()
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            out = model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    root = type(model).__name__
    flops = {k.removeprefix(root + "."): v for k, v in counter.get_flop_counts().items()}

    def row_names() -> list[str]:
        if depth is None:
            return list(leaves)
        names = []
        for n, _ in model.named_modules():
            level = n.count(".") + 1
            if n and (level == depth or (level < depth and n in leaves)):
                names.append(n)
        return names

    rows = []
    for n in row_names():
        module = model.get_submodule(n)
        inside = [leaf for leaf in leaves if leaf == n or leaf.startswith(n + ".")]
        if n not in shapes and not any(p.numel() for p in module.parameters()):
            continue  # a layer the forward pass never used (e.g. a disabled classifier)
        rows.append(LayerRow(
            name=n,
            kind=type(module).__name__,
            output_shape=shapes.get(n, ()),
            params=sum(p.numel() for p in module.parameters()),
            macs=int(sum(flops.get(n, {}).values())) // 2,
            activations=sum(written[leaf] for leaf in inside),
        ))
    image = 1
    for s in input_shape:
        image *= s
    return Summary(
        model_name=name or root,
        input_shape=tuple(input_shape),
        rows=rows,
        params=sum(p.numel() for p in model.parameters()),
        macs=int(counter.get_total_flops()) // 2,
        activations=image + sum(written.values()),
        bytes_per_value=bytes_per_value,
        output_shape=tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else (),
    )
