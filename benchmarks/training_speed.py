"""Side by side: the training loop most tutorials teach, and ``course_utils.fit``.

Two commands (see benchmarks/README.md):

    python benchmarks/training_speed.py run --model lenet [options]   # one JSON per run
    python benchmarks/training_speed.py table                         # Markdown from JSONs

``run`` trains the same model, from the same initial weights, on the same images, in every
arm, alternating the arms within each seed (baseline, systems-only, recipe, ablations, then
the next seed), after one untimed warm-up pass through every arm. Each timed run is wrapped
in a stopwatch that synchronizes the device before reading the clock, and covers the whole
fit: reading the dataset from disk, building the loaders, training and evaluation.

Data. Both arms read the images through torchvision's ``FashionMNIST`` class from idx files
that this script writes into a temporary folder: the real Fashion-MNIST images when they are
available locally, otherwise Fashion-MNIST-shaped SYNTHETIC images for the speed phase and
scikit-learn's digits (the course's offline stand-in) for the accuracy phase. Every result
says which.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import functools
import gc
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere, without installing
    sys.path.insert(0, str(REPO))

from course_utils.callbacks import Callback  # noqa: E402
from course_utils.data import (  # noqa: E402
    DATASETS,
    Splits,
    data_dir,
    load_data,
    load_digits_standin,
    write_mnist_format,
)
from course_utils.data import load_torchvision as _load_torchvision  # noqa: E402
from course_utils.device import autocast_dtype, device_summary, get_device  # noqa: E402
from course_utils.measure import (  # noqa: E402
    PeakMemory,
    Stopwatch,
    flops_per_image,
    mfu,
    peak_flops,
)
from course_utils.models import get_model  # noqa: E402
from course_utils.profile import get_profile  # noqa: E402
from course_utils.seed import seed_everything  # noqa: E402
from course_utils.train import evaluate, fit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TABLE = RESULTS / "latest.md"
SPEC = DATASETS["fashion_mnist"]

# The size each model is trained at in tutorials, and the typical loop's hyper-parameters.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet": dict(image_size=28, batch_size=128, lr=0.1, accuracy_epochs=10),
    "resnet18": dict(image_size=96, batch_size=128, lr=0.05, accuracy_epochs=5),
    "alexnet": dict(image_size=224, batch_size=128, lr=0.01, accuracy_epochs=5),
    # The rest of Chapter 3's seven networks, with their seed tutorial's size, batch and lr.
    "vgg11_quarter": dict(image_size=224, batch_size=128, lr=0.1, accuracy_epochs=5),
    "nin": dict(image_size=224, batch_size=128, lr=0.1, accuracy_epochs=5),
    "googlenet": dict(image_size=96, batch_size=128, lr=0.1, accuracy_epochs=5),
    "lenet_bn": dict(image_size=28, batch_size=256, lr=1.0, accuracy_epochs=10),
    "densenet": dict(image_size=96, batch_size=256, lr=0.1, accuracy_epochs=5),
}

# Chapter 3's seven networks ("--model seven"), and the input size each one is benchmarked at
# with --cpu-sizes: 32, or just above the smallest input it accepts where that is larger
# (AlexNet, NiN; LeNet-BN keeps 28), as on Chapter 3's page 8 off the GPU
# (the seed sizes, 224 and 96, make a CPU run of all seven take hours).
SEVEN = ("alexnet", "vgg11_quarter", "nin", "googlenet", "lenet_bn", "resnet18", "densenet")
CPU_SIZES: dict[str, int] = {"alexnet": 64, "vgg11_quarter": 32, "nin": 68, "googlenet": 32,
                             "lenet_bn": 28, "resnet18": 32, "densenet": 32}

ARM_TITLES = {
    "baseline": "typical tutorial loop",
    "systems": "course_utils.fit, systems only",
    "recipe": "course_utils.fit, recommended recipe",
    "sync_every_step": "few host syncs (a sync after every step instead)",
    "train_reeval": "test-only evaluation (re-evaluate the whole training set each epoch)",
    "dataloader": "device-resident data (DataLoader, 3 workers, pinned memory)",
    "pil_resize": "on-device resize (PIL Resize in the DataLoader workers)",
    "fp32": "autocast (train in fp32)",
    "nchw": "channels_last (NCHW tensors)",
}
ABLATIONS = ("sync_every_step", "train_reeval", "dataloader", "pil_resize", "fp32", "nchw")


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

@dataclass
class Config:
    """What one ``run`` does. Sizes of None mean "the whole split"."""

    model: str = "lenet"
    image_size: int = 28
    batch_size: int = 128
    lr: float = 0.1
    epochs: int = 1
    train_size: int | None = None
    test_size: int | None = None
    accuracy_epochs: int = 10
    accuracy_train_size: int | None = None
    accuracy_test_size: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    ablations: list[str] = field(default_factory=lambda: list(ABLATIONS))
    data: str = "auto"  # auto | real | synthetic
    warmup: bool = True
    device: str | None = None
    note: str = ""
    num_workers: int = 3  # the typical loop's DataLoader
    threads: int | None = None  # torch intra-op threads in the main process (None: default)


# --------------------------------------------------------------------------------------
# Data: idx files that torchvision's FashionMNIST class reads
# --------------------------------------------------------------------------------------



def synthetic_fashion_mnist(n_train: int, n_test: int, seed: int = 0) -> Splits:
    """Fashion-MNIST-shaped random images (uint8, 1x28x28, 10 classes), learnable but fake.

    Each class has a smooth random template; an image is its class template, shifted by a
    few pixels, plus noise. Good for timing (same shapes and dtype as the real data), not for
    accuracy claims.
    """
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.rand(10, 1, 7, 7, generator=g), size=(28, 28),
                              mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=g)
        images = templates[labels]
        shifts = torch.randint(-2, 3, (2,), generator=g).tolist()
        images = torch.roll(images, shifts=shifts, dims=(2, 3))
        images = 0.7 * images + 0.3 * torch.rand(n, 1, 28, 28, generator=g)
        return (images * 255).round().clamp(0, 255).to(torch.uint8), labels

    return (*make(n_train), *make(n_test))


@dataclass
class Dataset:
    """The images of one phase, written where torchvision will read them."""

    root: Path
    label: str  # what the report calls it
    kind: str  # real | synthetic | standin
    n_train: int
    n_test: int
    mean: float
    std: float


def real_fashion_mnist() -> Splits | None:
    """The real Fashion-MNIST from the course's data folder, if it is there (no download)."""
    try:
        return _load_torchvision(SPEC, data_dir(), download=False)
    except Exception:  # noqa: BLE001 - not there (or unreadable): the caller falls back
        return None


def _take(splits: Splits, n_train: int | None, n_test: int | None) -> Splits:
    train_x, train_y, test_x, test_y = splits
    return train_x[:n_train], train_y[:n_train], test_x[:n_test], test_y[:n_test]


def make_dataset(root: Path, kind: str, n_train: int | None, n_test: int | None,
                 real: Splits | None) -> Dataset:
    if kind == "real":
        assert real is not None
        splits, label = _take(real, n_train, n_test), "Fashion-MNIST (real)"
    elif kind == "synthetic":
        splits = synthetic_fashion_mnist(n_train or 60_000, n_test or 10_000)
        label = "synthetic Fashion-MNIST-shaped data (random class templates + noise)"
    elif kind == "standin":
        splits = _take(load_digits_standin(SPEC), n_train, n_test)
        label = "digits (offline stand-in for Fashion-MNIST)"
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    write_mnist_format(root, splits)
    pixels = splits[0].float().div(255)
    return Dataset(root, label, kind, len(splits[1]), len(splits[3]),
                   pixels.mean().item(), pixels.std().item())


# --------------------------------------------------------------------------------------
# The arms
# --------------------------------------------------------------------------------------

@dataclass
class Arm:
    """Everything an arm needs besides the model: device, data, hyper-parameters."""

    device: torch.device
    data: Dataset
    cfg: Config
    epochs: int


@dataclass
class ArmOutput:
    test_acc: float
    images_trained: int
    precision: str
    batch_size: int
    extra: dict[str, Any] = field(default_factory=dict)


def xavier_init(module: nn.Module) -> None:
    """The typical loop's initialization: Xavier-uniform weights in conv and linear layers."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)


def baseline(model: nn.Module, arm: Arm) -> ArmOutput:
    """The loop found in many tutorials, written out as they write it.

    PIL images resized in DataLoader workers, fp32, ``.item()`` after every batch, and after
    every epoch a full pass over the training set to report its loss and accuracy, plus the
    test accuracy.
    """
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    cfg, device = arm.cfg, arm.device
    trans = transforms.Compose([transforms.Resize(cfg.image_size), transforms.ToTensor()])
    mnist_train = torchvision.datasets.FashionMNIST(root=str(arm.data.root), train=True,
                                                    transform=trans, download=False)
    mnist_test = torchvision.datasets.FashionMNIST(root=str(arm.data.root), train=False,
                                                   transform=trans, download=False)
    train_iter = DataLoader(mnist_train, cfg.batch_size, shuffle=True,
                            num_workers=cfg.num_workers, pin_memory=True)
    test_iter = DataLoader(mnist_test, cfg.batch_size, shuffle=False,
                           num_workers=cfg.num_workers, pin_memory=True)

    def accuracy_and_loss(net: nn.Module, data_iter) -> tuple[float, float]:
        net.eval()
        total_loss, correct, count = 0.0, 0.0, 0
        with torch.no_grad():
            for X, y in data_iter:
                X, y = X.to(device), y.to(device)
                y_hat = net(X)
                total_loss += float(loss(y_hat, y)) * y.numel()
                correct += float((y_hat.argmax(dim=1) == y).sum())
                count += y.numel()
        return total_loss / count, correct / count

    net = model.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    loss = nn.CrossEntropyLoss()
    log = []
    for epoch in range(arm.epochs):
        net.train()
        running_loss, running_correct, seen = 0.0, 0.0, 0
        for X, y in train_iter:
            X, y = X.to(device), y.to(device)
            optimizer.zero_grad()
            y_hat = net(X)
            batch_loss = loss(y_hat, y)
            batch_loss.backward()
            optimizer.step()
            running_loss += batch_loss.item() * y.numel()
            running_correct += (y_hat.argmax(dim=1) == y).sum().item()
            seen += y.numel()
        train_loss, train_acc = accuracy_and_loss(net, train_iter)
        _, test_acc = accuracy_and_loss(net, test_iter)
        log.append(dict(epoch=epoch + 1, running_loss=running_loss / seen,
                        train_loss=train_loss, train_acc=train_acc, test_acc=test_acc))
    return ArmOutput(test_acc, arm.epochs * len(mnist_train), "fp32", cfg.batch_size,
                     {"log": log})


def _load(arm: Arm, batch_size: int | None = None, normalize: bool = False):
    """The course's own loading path, reading the same idx files as the baseline.

    ``normalize=False`` (systems-only and its ablations) feeds the network the same values
    as the typical loop's ``ToTensor()`` -- pixels in [0, 1] -- so that only the engineering
    differs; the recipe keeps ``load_data``'s per-channel standardization.
    """
    data = load_data("fashion_mnist", batch_size or arm.cfg.batch_size,
                     train_size=arm.data.n_train, test_size=arm.data.n_test,
                     resize=arm.cfg.image_size if arm.cfg.image_size != 28 else None,
                     device=arm.device, profile="full", normalize=normalize,
                     root=arm.data.root, allow_standin=False, verbose=False)
    data.name = arm.data.label  # it is Fashion-MNIST only when the files say so
    return data


def _precision(arm: Arm, amp: bool = True) -> str:
    dtype = autocast_dtype(arm.device) if amp else None
    return str(dtype).removeprefix("torch.") if dtype else "fp32"


def _fit(model: nn.Module, data: Any, arm: Arm, **kwargs) -> Any:
    kwargs.setdefault("optimizer", "sgd")
    kwargs.setdefault("lr", arm.cfg.lr)
    return fit(model, data, arm.epochs, device=arm.device, profile="full", progress=False,
               verbose=False, **kwargs)


def systems(model: nn.Module, arm: Arm, **fit_kwargs) -> ArmOutput:
    """``fit`` with the typical loop's optimizer, learning rate, batch size and epochs."""
    data = _load(arm)
    history = _fit(model, data, arm, **fit_kwargs)
    return ArmOutput(history.final_test_acc, arm.epochs * arm.data.n_train,
                     _precision(arm, fit_kwargs.get("amp", True)), arm.cfg.batch_size)


# The course's recommended recipe per model: Nesterov momentum with a one-cycle schedule
# (warm-up then annealing), weight decay, label smoothing, and for the ResNet and AlexNet a
# larger batch; same epochs as the baseline. LeNet keeps batch 128: on the small stand-in
# (1,437 images) a larger batch leaves too few steps (94% instead of 98% after 10 epochs).
RECIPES: dict[str, dict[str, Any]] = {
    "lenet": dict(batch_size=128, max_lr=0.02, momentum=0.9, weight_decay=5e-4,
                  label_smoothing=0.1),
    "resnet18": dict(batch_size=256, max_lr=0.1, momentum=0.9, weight_decay=5e-4,
                     label_smoothing=0.1),
    "alexnet": dict(batch_size=256, max_lr=0.02, momentum=0.9, weight_decay=5e-4,
                    label_smoothing=0.1),
    # Chapter 3's networks: the same recipe, a lower peak rate without batch normalization.
    # Not tuned or verified on a GPU yet.
    "vgg11_quarter": dict(batch_size=256, max_lr=0.02, momentum=0.9, weight_decay=5e-4,
                          label_smoothing=0.1),
    "nin": dict(batch_size=256, max_lr=0.02, momentum=0.9, weight_decay=5e-4,
                label_smoothing=0.1),
    "googlenet": dict(batch_size=256, max_lr=0.1, momentum=0.9, weight_decay=5e-4,
                      label_smoothing=0.1),
    "lenet_bn": dict(batch_size=128, max_lr=0.1, momentum=0.9, weight_decay=5e-4,
                     label_smoothing=0.1),
    "densenet": dict(batch_size=256, max_lr=0.1, momentum=0.9, weight_decay=5e-4,
                     label_smoothing=0.1),
}


def recipe(model: nn.Module, arm: Arm) -> ArmOutput:
    """``fit`` with what the course recommends for this model (see ``RECIPES``)."""
    r = RECIPES[arm.cfg.model]
    data = _load(arm, batch_size=r["batch_size"], normalize=True)
    total_steps = arm.epochs * len(data.train)
    history = _fit(
        model, data, arm,
        optimizer=functools.partial(torch.optim.SGD, lr=r["max_lr"], momentum=r["momentum"],
                                    nesterov=True, weight_decay=r["weight_decay"]),
        lr=None,
        scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=r["max_lr"], total_steps=total_steps, pct_start=0.25),
        scheduler_step="batch",
        label_smoothing=r["label_smoothing"],
    )
    return ArmOutput(history.final_test_acc, arm.epochs * arm.data.n_train, _precision(arm),
                     r["batch_size"], {"recipe": r})


class TrainSetReevaluation(Callback):
    """After every epoch, evaluate the whole training set, as the typical loop does."""

    def __init__(self, model: nn.Module, loader: Any) -> None:
        self.model, self.loader = model, loader

    def on_epoch_end(self, history) -> None:
        history.meta.setdefault("train_reeval", []).append(evaluate(self.model, self.loader))


class OnDeviceResize:
    """Wrap a DataLoader: move each batch to the device, then resize it there."""

    def __init__(self, loader: Any, size: int, device: torch.device) -> None:
        self.loader, self.size, self.device = loader, size, device
        self.batch_size = loader.batch_size
        self.num_samples = len(loader.dataset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            if x.shape[-1] != self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=x.shape[-1] > self.size)
            yield x, y


def dataloader_fit(model: nn.Module, arm: Arm, pil_resize: bool) -> ArmOutput:
    """``fit`` fed by ordinary DataLoaders instead of device-resident tensors."""
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    cfg = arm.cfg
    steps = [transforms.ToTensor()]  # unnormalized, like systems-only
    if pil_resize:
        steps.insert(0, transforms.Resize(cfg.image_size))
    trans = transforms.Compose(steps)
    root = str(arm.data.root)
    train_set = torchvision.datasets.FashionMNIST(root, train=True, transform=trans)
    test_set = torchvision.datasets.FashionMNIST(root, train=False, transform=trans)
    loaders = (DataLoader(train_set, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                          pin_memory=True),
               DataLoader(test_set, 2 * cfg.batch_size, num_workers=cfg.num_workers,
                          pin_memory=True))
    if not pil_resize:
        loaders = tuple(OnDeviceResize(loader, cfg.image_size, arm.device) for loader in loaders)
    history = _fit(model, loaders, arm)
    return ArmOutput(history.final_test_acc, arm.epochs * len(train_set), _precision(arm),
                     cfg.batch_size)


def ablation(name: str, model: nn.Module, arm: Arm) -> ArmOutput:
    """Systems-only with one technique switched off."""
    if name == "sync_every_step":
        data = _load(arm)
        history = _fit(model, data, arm, checks_per_epoch=len(data.train))
        return ArmOutput(history.final_test_acc, arm.epochs * arm.data.n_train,
                         _precision(arm), arm.cfg.batch_size)
    if name == "train_reeval":
        data = _load(arm)
        history = _fit(model, data, arm, callbacks=[TrainSetReevaluation(model, data.train)])
        return ArmOutput(history.final_test_acc, arm.epochs * arm.data.n_train,
                         _precision(arm), arm.cfg.batch_size)
    if name in ("dataloader", "pil_resize"):
        return dataloader_fit(model, arm, pil_resize=name == "pil_resize")
    if name == "fp32":
        return systems(model, arm, amp=False)
    if name == "nchw":
        data = _load(arm)
        data.train.channels_last = data.test.channels_last = False
        history = _fit(model, data, arm, channels_last=False)
        return ArmOutput(history.final_test_acc, arm.epochs * arm.data.n_train,
                         _precision(arm), arm.cfg.batch_size)
    raise ValueError(f"Unknown ablation {name!r}; valid ablations are {', '.join(ABLATIONS)}.")


def ablation_unavailable(name: str, cfg: Config, device: torch.device) -> str | None:
    """Why an ablation row cannot be measured here (it would equal systems-only), or None."""
    if name == "fp32" and autocast_dtype(device) is None:
        return (f"n/a on {device.type}: fit already trains in fp32 there "
                "(autocast is off by default on the CPU)")
    if name == "nchw" and device.type != "cuda":
        return f"n/a on {device.type}: channels_last is off by default off CUDA"
    if name == "pil_resize" and cfg.image_size == 28:
        return "n/a at 28x28: there is nothing to resize"
    return None


def arm_functions(cfg: Config, device: torch.device) -> dict[str, Callable]:
    arms: dict[str, Callable] = {"baseline": baseline, "systems": systems, "recipe": recipe}
    for name in cfg.ablations:
        if ablation_unavailable(name, cfg, device) is None:
            arms[name] = functools.partial(ablation, name)
    return arms


# --------------------------------------------------------------------------------------
# Protocol: warm-up, then the arms alternating within each seed
# --------------------------------------------------------------------------------------

def initial_weights(cfg: Config, seed: int) -> dict[str, torch.Tensor]:
    """The seed's initial weights, shared by every arm: built, then Xavier-initialized."""
    torch.manual_seed(seed)
    model = get_model(cfg.model, in_channels=1, num_classes=10, image_size=cfg.image_size)
    model.apply(xavier_init)
    return copy.deepcopy(model.state_dict())


def timed_run(fn: Callable, cfg: Config, state: dict, arm: Arm, seed: int) -> dict[str, Any]:
    """One arm, one seed: the whole fit inside a synchronized stopwatch and a memory meter."""
    model = get_model(cfg.model, in_channels=1, num_classes=10, image_size=cfg.image_size)
    model.load_state_dict(state)
    gc.collect()  # free the previous arm's data and model before measuring this one
    if arm.device.type == "cuda":
        torch.cuda.empty_cache()
    seed_everything(seed)  # same shuffles and augmentations wherever the arms draw the same
    with PeakMemory(arm.device) as memory, Stopwatch(arm.device) as watch:
        out: ArmOutput = fn(model, arm)
    return dict(seed=seed, seconds=watch.seconds, images_trained=out.images_trained,
                images_per_sec=out.images_trained / watch.seconds, test_acc=out.test_acc,
                precision=out.precision, batch_size=out.batch_size,
                peak_memory_bytes=memory.bytes, peak_memory_kind=memory.kind, **out.extra)


def run_phase(name: str, cfg: Config, arms: dict[str, Callable], data: Dataset, epochs: int,
              device: torch.device, flops: dict[str, float]) -> dict[str, Any]:
    arm = Arm(device, data, cfg, epochs)
    runs: dict[str, list[dict]] = {a: [] for a in arms}
    for seed in cfg.seeds:
        state = initial_weights(cfg, seed)
        for arm_name, fn in arms.items():  # A B C ... then the next seed: A B C ...
            with warnings.catch_warnings():
                # pin_memory=True without an accelerator warns; the typical loop sets it anyway.
                warnings.filterwarnings("ignore", message=".*pin_memory.*")
                # ... and 3 workers on a 2-core machine warns too: it is the loop being measured.
                warnings.filterwarnings("ignore", message=".*worker processes in total.*")
                record = timed_run(fn, cfg, state, arm, seed)
            runs[arm_name].append(record)
            print(f"  [{name}] seed {seed} {arm_name:16s} {record['seconds']:7.2f} s "
                  f"{record['images_per_sec']:9.0f} img/s  test acc {record['test_acc']:.4f}",
                  flush=True)
    return dict(dataset=data.label, data_kind=data.kind, n_train=data.n_train,
                n_test=data.n_test, epochs=epochs,
                arms={a: dict(title=ARM_TITLES[a], runs=r,
                              summary=summarize(r, device, flops["training"]))
                      for a, r in runs.items()})


def summarize(runs: list[dict], device: torch.device, train_flops: float) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    accs = [r["test_acc"] for r in runs]
    rate = statistics.median(r["images_per_sec"] for r in runs)
    memory = [r["peak_memory_bytes"] for r in runs if r["peak_memory_bytes"] is not None]
    peak = peak_flops(device, runs[0]["precision"])
    return dict(
        median_seconds=statistics.median(seconds),
        min_seconds=min(seconds), max_seconds=max(seconds),
        images_per_sec=rate,
        test_acc_mean=statistics.fmean(accs),
        test_acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
        peak_memory_mib=max(memory) / 2**20 if memory else None,
        peak_memory_kind=runs[0]["peak_memory_kind"],
        precision=runs[0]["precision"], batch_size=runs[0]["batch_size"],
        peak_flops=peak, mfu=mfu(train_flops, rate, peak),
    )


def compare(speed: dict[str, Any], accuracy: dict[str, Any] | None) -> dict[str, Any]:
    """Speed ratio baseline/arm (ratio of medians, and the per-seed paired ratios) and the
    accuracy difference arm - baseline in points (from the accuracy phase)."""
    base = speed["arms"]["baseline"]
    out = {}
    for name, entry in speed["arms"].items():
        paired = [b["seconds"] / r["seconds"] for b, r in zip(base["runs"], entry["runs"],
                                                              strict=True)]
        row = dict(speed_ratio=base["summary"]["median_seconds"]
                   / entry["summary"]["median_seconds"], paired_ratios=paired)
        if accuracy and name in accuracy["arms"]:
            row["accuracy_diff_points"] = 100 * (
                accuracy["arms"][name]["summary"]["test_acc_mean"]
                - accuracy["arms"]["baseline"]["summary"]["test_acc_mean"])
        out[name] = row
    return out


def ablation_table(cfg: Config, device: torch.device, speed: dict[str, Any]) -> dict[str, Any]:
    """Each switched-off technique: slowdown vs systems-only and share of the baseline gap."""
    t_sys = speed["arms"]["systems"]["summary"]["median_seconds"]
    t_base = speed["arms"]["baseline"]["summary"]["median_seconds"]
    rows = {}
    for name in cfg.ablations:
        reason = ablation_unavailable(name, cfg, device)
        if reason is not None:
            rows[name] = dict(title=ARM_TITLES[name], available=False, reason=reason)
            continue
        t = speed["arms"][name]["summary"]["median_seconds"]
        gap = t_base - t_sys
        rows[name] = dict(title=ARM_TITLES[name], available=True, median_seconds=t,
                          slowdown=t / t_sys, gap_share=(t - t_sys) / gap if gap > 0 else None)
    return rows


def environment(device: torch.device, cfg: Config) -> dict[str, Any]:
    import torchvision

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return dict(
        device=device_summary(device), device_type=device.type,
        device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                     else platform.processor() or platform.machine()),
        torch=torch.__version__, torchvision=torchvision.__version__,
        python=platform.python_version(), platform=platform.platform(),
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        profile=get_profile().name, load_average_at_start=load, note=cfg.note,
    )


def run(cfg: Config, out_dir: Path = RESULTS) -> Path:
    """Run the whole comparison for one model and write its JSON; return the path."""
    device = get_device(cfg.device)
    if cfg.threads:
        # On a shared CPU, fewer intra-op threads than cores avoids the stalls of
        # oversubscribed thread pools; every arm runs with the same setting.
        torch.set_num_threads(cfg.threads)
    started = dt.datetime.now(dt.timezone.utc)
    env = environment(device, cfg)
    print(f"Benchmark {cfg.model} at {cfg.image_size}x{cfg.image_size} on {env['device']}")

    probe = get_model(cfg.model, in_channels=1, num_classes=10, image_size=cfg.image_size)
    shape = (1, cfg.image_size, cfg.image_size)
    flops = dict(forward=flops_per_image(probe, shape),
                 training=flops_per_image(probe, shape, training=True))

    real = real_fashion_mnist() if cfg.data in ("auto", "real") else None
    if cfg.data == "real" and real is None:
        raise SystemExit(f"--data real: Fashion-MNIST is not in {data_dir()}.")
    speed_kind = "real" if real is not None else "synthetic"
    accuracy_kind = "real" if real is not None else "standin"
    arms = arm_functions(cfg, device)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        tmp = Path(tmp)
        if cfg.warmup:  # every arm once, untimed, on one small batch
            print("Warm-up (untimed)", flush=True)
            small = make_dataset(tmp / "warmup", speed_kind, 64, 32, real)
            warm = dict(cfg.__dict__, seeds=[cfg.seeds[0]])
            with contextlib.redirect_stdout(io.StringIO()):
                run_phase("warm-up", Config(**warm), arms, small, 1, device, flops)
        speed_data = make_dataset(tmp / "speed", speed_kind, cfg.train_size, cfg.test_size,
                                  real)
        print(f"Speed phase: {speed_data.label}, {speed_data.n_train:,} train / "
              f"{speed_data.n_test:,} test, {cfg.epochs} epoch(s)", flush=True)
        speed = run_phase("speed", cfg, arms, speed_data, cfg.epochs, device, flops)
        accuracy = None
        if cfg.accuracy_epochs > 0:
            acc_data = make_dataset(tmp / "accuracy", accuracy_kind, cfg.accuracy_train_size,
                                    cfg.accuracy_test_size, real)
            print(f"Accuracy phase: {acc_data.label}, {acc_data.n_train:,} train / "
                  f"{acc_data.n_test:,} test, {cfg.accuracy_epochs} epoch(s)", flush=True)
            acc_arms = {a: f for a, f in arms.items() if a in ("baseline", "systems", "recipe")}
            accuracy = run_phase("accuracy", cfg, acc_arms, acc_data, cfg.accuracy_epochs,
                                 device, flops)

    env["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = dict(
        schema=1, benchmark="training_speed", timestamp=started.isoformat(timespec="seconds"),
        model=cfg.model, image_size=cfg.image_size, config=asdict(cfg), environment=env,
        flops_per_image=flops, compile_seconds=None,
        compile_note="no arm uses torch.compile (it is opt-in in the course)",
        phases=dict(speed=speed, accuracy=accuracy),
        comparison=compare(speed, accuracy),
        ablations=ablation_table(cfg, device, speed),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"{cfg.model}-{device.type}-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"Wrote {path}")
    print(render_result(result))
    return path


# --------------------------------------------------------------------------------------
# The Markdown table
# --------------------------------------------------------------------------------------

SHORT_TITLES = {"baseline": "typical loop", "systems": "fit, systems only",
                "recipe": "fit, recipe"}
MODEL_TITLES = {"lenet": "LeNet-5", "resnet18": "ResNet-18", "alexnet": "AlexNet",
                "vgg11_quarter": "VGG-11 / 4", "nin": "NiN", "googlenet": "GoogLeNet",
                "lenet_bn": "LeNet-BN", "densenet": "DenseNet (seed)"}


def _fmt(value: float | None, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def render_result(r: dict[str, Any]) -> str:
    """One result (a JSON file's content) as a Markdown section."""
    env, speed, acc = r["environment"], r["phases"]["speed"], r["phases"]["accuracy"]
    size = r["image_size"]
    on_cpu = env["device_type"] == "cpu"
    lines = [
        f"### {MODEL_TITLES.get(r['model'], r['model'])} at {size}x{size}, "
        f"{speed['n_train']:,} images, {env['device_type'].upper()} ({r['timestamp'][:10]})",
        "",
        f"- Device: {env['device']}; {env['cpu_count']} CPU cores, "
        f"{env['torch_threads']} torch thread(s) in the main process; "
        f"torchvision {env['torchvision']}; Python {env['python']}; profile {env['profile']}.",
        f"- Speed data: {speed['dataset']}, {speed['n_train']:,} train / {speed['n_test']:,} "
        f"test images, {speed['epochs']} epoch(s); seeds {r['config']['seeds']}, arms "
        "alternating within each seed after an untimed warm-up.",
    ]
    if acc:
        lines.append(f"- Accuracy data: {acc['dataset']}, {acc['n_train']:,} train / "
                     f"{acc['n_test']:,} test images, {acc['epochs']} epoch(s).")
    if env.get("note"):
        lines.append(f"- Note: {env['note']} (load average at start "
                     f"{_fmt((env.get('load_average_at_start') or [None])[0], '.2f')}, at end "
                     f"{_fmt((env.get('load_average_at_end') or [None])[0], '.2f')}).")
    lines += [
        f"- FLOPs per image: {r['flops_per_image']['forward'] / 1e6:,.2f} MFLOP forward, "
        f"{r['flops_per_image']['training'] / 1e6:,.2f} MFLOP per training step "
        "(torch.utils.flop_counter).",
        "",
        "| Arm | Time (s) | Images/s | Speed-up | Test acc. (%) | Δ acc. | Memory (MiB) "
        "| MFU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("baseline", "systems", "recipe"):
        s = speed["arms"][name]["summary"]
        c = r["comparison"][name]
        a = acc["arms"][name]["summary"] if acc else None
        paired = c["paired_ratios"]
        ratio = (f"{c['speed_ratio']:.2f}x ({min(paired):.2f}-{max(paired):.2f})"
                 if name != "baseline" else "1.00x")
        accuracy = (f"{100 * a['test_acc_mean']:.1f} ± {100 * a['test_acc_std']:.1f}"
                    if a else "not measured")
        diff = (f"{c['accuracy_diff_points']:+.1f}" if name != "baseline"
                and "accuracy_diff_points" in c else "--")
        mfu_text = "n/a (CPU)" if on_cpu else _fmt(s["mfu"] and 100 * s["mfu"], ".1f") + (
            "%" if s["mfu"] else "")
        lines.append(
            f"| {SHORT_TITLES[name]} ({s['precision']}, batch {s['batch_size']}) "
            f"| {s['median_seconds']:.2f} | {s['images_per_sec']:,.0f} | {ratio} | {accuracy} "
            f"| {diff} | {_fmt(s['peak_memory_mib'], ',.0f')} | {mfu_text} |")
    lines += [
        "",
        "*Time*: median wall time of the whole run (loading, training, evaluation); "
        "*Images/s*: training images per second of that time; *Speed-up*: baseline time over "
        "the arm's (ratio of medians; in brackets the range of the per-seed paired ratios); "
        "*Test acc.*: mean ± std over seeds from the accuracy data; *Δ acc.*: points above "
        "the baseline; *Memory*: peak memory (see below); *MFU*: model FLOP utilization.",
        "",
        "Ablations: systems-only with one technique switched off. *Slowdown* is the ablation's "
        "median time over systems-only's; *share of the gap* is the extra time as a fraction "
        "of the baseline-minus-systems-only gap (shares need not add up to 100%: the "
        "techniques interact, the baseline differs in more than these, and on a shared "
        "machine a small gap is easily swamped by noise).",
        "",
        "| Switched off | Time (s) | Slowdown | Share of the gap |",
        "|---|---:|---:|---:|",
    ]
    for name in ABLATIONS:
        row = r["ablations"].get(name)
        if row is None:
            lines.append(f"| {ARM_TITLES[name]} | not run in this recording | -- | -- |")
        elif row["available"]:
            share = _fmt(row["gap_share"] and 100 * row["gap_share"], ".0f")
            lines.append(f"| {ARM_TITLES[name]} | {row['median_seconds']:.2f} "
                         f"| {row['slowdown']:.2f}x | {share}{'%' if row['gap_share'] else ''} |")
        else:
            lines.append(f"| {ARM_TITLES[name]} | {row['reason']} | -- | -- |")
    if on_cpu:
        lines += ["", "MFU is not reported on the CPU (no reliable peak figure). Peak memory "
                  "on the CPU is the main process's peak resident set, which includes the "
                  "Python process itself and excludes DataLoader workers."]
    return "\n".join(lines)


def latest_results(results_dir: Path = RESULTS) -> list[dict[str, Any]]:
    """The newest result for each (model, device type, input size, training images), models
    in a fixed order (a reduced-size CPU run does not replace one at the seed's size, nor a
    short run a long one)."""
    newest: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for path in sorted(results_dir.glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("benchmark") != "training_speed":
            continue
        key = (r["model"], r["environment"]["device_type"], r["image_size"],
               r["phases"]["speed"]["n_train"])
        if key not in newest or r["timestamp"] > newest[key]["timestamp"]:
            newest[key] = r
    order = list(MODEL_DEFAULTS)
    return sorted(newest.values(), key=lambda r: (
        order.index(r["model"]) if r["model"] in order else len(order),
        r["environment"]["device_type"], -r["image_size"], r["phases"]["speed"]["n_train"]))


def render_overview(results: list[dict[str, Any]]) -> str:
    """One row per (model, device): the typical loop and ``fit`` side by side."""
    lines = [
        "### All models side by side",
        "",
        "The newest result of each model on each device, per input size and number of "
        "training images; details in the sections below. "
        "*Speed-up*: the typical loop's median time over `fit`'s (systems only, same "
        "hyperparameters), measured in the same process, seed by seed.",
        "",
        "| Model | Size | Device | Images | Typical loop (img/s) | fit, systems only "
        "(img/s) | Speed-up | fit, recipe (img/s) | Recorded |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        arms, c = r["phases"]["speed"]["arms"], r["comparison"]
        rates = {a: arms[a]["summary"]["images_per_sec"] for a in ("baseline", "systems",
                                                                     "recipe")}
        size, env = r["image_size"], r["environment"]
        lines.append(
            f"| {MODEL_TITLES.get(r['model'], r['model'])} | {size}x{size} "
            f"| {env['device_type'].upper()} | {r['phases']['speed']['n_train']:,} "
            f"| {rates['baseline']:,.0f} | {rates['systems']:,.0f} "
            f"| {c['systems']['speed_ratio']:.2f}x | {rates['recipe']:,.0f} "
            f"| {r['timestamp'][:10]} |")
    return "\n".join(lines)


def render_table(results_dir: Path = RESULTS) -> str:
    results = latest_results(results_dir)
    head = ("<!-- Generated by `python benchmarks/training_speed.py table` from "
            "benchmarks/results/*.json; do not edit by hand. -->\n")
    if not results:
        return head + "\nNo benchmark results recorded yet.\n"
    sections = [render_overview(results)] + [render_result(r) for r in results]
    return head + "\n" + "\n\n".join(sections) + "\n"


def write_table(results_dir: Path = RESULTS, out: Path | None = None) -> Path:
    out = out or results_dir / TABLE.name
    out.write_text(render_table(results_dir))
    return out


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the comparison for one model and write its JSON")
    r.add_argument("--model", nargs="+", default=["lenet"],
                   choices=[*MODEL_DEFAULTS, "seven"],
                   help="one or more models, run one after the other in this process; "
                   "'seven' is Chapter 3's seven networks")
    r.add_argument("--image-size", type=int, help="input size (default: the model's)")
    r.add_argument("--cpu-sizes", action="store_true",
                   help="each model at its reduced CPU size (CPU_SIZES) instead of the "
                   "seed's; --image-size still wins")
    r.add_argument("--batch-size", type=int)
    r.add_argument("--lr", type=float)
    r.add_argument("--epochs", type=int, default=1, help="epochs of the speed phase")
    r.add_argument("--train-size", type=int, help="training images in the speed phase "
                   "(default: 60,000, or all of the real data)")
    r.add_argument("--test-size", type=int)
    r.add_argument("--accuracy-epochs", type=int, help="0 skips the accuracy phase")
    r.add_argument("--accuracy-train-size", type=int)
    r.add_argument("--accuracy-test-size", type=int)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--ablations", default=",".join(ABLATIONS),
                   help="comma-separated, or 'none' (default: all)")
    r.add_argument("--data", choices=("auto", "real", "synthetic"), default="auto")
    r.add_argument("--device", help="cpu, cuda, ... (default: COURSE_DEVICE or the best)")
    r.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    r.add_argument("--no-warmup", action="store_true")
    r.add_argument("--note", default="", help="recorded with the environment")
    r.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    r.add_argument("--no-table", action="store_true", help="do not regenerate the table")
    t = sub.add_parser("table", help="regenerate the Markdown table from the JSON results")
    t.add_argument("--results", type=Path, default=RESULTS)
    t.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def models_from_args(args: argparse.Namespace) -> list[str]:
    """The models of a ``run``, in order, with 'seven' expanded and duplicates dropped."""
    names = [m for name in args.model for m in (SEVEN if name == "seven" else (name,))]
    return list(dict.fromkeys(names))


def config_from_args(args: argparse.Namespace, model: str | None = None) -> Config:
    model = model or models_from_args(args)[0]
    defaults = dict(MODEL_DEFAULTS[model])
    if args.cpu_sizes and model in CPU_SIZES:
        defaults["image_size"] = CPU_SIZES[model]
    ablations = [] if args.ablations == "none" else [a for a in args.ablations.split(",") if a]
    unknown = set(ablations) - set(ABLATIONS)
    if unknown:
        raise SystemExit(f"Unknown ablation(s) {sorted(unknown)}; valid: {', '.join(ABLATIONS)}")
    pick = lambda value, key: defaults[key] if value is None else value  # noqa: E731
    return Config(
        model=model, image_size=pick(args.image_size, "image_size"),
        batch_size=pick(args.batch_size, "batch_size"), lr=pick(args.lr, "lr"),
        epochs=args.epochs, train_size=args.train_size, test_size=args.test_size,
        accuracy_epochs=pick(args.accuracy_epochs, "accuracy_epochs"),
        accuracy_train_size=args.accuracy_train_size,
        accuracy_test_size=args.accuracy_test_size, seeds=args.seeds, ablations=ablations,
        data=args.data, warmup=not args.no_warmup, threads=args.threads, device=args.device,
        note=args.note)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "table":
        results = args.results
        print(f"Wrote {write_table(results, args.out)}")
        return
    models = models_from_args(args)
    if args.image_size is not None and len(models) > 1:
        raise SystemExit("--image-size applies to one model; with several, use --cpu-sizes.")
    for model in models:  # one after the other; each writes its own JSON
        path = run(config_from_args(args, model), args.out)
    if not args.no_table:
        print(f"Wrote {write_table(path.parent)}")


if __name__ == "__main__":
    main()
