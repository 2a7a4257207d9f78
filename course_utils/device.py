"""Where the code runs: pick the accelerator, and say which one was picked.

Order of preference is CUDA, then Apple MPS, then the CPU. ``COURSE_DEVICE`` overrides the
choice (``cpu``, ``cuda``, ``cuda:1``, ``mps``), and asking for a device that is not there is a
clear error rather than a stack trace from deep inside torch.
"""

from __future__ import annotations

import os
import platform

import torch

VALID_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


class DeviceError(ValueError):
    """A requested device is unknown or not available on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(name: str | torch.device | None = None) -> torch.device:
    """Return the device to train on.

    ``name`` wins if given; otherwise ``COURSE_DEVICE``; otherwise the best available device
    (CUDA, then MPS, then CPU).
    """
    if isinstance(name, torch.device):
        name = str(name)
    requested = (name or os.environ.get("COURSE_DEVICE", "auto")).strip().lower()
    if requested in ("", "auto"):
        if torch.cuda.is_available():
            return _this_process_cuda()
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    kind, _, index = requested.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise DeviceError(
            f"Unknown device {requested!r}; valid values are {', '.join(VALID_DEVICES)}."
        )
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"Device {requested!r} was requested (COURSE_DEVICE or argument) but CUDA is not "
                "available here. Use 'cpu', or unset COURSE_DEVICE to pick automatically."
            )
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceError(
                f"Device {requested!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    if kind == "mps" and not _mps_available():
        raise DeviceError(
            "Device 'mps' was requested but Apple MPS is not available here. Use 'cpu', or "
            "unset COURSE_DEVICE to pick automatically."
        )
    return _this_process_cuda() if requested == "cuda" else torch.device(requested)


def _this_process_cuda() -> torch.device:
    """'cuda', or under torchrun (several processes) the GPU numbered by ``LOCAL_RANK``, so
    that each process loads its data onto its own GPU (``course_utils.distributed``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        local_rank, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= count:
            raise DeviceError(f"torchrun started process {local_rank} of this machine, which "
                              f"has {count} GPU(s): start at most {count} per machine "
                              "(--nproc_per_node), or train on CPU processes with "
                              "COURSE_DEVICE=cpu.")
        return torch.device("cuda", local_rank)
    return torch.device("cuda")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced-precision dtype worth autocasting to on ``device``, or None for fp32.

    bf16 on GPUs that support it (no loss scaling needed), fp16 (with loss scaling in ``fit``)
    on older GPUs. On the CPU we stay in fp32: bf16 autocast there is slower than fp32 on most
    laptops. On Apple MPS too: fp16 there would need loss scaling, whose MPS support varies
    across torch versions.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait until every kernel queued on ``device`` has finished (a no-op on the CPU)."""
    device = get_device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device) -> str:
    """A human-readable name for ``device`` (the GPU model, or the CPU's architecture)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU ({platform.machine() or 'unknown'}, {threads} thread{'s' if threads != 1 else ''})"


def device_summary(device: torch.device | None = None) -> str:
    """One line saying what hardware and software a run uses."""
    device = device or get_device()
    dtype = autocast_dtype(device)
    precision = "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    return f"{device} -- {device_name(device)} | torch {torch.__version__} | {precision}"
