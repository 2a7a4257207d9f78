"""Transfer learning: stages, freezing, per-stage learning rates, features and source models.

A pretrained network is read as a sequence of named **stages** -- ``stem``, the residual
stages, and the ``head`` (the final linear layer) -- so that the recipe of Chapter 4 is a few
calls:

- :func:`replace_head` puts a fresh linear layer for the new number of classes on top;
- :func:`freeze` / :func:`unfreeze` / :func:`unfreeze_from` switch ``requires_grad`` by stage,
  and keep the batch-norm layers of frozen stages in eval mode (running statistics used and
  left unchanged) even when ``fit`` calls ``model.train()`` -- the frozen-BN pitfall;
- :func:`param_groups` builds the optimizer's parameter groups with one learning rate per
  stage (discriminative learning rates), trainable parameters only;
- :func:`extract_features` runs the model in eval mode without gradients and returns one
  stage's globally pooled output (or the head's input), and :func:`linear_probe` fits a
  linear classifier on such features.

Where the source model comes from: with internet, :func:`torchvision_source` loads ImageNet
weights through torchvision's ``weights=`` API (with their transforms), cached in
``COURSE_DATA_DIR``. Offline -- in CI and on most laptops here -- :func:`pretrained_source`
trains the course's *own* source model (a small CIFAR-style ResNet from the zoo on half of the
classes of the course's dataset) and caches it under ``COURSE_DATA_DIR/transfer``, keyed by
everything that shaped it, so a mismatched or corrupt checkpoint is reported and rebuilt,
never silently used. :func:`target_task` builds the two kinds of target task of the chapter:
the *other* classes of the same dataset ("similar") and procedurally generated textures
(:func:`textures`, "very different").

Which stages a network has: the course's and torchvision's ImageNet-style ResNets
(``stem``, ``layer1`` .. ``layer4``, ``head``) and the CIFAR-style ResNets of the zoo
(``stem``, ``stage1`` .. ``stage3``, ``head``). An unknown stage name lists the valid ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import DeviceLoader, ImageData, data_dir, load_data
from .device import get_device
from .models import CifarResNet, cifar_resnet
from .profile import Profile, get_profile
from .seed import seed_everything
from .train import fit

HEAD = "head"
STANDIN_NOTE = "the course's own pretraining"
CHECKPOINT_FORMAT = 2  # 2: the source's initial weights are seeded (1 drew them unseeded)

# --------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------


def stages(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The model's stages, bottom to top: name -> the modules that form it.

    ImageNet-style ResNets (the zoo's and torchvision's): ``stem`` (conv1, bn1), ``layer1`` ..
    ``layer4`` and ``head`` (fc). CIFAR-style ResNets of the zoo: ``stem``, ``stage1`` ..
    ``stage3`` (the blocks of each width) and ``head``.
    """
    if isinstance(model, CifarResNet):
        out: dict[str, list[nn.Module]] = {"stem": [model.conv1, model.bn1]}
        blocks = list(model.blocks)
        n = len(blocks) // 3
        for i in range(3):
            out[f"stage{i + 1}"] = blocks[i * n:(i + 1) * n]
        out[HEAD] = [model.fc]
        return out
    if all(hasattr(model, name) for name in ("conv1", "bn1", "layer1", "layer4", "fc")):
        out = {"stem": [model.conv1, model.bn1]}
        for i in range(1, 5):
            out[f"layer{i}"] = [getattr(model, f"layer{i}")]
        final = getattr(model, "final", None)  # pre-activation ResNets: final BN + ReLU
        if isinstance(final, nn.Sequential) and len(final):
            out["layer4"].append(final)
        out[HEAD] = [model.fc]
        return out
    raise TypeError(f"Stages are defined for the zoo's ResNets (models.resnet*, "
                    f"models.cifar_resnet) and torchvision's ResNets, not for "
                    f"{type(model).__name__}.")


def stage_names(model: nn.Module) -> list[str]:
    """Names of the model's stages, bottom (``stem``) to top (``head``)."""
    return list(stages(model))


def _check_names(model: nn.Module, names: Iterable[str]) -> list[str]:
    valid = stage_names(model)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"Unknown stage {unknown[0]!r}; valid stages of this "
                         f"{type(model).__name__} are {', '.join(valid)}.")
    return names


def stage_parameters(model: nn.Module, stage: str) -> list[nn.Parameter]:
    """The parameters of one stage (``ValueError`` listing the valid names if unknown)."""
    (stage,) = _check_names(model, [stage])
    return [p for module in stages(model)[stage] for p in module.parameters()]


def trainable_stages(model: nn.Module) -> list[str]:
    """The stages that have at least one parameter with ``requires_grad=True``."""
    return [name for name, modules in stages(model).items()
            if any(p.requires_grad for m in modules for p in m.parameters())]


def _frozen_bn_pre_hook(module: nn.Module, args: tuple) -> None:
    # fit() calls model.train() every epoch, which would put this BN back in train mode: it
    # would normalize with batch statistics and overwrite its running statistics although
    # its stage is frozen. The hook switches it back to eval mode just before it runs.
    if getattr(module, "_course_frozen", False) and module.training:
        module.eval()


def _bn_layers(modules: Iterable[nn.Module]) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    for top in modules:
        for m in top.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                yield m


def freeze(model: nn.Module, names: str | Iterable[str] | None = None, *,
           bn_eval: bool = True) -> nn.Module:
    """Stop training the stages ``names`` (default: every stage but the head).

    Their parameters get ``requires_grad=False``. With ``bn_eval=True`` (the default) their
    batch-norm layers are also kept in eval mode -- normalizing with the running statistics
    of the source and never updating them -- even after ``model.train()``: a forward
    pre-hook switches them back before each call. ``bn_eval=False`` leaves them in whatever
    mode the model is in: the pitfall the chapter demonstrates. Returns the model.
    """
    all_names = stage_names(model)
    names = [n for n in all_names if n != HEAD] if names is None else _check_names(model, names)
    groups = stages(model)
    for name in names:
        for module in groups[name]:
            for p in module.parameters():
                p.requires_grad_(False)
        for bn in _bn_layers(groups[name]):
            bn._course_frozen = bn_eval
            if bn_eval:
                if not getattr(bn, "_course_hooked", False):
                    bn.register_forward_pre_hook(_frozen_bn_pre_hook)
                    bn._course_hooked = True
                bn.eval()
    return model


def unfreeze(model: nn.Module, names: str | Iterable[str] | None = None) -> nn.Module:
    """Train the stages ``names`` again (default: all of them); their BN layers follow the
    model's train/eval mode again. Returns the model."""
    groups = stages(model)
    names = list(groups) if names is None else _check_names(model, names)
    for name in names:
        for module in groups[name]:
            for p in module.parameters():
                p.requires_grad_(True)
        for bn in _bn_layers(groups[name]):
            bn._course_frozen = False
            bn.train(model.training)
    return model


def unfreeze_from(model: nn.Module, stage: str) -> list[str]:
    """Progressive unfreezing: train ``stage`` and every stage above it; freeze the rest.

    Returns the names of the trainable stages, bottom to top.
    """
    (stage,) = _check_names(model, [stage])
    names = stage_names(model)
    top = names[names.index(stage):]
    unfreeze(model, top)
    below = names[:names.index(stage)]
    if below:
        freeze(model, below)
    return top


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Put a freshly initialized linear layer for ``num_classes`` classes in place of the
    model's head (``model.fc``), on the same device and dtype, and return it."""
    old = stages(model)[HEAD][0]
    if not isinstance(old, nn.Linear):
        raise TypeError(f"expected the head to be nn.Linear, got {type(old).__name__}.")
    head = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
    model.fc = head
    return head


def param_groups(model: nn.Module, lr: float | Mapping[str, float], *,
                 decay: float = 1.0, trainable_only: bool = True) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim``, one per stage, each with its learning rate.

    ``lr`` as a number: the head gets ``lr`` and each stage below gets ``decay`` times the
    rate of the stage above it (``decay=0.1``: ten times smaller per stage going down;
    ``decay=1``: one rate for all). ``lr`` as a mapping ``{stage: rate}``: exactly those
    rates; a stage with trainable parameters that has no rate is an error. With
    ``trainable_only`` (the default) frozen parameters are left out, so the optimizer never
    holds them, and stages with nothing to train get no group. Each group also carries its
    stage's ``name``.
    """
    groups = stages(model)
    names = list(groups)
    if isinstance(lr, Mapping):
        _check_names(model, lr)
        rates = dict(lr)
    else:
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}.")
        rates = {name: lr * decay ** (len(names) - 1 - i) for i, name in enumerate(names)}
    out = []
    for name in names:
        params = [p for m in groups[name] for p in m.parameters()
                  if p.requires_grad or not trainable_only]
        if not params:
            continue
        if name not in rates:
            raise ValueError(f"stage {name!r} has trainable parameters but no learning rate; "
                             f"give one or freeze it (rates given for: {', '.join(rates)}).")
        out.append({"params": params, "lr": rates[name], "name": name})
    return out


# --------------------------------------------------------------------------------------
# Features and linear probes
# --------------------------------------------------------------------------------------


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, stage: str | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every image of ``loader`` and their labels, as two tensors.

    ``stage=None``: the head's input (what the linear classifier of the network sees);
    a stage name: that stage's output, averaged over H and W (global average pooling), so
    every stage gives one vector of its channels per image. The model runs in eval mode
    (batch norm with its running statistics) and without gradients; its mode is restored.
    A :class:`Repeated` training loader gives each of its images once.
    """
    loader = distinct(loader)
    groups = stages(model)
    captured: list[torch.Tensor] = []
    if stage is None or stage == HEAD:
        if stage == HEAD:
            raise ValueError("features of the head are the logits: use stage=None for the "
                             "head's input, or a stage below it.")

        def grab_input(module, args):
            captured.append(args[0].flatten(1))
        handle = groups[HEAD][0].register_forward_pre_hook(grab_input)
    else:
        _check_names(model, [stage])

        def grab_output(module, args, output):
            captured.append(output.mean(dim=(2, 3)) if output.ndim == 4 else output.flatten(1))
        handle = groups[stage][-1].register_forward_hook(grab_output)
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        for x, y in loader:
            captured.clear()
            model(x)
            feats.append(captured[-1].float())
            labels.append(y)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@dataclass
class Probe:
    """A linear classifier fitted on fixed features: ``classifier`` maps standardized
    features to logits; ``mean``/``std`` standardize them (from the training features)."""

    classifier: nn.Linear
    mean: torch.Tensor
    std: torch.Tensor
    train_accuracy: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.classifier((features - self.mean) / self.std)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return (self.logits(features).argmax(1) == labels).float().mean().item()

    def as_head(self) -> nn.Linear:
        """The same classifier as an ``nn.Linear`` on *unstandardized* features (the
        standardization folded into its weights), ready to become a network's head."""
        head = nn.Linear(self.classifier.in_features, self.classifier.out_features)
        with torch.no_grad():
            w = self.classifier.weight / self.std
            head.weight.copy_(w)
            head.bias.copy_(self.classifier.bias - w @ self.mean)
        return head.to(self.classifier.weight.device)


def linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None,
                 *, weight_decay: float = 1e-3, max_iter: int = 200) -> Probe:
    """Multinomial logistic regression on fixed features: full-batch L-BFGS
    (``torch.optim.LBFGS``) on the standardized features, with an L2 penalty
    ``weight_decay``, from a zero start (so the result does not depend on a seed)."""
    features = features.float()
    num_classes = num_classes or int(labels.max()) + 1
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    clf = nn.Linear(z.shape[1], num_classes).to(z.device)
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    opt = torch.optim.LBFGS(clf.parameters(), lr=1, max_iter=max_iter,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(clf(z), labels) + weight_decay / 2 * clf.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    clf.requires_grad_(False)
    probe = Probe(clf, mean, std, 0.0)
    probe.train_accuracy = probe.accuracy(features, labels)
    return probe


# --------------------------------------------------------------------------------------
# Data for the target tasks
# --------------------------------------------------------------------------------------

TEXTURES: tuple[str, ...] = ("stripes", "checkerboard", "dots", "rings", "blobs")


def textures(per_class: int, size: int = 28, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A procedurally generated dataset of five texture classes, as uint8 (N, 1, size, size)
    images and their labels: ``stripes`` (a grating), ``checkerboard`` (two crossed
    gratings), ``dots`` (a lattice of spots), ``rings`` (concentric circles around a random
    centre) and ``blobs`` (smoothed noise). Orientation, frequency, phase and contrast are
    random, and each image gets additive noise, so no single pixel or filter gives the class
    away. ``seed`` makes it repeatable; nothing is downloaded.
    """
    g = torch.Generator().manual_seed(seed)
    n = per_class * len(TEXTURES)
    labels = torch.arange(len(TEXTURES)).repeat_interleave(per_class)
    coords = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def rand(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, 1, 1, generator=g)

    theta = rand(n, high=math.pi)
    freq = rand(n, low=3.0, high=7.0)
    phase = rand(n, high=2 * math.pi)
    u = xx * torch.cos(theta) + yy * torch.sin(theta)
    v = -xx * torch.sin(theta) + yy * torch.cos(theta)
    stripes = torch.sin(freq * math.pi * u + phase)
    checker = torch.sin(freq * math.pi * u + phase) * torch.sin(freq * math.pi * v)
    dots = ((torch.cos(freq * math.pi * u + phase) * torch.cos(freq * math.pi * v)) > 0.6) * 2.0 - 1
    cx, cy = rand(n, low=-0.5, high=0.5), rand(n, low=-0.5, high=0.5)
    rings = torch.sin(freq * math.pi * ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() + phase)
    noise = torch.randn(n, 1, size // 4, size // 4, generator=g)
    blobs = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    blobs = blobs / blobs.flatten(1).abs().amax(1).clamp_min(1e-6)[:, None, None]
    patterns = torch.stack([stripes, checker, dots, rings, blobs], dim=1)  # (n, 5, H, W)
    images = patterns[torch.arange(n), labels]
    contrast = rand(n, low=0.4, high=1.0)
    images = 0.5 + 0.5 * contrast * images + 0.15 * torch.randn(n, size, size, generator=g)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).unsqueeze(1)
    order = torch.randperm(n, generator=g)
    return images[order], labels[order]


def class_subset(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
                 per_class: int | None = None, seed: int = 0,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of ``classes`` with labels renumbered 0 .. len(classes)-1, and at most
    ``per_class`` of each class (a random choice that depends only on ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in classes:
        idx = (labels == c).nonzero().flatten().cpu()
        if per_class is not None:
            if per_class > len(idx):
                raise ValueError(f"class {c} has only {len(idx)} images, {per_class} asked for.")
            idx = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        keep.append(idx)
    keep_t = torch.cat(keep).sort().values.to(labels.device)
    remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long, device=labels.device)
    remap[torch.as_tensor(list(classes), device=labels.device)] = torch.arange(
        len(classes), device=labels.device)
    return images[keep_t], remap[labels[keep_t]]


def jitter(images: torch.Tensor, seed: int, *, scale: tuple[float, float] = (0.55, 0.95),
           max_shift: float = 0.25, max_degrees: float = 25.0) -> torch.Tensor:
    """Each uint8 image placed at its own random scale, angle and position (a fixed random
    affine map per image, drawn from ``seed``; the border is filled with black). The
    chapter's "similar" domain: the course's images, no longer centred and upright, so that
    few labels are not enough to learn where and how big a class can appear."""
    n = len(images)
    g = torch.Generator().manual_seed(seed)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=g)
    a = (2 * torch.rand(n, generator=g) - 1) * math.radians(max_degrees)
    t = (2 * torch.rand(n, 2, generator=g) - 1) * max_shift
    # affine_grid maps output to input coordinates: the inverse of "shrink, rotate, move"
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.stack([torch.stack([cos, -sin, -(cos * t[:, 0] - sin * t[:, 1])], 1),
                         torch.stack([sin, cos, -(sin * t[:, 0] + cos * t[:, 1])], 1)], 1)
    x = images.float().cpu()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).to(images.device)


class Repeated:
    """A training loader that makes one epoch several passes over a small training set
    (the images tiled ``times`` times, shuffled together, in full batches), so that a run on
    25 images is not mostly evaluation and per-step overhead. ``num_samples`` stays the
    number of distinct images; ``distinct`` is a loader over them, once each (for features)."""

    def __init__(self, loader: DeviceLoader, times: int) -> None:
        self.distinct, self.times = loader, max(1, times)
        self.loader = DeviceLoader(loader.images.repeat(self.times, 1, 1, 1),
                                   loader.labels.repeat(self.times), loader.batch_size,
                                   loader.mean, loader.std, shuffle=True,
                                   augment=loader.augment, resize=loader.resize,
                                   channels_last=loader.channels_last)

    num_samples = property(lambda self: self.distinct.num_samples)
    batch_size = property(lambda self: self.loader.batch_size)
    image_shape = property(lambda self: self.loader.image_shape)
    device = property(lambda self: self.loader.device)
    mean = property(lambda self: self.loader.mean)
    std = property(lambda self: self.loader.std)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def distinct(loader: Any) -> Any:
    """The loader over each training image once (unwraps :class:`Repeated`)."""
    return getattr(loader, "distinct", loader)


def make_task(name: str, classes: Sequence[str], train: tuple[torch.Tensor, torch.Tensor],
              test: tuple[torch.Tensor, torch.Tensor], mean: torch.Tensor, std: torch.Tensor,
              *, batch_size: int = 32, min_epoch_images: int = 256, standin: bool = False,
              resize: int | None = None,
              device: torch.device | str | None = None) -> ImageData:
    """An :class:`ImageData` from uint8 images, normalized with the given ``mean``/``std``
    (a source model's, for transfer) and, with ``resize``, scaled to that many pixels a
    side on the device. A training set smaller than ``min_epoch_images`` is passed over
    several times per epoch (:class:`Repeated`)."""
    device = get_device(device)
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).to(device)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).to(device)
    common = dict(mean=mean, std=std, channels_last=device.type == "cuda", resize=resize)
    tr = DeviceLoader(train[0].to(device), train[1].to(device), batch_size, shuffle=True,
                      **common)
    te = DeviceLoader(test[0].to(device), test[1].to(device), 256, **common)
    times = -(-min_epoch_images // max(1, tr.num_samples))
    return ImageData(name, "transfer", standin, tuple(classes),
                     Repeated(tr, times) if times > 1 else tr, te)


# --------------------------------------------------------------------------------------
# The offline source model: the course's own pretraining, cached
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """What the course's own source model is: a CIFAR-style ResNet of ``depth`` and
    ``width`` trained on ``classes`` of ``dataset``, each training image seen as ``views``
    randomly placed copies (:func:`jitter`; a big source task from a small dataset),
    for ``epochs`` at full size (scaled by the profile, never fewer than ``min_epochs``),
    with SGD + momentum, seeded."""

    dataset: str = "fashion_mnist"
    classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    views: int = 8  # randomly placed copies of each source image (see :func:`jitter`)
    smoke_views: int = 2  # fewer in the smoke profile, to pretrain in seconds
    depth: int = 8
    width: int = 16
    epochs: int = 30
    min_epochs: int = 4
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0


class CheckpointError(RuntimeError):
    """A cached checkpoint is corrupt or does not match what was asked for."""


@dataclass
class SourceModel:
    """A pretrained source network and what a reader must know about it."""

    model: nn.Module
    description: str  # says where the weights come from, on every page that shows them
    mean: torch.Tensor  # the input normalization the source was trained with, per channel
    std: torch.Tensor
    classes: tuple[str, ...]
    image_size: int
    spec: SourceSpec | None = None
    path: Path | None = None
    from_cache: bool = False
    source_accuracy: float | None = None  # on the source task's test split
    standin: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A short line that names this source in a figure's title: the course's own
        pretraining, on which data (the dataset's name says when it is the offline
        stand-in) and which classes."""
        dataset = self.meta.get("dataset", "")
        classes = _ranges(self.spec.classes) if self.spec else ""
        where = f" on {dataset}" + (f", classes {classes}" if classes else "") if dataset else ""
        return f"source: {STANDIN_NOTE}{where}"

    def fresh_copy(self) -> nn.Module:
        """An independent copy of the pretrained network (train mode, all trainable)."""
        import copy

        model = copy.deepcopy(self.model)
        unfreeze(model)
        return model.train()


_LOADED: dict[tuple, ImageData] = {}


def _source_data(spec: SourceSpec, profile: Profile, device: torch.device):
    # Loaded once per process: every target task of a page is cut from the same images.
    key = (spec.dataset, profile.name, str(device), os.environ.get("COURSE_DATA_DIR"))
    if key not in _LOADED:
        _LOADED[key] = load_data(spec.dataset, batch_size=spec.batch_size, profile=profile,
                                 device=device, verbose=False)
    data = _LOADED[key]
    return data, (data.train.images, data.train.labels), (data.test.images, data.test.labels)


def source_views(spec: SourceSpec, profile: Profile) -> int:
    """How many randomly placed copies of each source image the profile trains on."""
    return spec.smoke_views if profile.name == "smoke" else spec.views


def source_key(spec: SourceSpec, profile: Profile, dataset_name: str, n_train: int) -> dict:
    """Everything that shapes the source model's weights; its hash names the checkpoint."""
    return {"format": CHECKPOINT_FORMAT, "spec": asdict(spec), "profile": profile.name,
            "epochs": max(spec.min_epochs, profile.epochs(spec.epochs)),
            "views": source_views(spec, profile),
            "dataset": dataset_name, "n_train": n_train}


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def load_checkpoint(path: Path, key: dict, model: nn.Module) -> dict:
    """Load ``path`` into ``model`` if it was saved for exactly ``key``; return its payload.

    Raises :class:`CheckpointError` saying what is wrong (unreadable, another key,
    missing or mismatched weights). Loads with ``weights_only=True``.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        detail = str(error).splitlines()[0][:80] if str(error) else ""
        raise CheckpointError(f"cannot be read ({type(error).__name__}: {detail})") from error
    if not isinstance(payload, dict) or "key" not in payload or "state_dict" not in payload:
        raise CheckpointError("is not a course source-model checkpoint")
    if payload["key"] != key:
        diff = sorted(k for k in set(key) | set(payload["key"])
                      if key.get(k) != payload["key"].get(k))
        raise CheckpointError(f"was made for other settings (differs in: {', '.join(diff)})")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"does not fit the model ({str(error).splitlines()[0][:100]})") \
            from error
    return payload


def pretrained_source(spec: SourceSpec | None = None, *, profile: Profile | str | None = None,
                      device: torch.device | str | None = None, rebuild: bool = False,
                      verbose: bool = True) -> SourceModel:
    """The course's own pretrained source model, trained once and then read from the cache.

    Trains ``spec`` (default :class:`SourceSpec`: a CIFAR-style ResNet-8 on classes 0-4 of
    Fashion-MNIST, or of the offline stand-in when Fashion-MNIST cannot be downloaded), sized
    by the profile, and saves it as ``COURSE_DATA_DIR/transfer/source-<hash>.pt``. Later calls
    load it (``weights_only=True``) if the checkpoint was made for exactly the same settings,
    data and profile; a checkpoint that is corrupt or was made for something else is reported
    in one line and rebuilt -- never used. ``rebuild=True`` retrains regardless.
    """
    spec = spec or SourceSpec()
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    device = get_device(device)
    data, (train_x, train_y), (test_x, test_y) = _source_data(spec, profile, device)
    x, y = class_subset(train_x, train_y, spec.classes)
    views = source_views(spec, profile)
    src_train = (torch.cat([jitter(x, seed=100 + v) for v in range(views)]), y.repeat(views))
    x, y = class_subset(test_x, test_y, spec.classes)
    src_test = (jitter(x, seed=99), y)
    key = source_key(spec, profile, data.name, len(src_train[1]))
    path = data_dir() / "transfer" / f"source-{_key_hash(key)}.pt"
    classes = tuple(data.classes[c] for c in spec.classes)
    mean, std = data.train.mean.flatten().cpu(), data.train.std.flatten().cpu()

    seed_everything(spec.seed)  # the initial weights too: the same settings, the same source
    model = cifar_resnet(spec.depth, data.in_channels, len(spec.classes), data.image_size,
                         width=spec.width)
    payload, from_cache = None, False
    if path.exists() and not rebuild:
        try:
            payload = load_checkpoint(path, key, model)
            from_cache = True
        except CheckpointError as error:
            print(f"[course_utils] the cached source model {path.name} {error}; it is not "
                  "used -- pretraining the source model again.")
    if payload is None:
        payload = _pretrain(model, spec, key, data, src_train, src_test, mean, std, profile,
                            device)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)  # atomic: a parallel reader never sees half a file
    model.to(device)
    meta = payload["meta"]
    description = (f"{STANDIN_NOTE}: a CIFAR-style ResNet-{spec.depth} (width {spec.width}) "
                   f"trained for {key['epochs']} epochs on classes {_ranges(spec.classes)} of "
                   f"{data.name}, randomly placed ({meta['n_train']:,} images: "
                   f"{key['views']} views of {meta['n_train'] // key['views']:,}; source test "
                   f"accuracy {meta['source_accuracy']:.1%})")
    if verbose:
        how = "loaded from the cache" if from_cache else f"pretrained in {meta['seconds']:.1f} s"
        print(f"Source model ({how}): {description}")
    return SourceModel(model, description, mean, std, classes, data.image_size, spec, path,
                       from_cache, meta["source_accuracy"], data.standin, meta)


def _ranges(classes: Sequence[int]) -> str:
    c = list(classes)
    if c == list(range(c[0], c[-1] + 1)):
        return f"{c[0]}-{c[-1]}"
    return ", ".join(map(str, c))


def _pretrain(model, spec, key, data, src_train, src_test, mean, std, profile, device) -> dict:
    task = make_task(f"{data.name}, classes {_ranges(spec.classes)}, randomly placed",
                     [data.classes[c] for c in spec.classes], src_train, src_test, mean, std,
                     batch_size=spec.batch_size, min_epoch_images=0, standin=data.standin,
                     device=device)
    seed_everything(spec.seed)
    start = time.perf_counter()
    history = fit(model, task, key["epochs"], optimizer="sgd", lr=spec.lr,
                  optimizer_kwargs=dict(momentum=0.9, weight_decay=5e-4, nesterov=True),
                  scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
                      opt, key["epochs"]),
                  profile=profile, device=device, label="source model", progress=False,
                  verbose=False)
    model.cpu()
    return {"key": key, "state_dict": model.state_dict(),
            "meta": {"source_accuracy": history.test_acc[-1], "n_train": len(src_train[1]),
                     "n_test": len(src_test[1]), "seconds": time.perf_counter() - start,
                     "dataset": data.name, "standin": data.standin}}


# --------------------------------------------------------------------------------------
# Target tasks of the chapter: "similar" and "very different"
# --------------------------------------------------------------------------------------

KINDS: tuple[str, ...] = ("similar", "different")


def target_task(source: SourceModel, kind: str = "similar", per_class: int | None = None, *,
                seed: int = 0, batch_size: int = 32, min_epoch_images: int = 256,
                profile: Profile | str | None = None,
                device: torch.device | str | None = None) -> ImageData:
    """A target task for ``source``, normalized with the source's statistics.

    ``"similar"``: the classes of the source's dataset that the source never saw (5-9 for
    the default source), randomly placed like the source's images (:func:`jitter`).
    ``"different"``: the five :data:`TEXTURES`, as many images per class as the similar task
    has, generated procedurally. ``per_class`` labelled training images
    per class (a random choice by ``seed``; None: as many as the smallest class has, which
    is the same for both kinds); the test split is always complete.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; valid kinds are {', '.join(KINDS)}.")
    spec = source.spec or SourceSpec()
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    device = get_device(device)
    data, (train_x, train_y), (test_x, test_y) = _source_data(spec, profile, device)
    target = [c for c in range(len(data.classes)) if c not in spec.classes]
    pool_train = class_subset(train_x, train_y, target)
    pool_test = class_subset(test_x, test_y, target)
    if kind == "similar":
        pool_train = (jitter(pool_train[0], seed=200), pool_train[1])
        pool_test = (jitter(pool_test[0], seed=201), pool_test[1])
        name = f"{data.name}, classes {_ranges(target)}, randomly placed"
        classes, standin = tuple(data.classes[c] for c in target), data.standin
    else:
        n_train = int(torch.bincount(pool_train[1]).min())
        n_test = int(torch.bincount(pool_test[1]).min())
        x, y = textures(n_train + n_test, data.image_size, seed=1234)
        x = x.expand(-1, data.in_channels, -1, -1).contiguous()
        test_idx = torch.cat([(y == c).nonzero().flatten()[:n_test] for c in range(5)])
        train_mask = torch.ones(len(y), dtype=torch.bool)
        train_mask[test_idx] = False
        pool_train, pool_test = (x[train_mask], y[train_mask]), (x[test_idx], y[test_idx])
        name, classes, standin = "textures (procedurally generated)", TEXTURES, False
    label = f"{per_class} labels per class"
    if per_class is None:  # as many per class as the smallest class has: balanced, and the
        per_class = int(torch.bincount(pool_train[1]).min())  # same for both kinds
        label = f"all {per_class} labels per class"
    train = class_subset(*pool_train, range(len(classes)), per_class, seed=seed)
    return make_task(f"{name}, {label}", classes, train, pool_test, source.mean, source.std,
                     batch_size=batch_size, min_epoch_images=min_epoch_images,
                     standin=standin, device=device)


# --------------------------------------------------------------------------------------
# The strategies of the decision table
# --------------------------------------------------------------------------------------

STRATEGIES: tuple[str, ...] = ("linear probe", "fine-tune top", "fine-tune all", "scratch")


@dataclass
class StrategyResult:
    strategy: str
    accuracy: float
    seconds: float
    history: Any = None


def _cosine(epochs: int):
    return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)


def run_strategy(strategy: str, source: SourceModel, task: ImageData, epochs: int, *,
                 lr: float = 0.05, decay: float = 0.3, scratch_lr: float = 0.05,
                 seed: int = 0, stage: str | None = None,
                 profile: Profile | str | None = None) -> StrategyResult:
    """Train one strategy of the decision table on ``task`` and return its test accuracy.

    - ``"linear probe"``: logistic regression on the frozen network's features (of
      ``stage``; default the head's input);
    - ``"fine-tune top"``: a new head initialized by that probe, then the top stage and the
      head trained (everything below frozen, its BN in eval), SGD with momentum and a cosine
      schedule, rates ``lr`` for the head and ``lr * decay`` for the stage under it;
    - ``"fine-tune all"``: the same from the probe's head, with every stage trained at
      discriminative rates (``decay`` per stage going down);
    - ``"scratch"``: the same architecture from a random initialization, every stage at
      ``scratch_lr`` (cosine schedule), the same number of epochs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; valid strategies are "
                         f"{', '.join(STRATEGIES)}.")
    start = time.perf_counter()
    seed_everything(seed)
    k = task.num_classes
    if strategy == "scratch":
        spec = source.spec or SourceSpec()
        model = cifar_resnet(spec.depth, task.in_channels, k, task.image_size, width=spec.width)
        opt = torch.optim.SGD(model.parameters(), lr=scratch_lr, momentum=0.9,
                              weight_decay=5e-4)
        history = fit(model, task, epochs, optimizer=opt, scheduler=_cosine(epochs),
                      profile=profile, progress=False, verbose=False, label="scratch")
        return StrategyResult(strategy, history.test_acc[-1], time.perf_counter() - start,
                              history)
    model = source.fresh_copy().to(task.train.device)
    replace_head(model, k)
    feats, labels = extract_features(model, task.train, stage)
    probe = linear_probe(feats, labels, k)
    if strategy == "linear probe":
        test_feats, test_labels = extract_features(model, task.test, stage)
        return StrategyResult(strategy, probe.accuracy(test_feats, test_labels),
                              time.perf_counter() - start)
    model.fc = probe.as_head()
    names = stage_names(model)
    if strategy == "fine-tune top":
        unfreeze_from(model, names[-2])
    opt = torch.optim.SGD(param_groups(model, lr, decay=decay), momentum=0.9,
                          weight_decay=5e-4)
    history = fit(model, task, epochs, optimizer=opt, scheduler=_cosine(epochs),
                  profile=profile, progress=False, verbose=False, label=strategy)
    return StrategyResult(strategy, history.test_acc[-1], time.perf_counter() - start, history)


# --------------------------------------------------------------------------------------
# With internet: torchvision's pretrained weights
# --------------------------------------------------------------------------------------


def torchvision_source(arch: str = "resnet18", weights: str = "DEFAULT", *,
                       verbose: bool = True) -> tuple[nn.Module, Any] | None:
    """A torchvision model with pretrained weights, and the transforms they expect.

    Uses the ``weights=`` API (``torchvision.models.get_model_weights(arch)[weights]``;
    never the deprecated ``pretrained=True``) and caches the file in
    ``COURSE_DATA_DIR/torchvision``. Returns ``(model, weights.transforms())``, or None --
    after one line saying why -- when the weights cannot be had (``COURSE_OFFLINE=1``, no
    network). The file is checked against the hash in its name.
    """
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    try:
        chosen = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(f"Unknown weights {weights!r} for {arch}; valid ones are DEFAULT, "
                         f"{', '.join(w.name for w in enum)}.") from None
    if os.environ.get("COURSE_OFFLINE", "") not in ("", "0"):
        reason = "COURSE_OFFLINE is set"
    else:
        try:
            # torch.hub announces the download (and its local path) on stdout or stderr,
            # depending on the version: the one line below says what happened instead
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                state = chosen.get_state_dict(progress=False, check_hash=True,
                                              model_dir=str(data_dir() / "torchvision"))
            model = torchvision.models.get_model(arch, weights=None)
            model.load_state_dict(state)
            if verbose:
                print(f"torchvision {arch} with {chosen} (ImageNet weights, cached in "
                      f"{data_dir() / 'torchvision'})")
            return model, chosen.transforms()
        except Exception as error:  # noqa: BLE001 - no network or no file: say so, go on
            reason = f"download failed: {type(error).__name__}"
    if verbose:
        print(f"[course_utils] torchvision's {arch} {chosen} weights are not available "
              f"({reason}); this chapter uses {STANDIN_NOTE} instead.")
    return None


# --------------------------------------------------------------------------------------
# The cost of a strategy
# --------------------------------------------------------------------------------------


def saved_for_backward_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training forward
    on ``x`` (counted with ``torch.autograd.graph.saved_tensors_hooks``): the activation
    memory that training costs. Frozen stages below every trainable one save nothing.
    Parameters are not counted; each distinct tensor storage is counted once."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if not isinstance(t, nn.Parameter):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        del out
    finally:
        model.train(was_training)
    return sum(seen.values())



def training_step_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one training step's arithmetic on ``x`` -- the forward pass and the backward
    pass of a cross-entropy loss, for the model's current trainable parameters -- counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products). Frozen
    stages below every trainable one cost their forward pass only. The gradients are
    cleared afterwards; the weights are not changed."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            logits = model(x)
            if logits.requires_grad:
                F.cross_entropy(logits, logits.argmax(1)).backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return counter.get_total_flops()
