"""Data-parallel training with ``torch.distributed``: what ``fit`` needs to run under torchrun.

Started as ``torchrun --nproc_per_node=N script.py``, every process runs the same script.
torchrun tells each one who it is through environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :meth:`ProcessGroup.from_env` reads them,
joins the process group (``nccl`` between GPUs, ``gloo`` on the CPU) and says which device
this process owns. Then, in ``fit``:

- the model is wrapped in ``DistributedDataParallel``, which averages the gradients of all
  processes during ``backward`` (an all-reduce), so every process takes the same step;
- each global batch of ``B`` images is split into ``N`` shards of ``B / N``, one per process,
  from one shuffle that process 0 broadcasts: the processes together see exactly the batches
  a single process would, so they end with the same weights (up to float rounding);
- the running sums behind the metrics (loss, correct answers, images seen) are added up
  across processes, so every process reports -- and decides on early stopping and
  divergence -- from the same numbers;
- each process draws its own random numbers (dropout masks, stochastic depth, augmentation),
  although the script seeded them all alike: process ``r`` > 0 reseeds with the seed + ``r``;
- only process 0 prints (``is_main``); save files only there too (:func:`is_main_process`).

Outside torchrun, :meth:`ProcessGroup.from_env` returns a one-process group whose methods
change nothing, so ``fit`` has one code path. All communication is torch.distributed's.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .device import DeviceError


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or any launcher that sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's number among the training processes (0 outside data parallelism)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 outside data parallelism)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in process 0, the one that prints and writes files (always True alone)."""
    return rank() == 0


@dataclass(frozen=True)
class ProcessGroup:
    """The processes training one model together, seen from one of them."""

    rank: int
    world_size: int
    device: torch.device
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device, timeout_s: float = 300.0) -> ProcessGroup:
        """Join the process group torchrun describes (once per process), or stand alone.

        On CUDA each process uses the GPU numbered by its ``LOCAL_RANK`` and the ``nccl``
        backend; on the CPU, ``gloo``. A group someone already initialized (e.g. with
        ``torch.distributed.init_process_group`` in a test) is used as it is.
        """
        initialized = dist.is_available() and dist.is_initialized()
        if not initialized and not launched_by_torchrun():
            return cls(0, 1, device)
        if device.type not in ("cpu", "cuda"):
            raise DeviceError(f"Data-parallel training runs on CUDA GPUs (nccl) or on the CPU "
                              f"(gloo), not on {device.type!r}: set COURSE_DEVICE=cpu.")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not initialized:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=timedelta(seconds=timeout_s))
            atexit.register(_destroy)
        return cls(dist.get_rank(), dist.get_world_size(), device, dist.get_backend())

    def describe(self) -> str:
        """'' alone; otherwise how many processes train together, and over what."""
        if self.world_size == 1:
            return ""
        return f" | {self.world_size} processes ({self.backend})"

    # -- the model -------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` inside ``DistributedDataParallel`` (which first copies process 0's
        weights to every process), or ``model`` itself when alone."""
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def decorrelate_randomness(self) -> None:
        """Give every process its own random stream, keeping process 0's.

        Every process runs the same script, usually with the same ``seed_everything`` call, so
        without this each would draw the same dropout masks and augmentations for its
        different shard (correct, but not the independent draws one process makes for a
        whole batch). Process ``r`` > 0 reseeds with ``torch.initial_seed() + r``; process 0
        keeps its stream, and the shuffle is process 0's anyway (broadcast).
        """
        if self.rank:
            torch.manual_seed((torch.initial_seed() + self.rank) % 2**64)  # seeds are 64-bit

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy process 0's buffers (batch norm's running statistics) to every process.

        DDP does so before each training forward pass; after the last one the processes'
        statistics differ by their last shards, so this runs before evaluating.
        """
        if self.world_size == 1:
            return
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    # -- the data ----------------------------------------------------------------------------
    def shard(self, loader: Any, train: bool = True) -> Any:
        """This process's share of ``loader`` (a ``DeviceLoader``), or ``loader`` when alone.

        ``train=True``: every global batch is split evenly across the processes (a batch size
        not divisible by the number of processes is an error). ``train=False``: every
        process evaluates every ``N``-th image, so the test split is covered exactly once.
        """
        if self.world_size == 1:
            return loader
        if not hasattr(loader, "prepare") or not hasattr(loader, "images"):
            raise TypeError("Data-parallel fit() needs the device-resident loaders of "
                            f"load_data(), got {type(loader).__name__}.")
        cls = ShardedTrainLoader if train else ShardedEvalLoader
        return cls(loader, self.rank, self.world_size)

    # -- the metrics ---------------------------------------------------------------------------
    def all_sum(self, *values: Any) -> tuple[Any, ...]:
        """Each value (a tensor on the device or a number) summed over the processes, in one
        all-reduce; tensors come back as tensors of their dtype, numbers as numbers."""
        if self.world_size == 1:
            return values
        packed = torch.tensor([v.item() if torch.is_tensor(v) else float(v) for v in values],
                              dtype=torch.float64, device=self.device)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        out = []
        for value, total in zip(values, packed.tolist(), strict=True):
            if torch.is_tensor(value):
                out.append(torch.tensor(total, dtype=value.dtype, device=value.device))
            else:
                out.append(type(value)(round(total) if isinstance(value, int) else total))
        return tuple(out)

    def all_mean(self, total: torch.Tensor, count: int) -> float:
        """Over all processes, sum(total) / sum(count): a running mean of the whole group."""
        total, count = self.all_sum(total, count)
        return (total / count).item()

    def all_average(self, means: tuple[float, ...], count: int) -> tuple[float, ...]:
        """Per-process means (of ``count`` items each) turned into means over all items."""
        if self.world_size == 1:
            return tuple(means)
        *sums, n = self.all_sum(*(m * count for m in means), count)
        return tuple(s / n for s in sums)


class ShardedTrainLoader:
    """One process's shard of every global batch of a ``DeviceLoader``.

    The order of the images is drawn by process 0 and broadcast, so all processes agree on
    it. Global batch ``i`` (``B`` images) is split into ``N`` consecutive pieces of
    ``B // N``, and this process trains on piece ``rank``. When the last batch of an epoch
    has ``m < B`` images, each process gets ``m // N`` (at most ``N - 1`` images of the epoch
    are skipped) -- every process must take the same number of steps.
    """

    def __init__(self, loader: Any, rank: int, world_size: int) -> None:
        if loader.batch_size % world_size:
            raise ValueError(f"The batch size ({loader.batch_size}) must be divisible by the "
                             f"number of processes ({world_size}): each takes an equal share.")
        if loader.num_samples < world_size:
            raise ValueError(f"{loader.num_samples} training images cannot be shared by "
                             f"{world_size} processes.")
        self.loader, self.rank, self.world_size = loader, rank, world_size
        self.batch_size = loader.batch_size // world_size  # per process

    @property
    def num_samples(self) -> int:
        """Images this process trains on per epoch."""
        n, b = self.loader.num_samples, self.loader.batch_size
        last = 0 if self.loader.drop_last else (n % b) // self.world_size
        return (n // b) * self.batch_size + last

    @property
    def device(self) -> torch.device:
        return self.loader.device

    def __len__(self) -> int:
        n, b = self.loader.num_samples, self.loader.batch_size
        full, rest = divmod(n, b)
        return full + int(not self.loader.drop_last and rest >= self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader, n = self.loader, self.loader.num_samples
        if loader.shuffle:
            order = torch.randperm(n, device=loader.device)
            dist.broadcast(order, src=0)  # one shuffle for all processes: process 0's
        else:
            order = torch.arange(n, device=loader.device)
        for i in range(len(self)):
            batch = order[i * loader.batch_size:(i + 1) * loader.batch_size]
            share = len(batch) // self.world_size
            idx = batch[self.rank * share:(self.rank + 1) * share]
            yield loader.prepare(loader.images[idx]), loader.labels[idx]


class ShardedEvalLoader:
    """Every ``N``-th image of a ``DeviceLoader``, starting at ``rank``, in batches."""

    def __init__(self, loader: Any, rank: int, world_size: int) -> None:
        self.loader = loader
        self.indices = torch.arange(rank, loader.num_samples, world_size, device=loader.device)
        if len(self.indices) == 0:
            raise ValueError(f"{loader.num_samples} test images cannot be shared by "
                             f"{world_size} processes.")
        self.batch_size = loader.batch_size

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            idx = self.indices[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.loader.prepare(self.loader.images[idx]), self.loader.labels[idx]


def torchrun(script: str | os.PathLike, *args: str, nproc: int = 2, timeout_s: float = 120.0,
             threads: int = 1, env: dict[str, str] | None = None) -> str:
    """Run ``torchrun --standalone --nproc_per_node=nproc script args...`` and return (and
    print) its output; a failure or a hang past ``timeout_s`` raises with the output.

    What a notebook uses to start processes it cannot start inside its own kernel. Each
    process gets ``threads`` CPU threads (``OMP_NUM_THREADS``) and this process's environment
    plus ``env`` (e.g. ``{"COURSE_DEVICE": "cpu"}``); ``--standalone`` picks a free port on
    this machine.
    """
    import subprocess
    import sys

    torchrun_sets = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    environment = {k: v for k, v in os.environ.items() if k not in torchrun_sets}
    environment |= {**(env or {}), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(script), *map(str, args)]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                             env=environment)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"torchrun did not finish within {timeout_s:g} s: "
                           f"{' '.join(command)}") from None
    if run.returncode != 0:
        raise RuntimeError(f"torchrun failed (exit code {run.returncode}):\n"
                           f"{run.stdout[-4000:]}{run.stderr[-4000:]}")
    print(run.stdout, end="")
    return run.stdout


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
