"""Training and evaluation: ``fit`` and ``evaluate``.

``fit`` is the one training loop the course uses. What it does for speed (DESIGN principle 3):
batches come from device-resident data, the forward pass runs under bf16/fp16 autocast where
the hardware supports it, models use channels_last on CUDA, and metrics accumulate on the
device and are read back a handful of times per epoch instead of after every step.

Started by ``torchrun``, ``fit`` trains data-parallel with no change to the call: each process
trains on its shard of every global batch inside ``DistributedDataParallel``, the metrics are
summed over the processes, and only process 0 prints (``course_utils.distributed``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .callbacks import Callback
from .device import autocast_dtype, device_summary, get_device, synchronize
from .distributed import ProcessGroup
from .history import History
from .profile import Profile, get_profile

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "nadam": torch.optim.NAdam,
}

OptimizerSpec = str | Optimizer | Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerSpec = Any  # an LRScheduler, or a callable optimizer -> LRScheduler
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite. ``history`` holds the epochs completed before."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


class Metrics(NamedTuple):
    loss: float
    accuracy: float


def make_optimizer(spec: OptimizerSpec, params: Iterable[nn.Parameter], lr: float | None,
                   **kwargs) -> Optimizer:
    """An optimizer from a name ('sgd', 'adam', ...), a ready instance, or a factory."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str):
        try:
            cls = OPTIMIZERS[spec.lower()]
        except KeyError:
            raise ValueError(
                f"Unknown optimizer {spec!r}; valid names are {', '.join(OPTIMIZERS)} "
                "(or pass a torch.optim.Optimizer)."
            ) from None
        if lr is not None:
            kwargs["lr"] = lr
        return cls(params, **kwargs)
    return spec(params)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool):
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices: ``targets`` itself, or the most probable class of 2-D soft targets."""
    return targets.argmax(dim=1) if targets.ndim == 2 else targets


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str | None = None,
             amp: bool = True, loss_fn: Callable | None = None,
             channels_last: bool | None = None) -> Metrics:
    """Mean loss and accuracy of ``model`` over ``loader``, with one host sync at the end.

    ``channels_last`` defaults to True on CUDA, matching ``fit``. Targets are class indices,
    or (N, classes) probabilities: the loss then uses them as given and accuracy compares the
    prediction with their most probable class.
    """
    device = get_device(device) if device is not None else next(model.parameters()).device
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    dtype = autocast_dtype(device) if amp else None
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader:
        x, y = _to_device(x, y, device, channels_last)
        with _autocast(device, dtype):
            out = model(x)
        loss_sum += loss_fn(out.float(), y) * len(y)
        correct += (out.argmax(dim=1) == _hard_labels(y)).sum()
        seen += len(y)
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate() got an empty loader.")
    return Metrics((loss_sum / seen).item(), correct.item() / seen)


def _describe_data(data: Any) -> tuple[Iterable, Iterable, str, int, int]:
    """Accept an ImageData, or a (train_loader, test_loader) pair."""
    if hasattr(data, "train") and hasattr(data, "test"):
        return (data.train, data.test, getattr(data, "name", "data"),
                _num_samples(data.train), _num_samples(data.test))
    if isinstance(data, Sequence) and len(data) == 2:
        train, test = data
        return train, test, "custom data", _num_samples(train), _num_samples(test)
    raise TypeError("fit() expects an ImageData from load_data() or a (train, test) pair "
                    f"of loaders, got {type(data).__name__}.")


def _num_samples(loader: Any) -> int:
    if hasattr(loader, "num_samples"):
        return loader.num_samples
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if dataset is not None else -1


def fit(
    model: nn.Module,
    data: Any,
    epochs: int,
    *,
    optimizer: OptimizerSpec = "sgd",
    lr: float | None = 0.05,
    optimizer_kwargs: dict[str, Any] | None = None,
    scheduler: SchedulerSpec | None = None,
    scheduler_step: str = "epoch",
    loss_fn: Callable | None = None,
    label_smoothing: float = 0.0,
    batch_transform: BatchTransform | None = None,
    amp: bool = True,
    channels_last: bool | None = None,
    compile: bool = False,
    grad_clip: float | None = None,
    ema_decay: float | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    device: torch.device | str | None = None,
    profile: Profile | str | None = None,
    label: str | None = None,
    on_divergence: str = "raise",
    checks_per_epoch: int = 10,
    verbose: bool = True,
) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs and return its :class:`History`.

    - ``optimizer``: a name from ``OPTIMIZERS`` (with ``lr`` and ``optimizer_kwargs``), a
      ``torch.optim.Optimizer`` already built on the model's parameters, or a factory such as
      ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)``.
    - ``scheduler``: a ``torch.optim.lr_scheduler`` instance or a factory taking the optimizer,
      stepped once per epoch or once per batch (``scheduler_step``).
    - ``batch_transform``: a function ``(images, labels) -> (images, targets)`` applied to
      each training batch on the device, e.g. ``torchvision.transforms.v2.MixUp`` or
      ``CutMix`` (or ``RandomChoice`` of both). Targets may be class indices or (batch,
      classes) probabilities; with probabilities the default loss is cross-entropy against
      them (``nn.CrossEntropyLoss`` accepts both) and training accuracy compares predictions
      with ``targets.argmax(1)`` on the mixed batch. Evaluation never sees the transform: test
      metrics are on clean images with their hard labels.
    - ``amp``: autocast to bf16 (or fp16 with loss scaling) where the device supports it.
    - ``channels_last``: default on CUDA, where convolutions run faster in that layout.
    - ``compile``: opt in to ``torch.compile`` (slow first epoch, faster after).
    - ``ema_decay``: also keep an exponential moving average of the weights
      (``torch.optim.swa_utils``); test metrics are then those of the averaged model, which is
      available afterwards as ``history.ema_model``. ``EarlyStopping(restore_best=model)``
      then restores the averaged weights of the best epoch into ``model``.
    - ``progress``: a tqdm progress bar; by default on, unless ``COURSE_PROGRESS=0`` (set by
      the Makefile for book builds, where a static page would show the bar frozen at 0%).
    - ``on_divergence``: ``"raise"`` (``TrainingDiverged``) or ``"stop"`` (return the history,
      with ``meta["stopped"]`` saying why) when the loss becomes NaN or infinite.

    Ctrl-C stops training and returns the history of the epochs completed so far.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the same call trains data-parallel: every process
    takes ``batch_size / processes`` images of each global batch, gradients are averaged by
    ``DistributedDataParallel``, metrics (and so callbacks' decisions) are the whole group's,
    and only process 0 prints. ``history.meta["processes"]`` says how many trained.
    """
    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(f"scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}.")
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}.")
    group = ProcessGroup.from_env(get_device(device))  # one process unless torchrun started us
    device = group.device
    verbose = verbose and group.is_main
    progress = progress if group.is_main else False
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    train_loader, test_loader, dataset_name, n_train, n_test = _describe_data(data)
    batch_size = getattr(train_loader, "batch_size", None)  # the global batch
    train_loader, test_loader = group.shard(train_loader), group.shard(test_loader, train=False)
    channels_last = device.type == "cuda" if channels_last is None else channels_last

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(optimizer, model.parameters(), lr, **(optimizer_kwargs or {}))
    sched = scheduler(opt) if callable(scheduler) and not hasattr(scheduler, "step") else scheduler
    dtype = autocast_dtype(device) if amp else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16
                                  and device.type == "cuda")
    criterion = loss_fn or nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    train_model = group.wrap(model)  # DistributedDataParallel when several processes train
    group.decorrelate_randomness()  # after wrap: the weights are process 0's either way
    step_model = torch.compile(train_model) if compile else train_model
    # Evaluation needs no gradient averaging, and the processes' shards of the test split may
    # take different numbers of batches, so it runs on the model itself (same weights).
    plain_model = step_model if group.world_size == 1 else model
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
           if ema_decay else None)

    history = History(meta={
        "label": label or type(model).__name__,
        "model": type(model).__name__,
        "dataset": dataset_name,
        "device": device_summary(device),
        "processes": group.world_size,
        "profile": profile.name,
        "n_train": n_train,
        "n_test": n_test,
        "batch_size": batch_size,
        "epochs": epochs,
        "optimizer": type(opt).__name__,
        "amp": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "channels_last": channels_last,
        "compile": compile,
        "ema_decay": ema_decay,
        "batch_transform": (None if batch_transform is None else
                            getattr(batch_transform, "__name__", type(batch_transform).__name__)),
        "stopped": None,
    })
    if ema is not None:  # set now, so that callbacks know which weights are scored
        history.ema_model = ema
    if verbose:
        print(f"Training {history.meta['label']} on {dataset_name} | {n_train:,} train / "
              f"{n_test:,} test images | {epochs} epoch(s), batch "
              f"{history.meta['batch_size']} | profile {profile.name} | "
              f"{history.meta['device']}{group.describe()}")
    for cb in callbacks:
        cb.on_fit_start(history)

    steps = len(train_loader)
    check_every = max(1, steps // max(1, checks_per_epoch))
    bar = _progress_bar(epochs * steps, progress, history.meta["label"])
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            lr_now = opt.param_groups[0]["lr"]  # the rate the epoch starts with
            step_model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            for step, (x, y) in enumerate(train_loader):
                x, y = _to_device(x, y, device, channels_last)
                if batch_transform is not None:
                    x, y = batch_transform(x, y)  # training batches only, never evaluation
                with _autocast(device, dtype):
                    out = step_model(x)
                    loss = criterion(out.float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                if sched is not None and scheduler_step == "batch":
                    sched.step()
                loss_sum += loss.detach() * len(y)
                correct += (out.detach().argmax(dim=1) == _hard_labels(y)).sum()
                seen += len(y)
                if bar is not None:
                    bar.update(1)
                if (step + 1) % check_every == 0 or step + 1 == steps:
                    # One host sync every few steps: the NaN check and the progress readout.
                    running = group.all_mean(loss_sum, seen)  # the same in every process
                    if not math.isfinite(running):
                        _diverged(history, opt, epoch, step, running, on_divergence)
                        return _finish(history, callbacks, bar)
                    if bar is not None:
                        bar.set_postfix(epoch=epoch + 1, loss=f"{running:.4f}")
            synchronize(device)
            train_seconds = time.perf_counter() - start
            if sched is not None and scheduler_step == "epoch":
                sched.step()
            eval_model = ema if ema is not None else plain_model
            group.sync_buffers(eval_model)  # e.g. batch norm's running statistics
            test = evaluate(eval_model, test_loader, device, amp=amp, loss_fn=criterion,
                            channels_last=channels_last)
            test_loss, test_acc = group.all_average(test, _num_samples(test_loader))
            loss_sum, correct, seen = group.all_sum(loss_sum, correct, seen)
            history.train_loss.append((loss_sum / seen).item())
            history.train_acc.append(correct.item() / seen)
            history.test_loss.append(test_loss)
            history.test_acc.append(test_acc)
            history.lr.append(lr_now)
            history.epoch_time.append(time.perf_counter() - start)
            history.images_per_sec.append(seen / train_seconds)
            if verbose and not any(getattr(cb, "replaces_epoch_lines", False)
                                   for cb in callbacks):
                _write(history.epoch_line(), bar)
            stop = [cb.on_epoch_end(history) for cb in callbacks]
            if any(stop):
                break
    except KeyboardInterrupt:
        history.meta["stopped"] = f"interrupted (Ctrl-C) after {len(history)} epoch(s)"
        print(f"Training interrupted: returning the history of the {len(history)} completed "
              "epoch(s).")
    return _finish(history, callbacks, bar)


def _diverged(history: History, opt: Optimizer, epoch: int, step: int, value: float,
              on_divergence: str) -> None:
    lr = opt.param_groups[0]["lr"]
    message = (f"The training loss became {value} in epoch {epoch + 1} (by step {step + 1}). "
               f"The learning rate ({lr:g}) is probably too high: try a smaller one, "
               f"e.g. {lr / 10:g}.")
    history.meta["stopped"] = message
    if on_divergence == "raise":
        raise TrainingDiverged(message, history)
    print(message)


def _finish(history: History, callbacks: Sequence[Callback], bar) -> History:
    if bar is not None:
        bar.close()
    for cb in callbacks:
        cb.on_fit_end(history)
    return history


def _progress_bar(total: int, enabled: bool | None, label: str):
    if enabled is None:
        enabled = os.environ.get("COURSE_PROGRESS", "1") not in ("0", "")
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="step", leave=False)


def _write(line: str, bar) -> None:
    if bar is not None:
        bar.write(line)
    else:
        print(line)
