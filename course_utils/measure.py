"""Measuring a training run: FLOPs, wall time, throughput, peak memory and utilization.

The chapters and the benchmarks ask the same questions of a run -- how much arithmetic does
one image cost, how long did it take, how much memory did it hold, and how close did it get
to what the hardware can do -- so the answers live here, once.

- :func:`flops_per_image` counts FLOPs with ``torch.utils.flop_counter`` (one multiply-add is
  two FLOPs), for inference or for a training step (forward plus backward).
- :class:`Stopwatch` reads the clock only after the device has finished its queued work
  (CUDA and MPS kernels run asynchronously; reading the clock without synchronizing times
  the launch, not the work).
- :class:`PeakMemory` records the peak memory of a block: allocated device memory on a GPU,
  the process's resident set (``VmHWM``) on a Linux CPU.
- :func:`peak_flops` and :func:`mfu` compare achieved FLOP/s with a table of published dense
  peaks for common GPUs (model FLOP utilization, "MFU").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .device import get_device, synchronize  # noqa: F401 - synchronize is part of this API

# --------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------

def flops_per_image(model: nn.Module, input_shape: tuple[int, ...], *, training: bool = False,
                    batch_size: int = 2, device: torch.device | str | None = None) -> float:
    """FLOPs that ``model`` spends on one image of shape ``input_shape`` = (C, H, W).

    ``training=False`` counts one forward pass; ``training=True`` counts forward and backward
    (about three times the forward cost: the backward pass computes gradients with respect to
    both the activations and the weights). Counted by ``torch.utils.flop_counter`` on a small
    batch and divided by its size; only matrix multiplications and convolutions are counted,
    which is where nearly all the arithmetic of a CNN is. The model is left in the mode
    (train/eval) and with the gradients it had.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}.")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    x = torch.randn(batch_size, *input_shape, device=device)
    was_training = model.training
    saved = {name: p.grad for name, p in model.named_parameters()}
    counter = FlopCounterMode(display=False)
    try:
        if training:
            model.train()
            with counter:
                model(x).float().sum().backward()
        else:
            model.eval()
            with counter, torch.no_grad():
                model(x)
    finally:
        model.train(was_training)
        for name, p in model.named_parameters():
            p.grad = saved[name]
    return counter.get_total_flops() / batch_size


# --------------------------------------------------------------------------------------
# Time and throughput
# --------------------------------------------------------------------------------------

class Stopwatch:
    """Wall-clock seconds of a ``with`` block, with the device synchronized at both ends.

    >>> with Stopwatch(device) as sw:
    ...     train()
    >>> sw.seconds
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = get_device(device) if not isinstance(device, torch.device) else device
        self.seconds = float("nan")
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def throughput(images: int, seconds: float) -> float:
    """Images per second; NaN when no time was measured."""
    return images / seconds if seconds > 0 else float("nan")


def timing_check(holds: bool, claim: str) -> None:
    """Print whether a claim about measured time held in this run.

    Wall-clock comparisons depend on the processor, its caches, its threads and whatever
    else the machine is doing, so the course never *asserts* them: a page would fail on a
    busy or unusual machine. Pages assert the machine-independent part of a claim (counts of
    operations and bytes) and report the timing part with this line, so a reader whose
    machine disagrees sees it said plainly instead of a silent mismatch with the prose.
    It returns nothing, so that as a cell's last line it adds no ``True`` under the line.
    """
    if holds:
        print(f"timing check -- held in this run: {claim}")
    else:
        print(f"timing check -- did NOT hold in this run: {claim}. Timings depend on the "
              "processor, its caches and its load; run the cell again, or read it as what "
              "this machine does.")


# --------------------------------------------------------------------------------------
# Peak memory
# --------------------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _cpu_peak_rss() -> int | None:
    """The process's peak resident set size in bytes (Linux ``VmHWM``), if readable."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_cpu_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory in bytes while a ``with`` block runs (``.bytes``; None if unknown).

    On CUDA: the peak of memory allocated by PyTorch tensors (``max_memory_allocated``),
    which is what decides whether a batch fits. On MPS: memory allocated at the end (MPS has
    no peak counter). On the CPU (Linux): the peak resident set of this process, reset at the
    start of the block -- it includes everything the process holds (Python, libraries, data),
    and not the memory of DataLoader worker processes. ``.kind`` says which one was measured.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = get_device(device) if not isinstance(device, torch.device) else device
        self.bytes: int | None = None
        self.kind = "unavailable"
        self._cpu_reset = False

    def __enter__(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type == "cpu":
            self._cpu_reset = _reset_cpu_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            self.bytes, self.kind = (torch.cuda.max_memory_allocated(self.device),
                                     "peak CUDA memory allocated")
        elif self.device.type == "mps":
            self.bytes, self.kind = torch.mps.current_allocated_memory(), "MPS memory allocated"
        elif self._cpu_reset:
            self.bytes, self.kind = _cpu_peak_rss(), "peak resident set of the main process"

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else self.bytes / 2**20


# --------------------------------------------------------------------------------------
# Peak FLOP/s and model FLOP utilization
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeakFlops:
    """Published dense peak throughput of a GPU, in TFLOP/s, by precision.

    ``fp32``: plain FP32 on CUDA cores; ``tf32``: FP32 matmuls/convolutions on tensor cores
    (what cuDNN uses for FP32 convolutions on Ampere and newer unless disabled); ``bf16`` and
    ``fp16``: tensor cores with FP32 accumulation. Dense figures (no 2:4 sparsity).
    """

    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float


# Keys are matched as substrings of torch.cuda.get_device_name(), most specific first.
# Values from the vendors' data sheets (dense; SXM unless the name says PCIe).
PEAK_TFLOPS: dict[str, PeakFlops] = {
    "H200": PeakFlops(fp32=67.0, tf32=494.7, bf16=989.4, fp16=989.4),
    "H100 PCIe": PeakFlops(fp32=51.2, tf32=378.0, bf16=756.0, fp16=756.0),
    "H100": PeakFlops(fp32=67.0, tf32=494.7, bf16=989.4, fp16=989.4),
    "A100": PeakFlops(fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0),
    "L40S": PeakFlops(fp32=91.6, tf32=183.0, bf16=362.0, fp16=362.0),
    "L4": PeakFlops(fp32=30.3, tf32=60.0, bf16=121.0, fp16=121.0),
    "A10": PeakFlops(fp32=31.2, tf32=62.5, bf16=125.0, fp16=125.0),
    "RTX 4090": PeakFlops(fp32=82.6, tf32=82.6, bf16=165.2, fp16=165.2),
    "RTX 3090": PeakFlops(fp32=35.6, tf32=35.6, bf16=71.0, fp16=71.0),
    "V100": PeakFlops(fp32=15.7, tf32=None, bf16=None, fp16=125.0),
    "T4": PeakFlops(fp32=8.1, tf32=None, bf16=None, fp16=65.0),
}


def lookup_peak(device_name: str) -> PeakFlops | None:
    """The :class:`PeakFlops` entry whose key occurs in ``device_name``, or None."""
    for key, peak in PEAK_TFLOPS.items():
        if key.lower() in device_name.lower():
            return peak
    return None


def peak_flops(device: torch.device | str | None = None,
               precision: str | torch.dtype | None = "fp32",
               device_name: str | None = None) -> float | None:
    """Dense peak FLOP/s of ``device`` at ``precision`` ('fp32', 'bf16', 'fp16'), or None.

    None on the CPU and MPS (no reliable public figure) and for GPUs not in
    :data:`PEAK_TFLOPS`. For 'fp32' on a GPU with TF32 tensor cores, the TF32 peak is used
    when cuDNN is allowed to use TF32 (PyTorch's default for convolutions), since that is the
    hardware the convolutions then run on. ``device_name`` overrides the name torch reports
    (for tests and for recomputing MFU from recorded results).
    """
    if device_name is None:
        device = get_device(device) if not isinstance(device, torch.device) else device
        if device.type != "cuda":
            return None
        device_name = torch.cuda.get_device_name(device)
    peak = lookup_peak(device_name)
    if peak is None:
        return None
    if isinstance(precision, torch.dtype):
        precision = str(precision).removeprefix("torch.")
    precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", None: "fp32"}.get(
        precision, precision)
    if precision == "fp32":
        use_tf32 = peak.tf32 is not None and torch.backends.cudnn.allow_tf32
        tflops = peak.tf32 if use_tf32 else peak.fp32
    elif precision in ("bf16", "fp16"):
        tflops = getattr(peak, precision)
    else:
        raise ValueError(f"Unknown precision {precision!r}; valid values are fp32, bf16, fp16.")
    return None if tflops is None else tflops * 1e12


def mfu(flops_per_image: float, images_per_sec: float, peak: float | None) -> float | None:
    """Model FLOP utilization: achieved model FLOP/s as a fraction of the peak ``peak``.

    ``flops_per_image`` is the model's own arithmetic per image (use the training count,
    forward plus backward, for a training run); anything the run spends on data loading,
    evaluation or waiting lowers the figure, which is the point. None if the peak is unknown.
    """
    if not peak:
        return None
    return flops_per_image * images_per_sec / peak
