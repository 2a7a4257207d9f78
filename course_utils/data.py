"""Datasets, resident on the training device and served in batches by index.

``load_data("fashion_mnist")`` returns an :class:`ImageData` whose ``train`` and ``test``
loaders yield normalized float batches. The images stay on the device as uint8 (a quarter of
the memory of float32) and each batch is gathered by index, augmented per sample, resized and
normalized on the device -- no worker processes, no host-to-device copy per step.

Real data comes from torchvision, downloaded on first use into ``COURSE_DATA_DIR`` (default
``~/.cache/course``). When that is impossible (no network, ``COURSE_OFFLINE=1``) the loader
says so in one line and falls back to scikit-learn's 8x8 handwritten digits, which ship with
scikit-learn, resized and channel-matched to the requested dataset and labelled as a stand-in
in the dataset's name, so every printout and plot title shows it.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .device import get_device
from .profile import Profile, get_profile


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is called, where torchvision keeps it, and the shape of its images."""

    title: str
    torchvision_class: str
    channels: int
    size: int
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        "Fashion-MNIST", "FashionMNIST", 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "mnist": DatasetSpec("MNIST", "MNIST", 1, 28, tuple(str(d) for d in range(10))),
    "cifar10": DatasetSpec(
        "CIFAR-10", "CIFAR10", 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
    ),
}


def dataset_key(name: str) -> str:
    """Normalize a user-facing dataset name ('Fashion-MNIST', 'fashionmnist', ...)."""
    squashed = "".join(ch for ch in name.lower() if ch.isalnum())
    for key in DATASETS:
        if squashed == key.replace("_", ""):
            return key
    raise ValueError(f"Unknown dataset {name!r}; valid datasets are {', '.join(DATASETS)}.")


def data_dir() -> Path:
    """Where datasets are downloaded: ``COURSE_DATA_DIR`` or ``~/.cache/course``."""
    return Path(os.environ.get("COURSE_DATA_DIR", Path.home() / ".cache" / "course")).expanduser()


# --------------------------------------------------------------------------------------
# Getting the raw images: torchvision, or the labelled offline stand-in
# --------------------------------------------------------------------------------------

Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _as_uint8_nchw(images) -> torch.Tensor:
    """torchvision keeps MNIST as (N, H, W) tensors and CIFAR as (N, H, W, C) arrays."""
    images = torch.as_tensor(images)
    if images.ndim == 3:
        return images.unsqueeze(1).contiguous()
    return images.permute(0, 3, 1, 2).contiguous()


def load_torchvision(spec: DatasetSpec, root: Path, download: bool) -> Splits:
    """Read (and, if allowed, download) a dataset with torchvision; raise if impossible."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision_class)
    splits = []
    # torchvision prints every mirror it tries; we report the outcome in one line instead.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for train in (True, False):
            ds = cls(root=str(root), train=train, download=download)
            splits += [_as_uint8_nchw(ds.data), torch.as_tensor(ds.targets, dtype=torch.long)]
    return splits[0], splits[1], splits[2], splits[3]


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """Write a uint8 tensor in the idx format of the MNIST family (big-endian header)."""
    if tensor.dtype != torch.uint8:
        raise ValueError(f"idx files here hold uint8 data, got {tensor.dtype}")
    header = bytes([0, 0, 0x08, tensor.ndim]) + struct.pack(f">{tensor.ndim}I", *tensor.shape)
    path.write_bytes(header + tensor.contiguous().numpy().tobytes())


def write_mnist_format(root: Path, splits: Splits, folder: str = "FashionMNIST") -> Path:
    """Lay out 28x28 uint8 ``splits`` as ``root/folder/raw/*-ubyte``, the files torchvision's
    MNIST-family classes read: a way to bring your own (or synthetic) data to ``load_data``."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_x, train_y, test_x, test_y = splits
    for prefix, x, y in (("train", train_x, train_y), ("t10k", test_x, test_y)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x.reshape(-1, 28, 28))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.to(torch.uint8))
    return Path(root)


def load_digits_standin(spec: DatasetSpec, test_fraction: float = 0.2) -> Splits:
    """scikit-learn's 1,797 real 8x8 digit images, resized and channel-matched to ``spec``.

    A fixed shuffle (seed 0) splits them into train and test, so every run sees the same
    split whatever the global seed.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(spec.size, spec.size), mode="bilinear",
                           align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    images = images.expand(-1, spec.channels, -1, -1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = int(len(labels) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


# --------------------------------------------------------------------------------------
# Per-sample augmentation, on the device
# --------------------------------------------------------------------------------------

def random_crop(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Pad by ``padding`` pixels and cut each image at its own random offset."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dev = images.device
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=dev)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=dev)
    rows = (dy + torch.arange(h, device=dev))[:, None, :, None]
    cols = (dx + torch.arange(w, device=dev))[:, None, None, :]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    channel = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_hflip(images: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``, independently per sample."""
    flip = torch.rand(images.shape[0], device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class Augment:
    """Per-sample augmentation applied to uint8 batches on the device."""

    crop_padding: int = 4
    hflip: bool = True

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop_padding:
            images = random_crop(images, self.crop_padding)
        if self.hflip:
            images = random_hflip(images)
        return images


# --------------------------------------------------------------------------------------
# Batches by index from device-resident tensors
# --------------------------------------------------------------------------------------

class DeviceLoader:
    """Yields ``(images, labels)`` batches from uint8 tensors that live on the device.

    Each batch is gathered by index, optionally augmented per sample, converted to float,
    resized and normalized -- all on the device, so the training loop never waits for data.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        shuffle: bool = False,
        augment: Augment | Callable[[torch.Tensor], torch.Tensor] | None = None,
        resize: int | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (N, C, H, W), got "
                             f"{images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.resize, self.channels_last = augment, resize, channels_last
        self.mean, self.std = mean, std

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return (c, self.resize or h, self.resize or w)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> augmented, resized, normalized float batch."""
        if self.augment is not None:
            images = self.augment(images)
        x = images.float().div_(255)
        if self.resize and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.resize)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.prepare(self.images[idx]), self.labels[idx]


@dataclass
class ImageData:
    """A dataset ready for training: train and test loaders plus what describes it."""

    name: str  # shown everywhere; names the stand-in when it is one
    key: str
    standin: bool
    classes: tuple[str, ...]
    train: DeviceLoader
    test: DeviceLoader
    val: DeviceLoader | None = None  # carved from the training split by ``val_size``

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def in_channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        return self.image_shape[-1]

    def summary(self) -> str:
        c, h, w = self.image_shape
        val = f"{self.val.num_samples:,} validation / " if self.val is not None else ""
        return (f"{self.name}: {self.train.num_samples:,} train / {val}"
                f"{self.test.num_samples:,} test images of {c}x{h}x{w}, {self.num_classes} "
                f"classes, on {self.train.device}")

    def validation(self) -> ImageData:
        """The same data with the validation split in the ``test`` slot, for model selection.

        ``fit`` evaluates on ``data.test`` after every epoch; hand it ``data.validation()``
        when those scores drive a decision (early stopping, choosing a hyperparameter), so
        that the real test split is touched once, at the very end. The name says so.
        """
        if self.val is None:
            raise ValueError("This data has no validation split: load it with "
                             "load_data(..., val_size=N).")
        return ImageData(f"{self.name}, scored on the validation split", self.key,
                         self.standin, self.classes, self.train, self.val, self.val)


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int):
    """A fixed random subset (seed 0) so every profile sees a class-balanced sample."""
    if size >= len(labels):
        return images, labels
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:size]
    return images[keep], labels[keep]


def load_data(
    name: str = "fashion_mnist",
    batch_size: int = 128,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    augment: Augment | Callable[[torch.Tensor], torch.Tensor] | bool = False,
    resize: int | None = None,
    device: torch.device | str | None = None,
    profile: Profile | str | None = None,
    eval_batch_size: int | None = None,
    val_size: int = 0,
    normalize: bool = True,
    root: str | Path | None = None,
    allow_standin: bool = True,
    verbose: bool = True,
) -> ImageData:
    """Load a dataset onto the device, sized by the active profile.

    ``train_size``/``test_size`` default to the profile's caps; ``augment=True`` turns on
    random crop (4 px padding) and horizontal flip for training batches (any callable that
    maps a uint8 (B, C, H, W) batch to another works too, e.g. a kornia pipeline); ``resize``
    scales images to ``resize x resize`` on the device (e.g. 96 for a ResNet on
    Fashion-MNIST).
    ``normalize=False`` serves pixels in [0, 1] instead of standardizing each channel;
    ``root`` reads (and downloads) the dataset there instead of in :func:`data_dir`.
    ``val_size`` carves that many images out of the *training* split (a fixed shuffle, seed
    1) as ``data.val``, before ``train_size`` caps what is left; the test split is never used
    for it, and the normalization statistics come from the remaining training images only.
    """
    key = dataset_key(name)
    spec = DATASETS[key]
    device = get_device(device)
    if not isinstance(profile, Profile):
        profile = get_profile(profile)

    offline = os.environ.get("COURSE_OFFLINE", "") not in ("", "0")
    try:
        raw = load_torchvision(spec, Path(root) if root else data_dir(), download=not offline)
        title, standin, classes = spec.title, False, spec.classes
    except Exception as error:  # noqa: BLE001 - any failure to fetch means "use the stand-in"
        if not allow_standin:
            raise
        reason = "COURSE_OFFLINE is set" if offline else _short_reason(error)
        print(f"[course_utils] {spec.title} is not available ({reason}); using scikit-learn's "
              f"8x8 digits, resized to {spec.channels}x{spec.size}x{spec.size}, as an "
              f"OFFLINE STAND-IN -- numbers below are not {spec.title} results.")
        raw = load_digits_standin(spec)
        title, standin = f"digits (offline stand-in for {spec.title})", True
        classes = tuple(str(d) for d in range(10))  # what the stand-in images really show

    train_x, train_y = raw[0], raw[1]
    if val_size:
        if not 0 < val_size < len(train_y):
            raise ValueError(f"val_size must be between 1 and {len(train_y) - 1} (the training "
                             f"split has {len(train_y):,} images), got {val_size}.")
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(1))
        val_x, val_y = train_x[order[:val_size]], train_y[order[:val_size]]
        train_x, train_y = train_x[order[val_size:]], train_y[order[val_size:]]
    train_x, train_y = _subset(train_x, train_y,
                               train_size or profile.size(len(train_y), "train"))
    test_x, test_y = _subset(raw[2], raw[3], test_size or profile.size(len(raw[3]), "test"))
    # Per-channel statistics of the training images, computed rather than copied from a table.
    pixels = train_x.float().div(255).transpose(0, 1).reshape(train_x.shape[1], -1)
    mean = pixels.mean(dim=1).view(1, -1, 1, 1).to(device)
    std = pixels.std(dim=1).clamp_min(1e-3).view(1, -1, 1, 1).to(device)
    if not normalize:
        mean, std = torch.zeros_like(mean), torch.ones_like(std)

    if augment is True:
        augment = Augment()
    channels_last = device.type == "cuda"
    common = dict(mean=mean, std=std, resize=resize, channels_last=channels_last)
    train = DeviceLoader(train_x.to(device), train_y.to(device), batch_size, shuffle=True,
                         augment=augment or None, **common)
    test = DeviceLoader(test_x.to(device), test_y.to(device), eval_batch_size or 2 * batch_size,
                        **common)
    val = (DeviceLoader(val_x.to(device), val_y.to(device), eval_batch_size or 2 * batch_size,
                        **common) if val_size else None)
    data = ImageData(title, key, standin, classes, train, test, val)
    if verbose:
        print(data.summary())
    return data


def _short_reason(error: BaseException) -> str:
    """The innermost cause of a failed download, in one short phrase."""
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    text = str(getattr(error, "reason", None) or error).strip().splitlines()
    detail = text[0][:100] if text else ""
    return f"download failed: {type(error).__name__}" + (f" {detail}" if detail else "")
