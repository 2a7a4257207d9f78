"""The course's model zoo: one plain builder per architecture, from LeNet to DenseNet.

Each architecture is a readable ``nn.Module`` plus builder functions, in the style of
torchvision's model files. Every builder takes ``in_channels``, ``num_classes`` and
``image_size`` and, called with no arguments, builds the network as published (3x224x224
ImageNet inputs, 1000 classes); the tests check that the parameter counts then equal
torchvision's wherever torchvision has the model. ``get_model(name, ...)`` builds one by name
for the course's data (by default 1x28x28, 10 classes): unknown names list the valid ones and
an input too small for a network says the smallest size it accepts.

The architectures chapter writes the key blocks (a residual block, an Inception module, a
dense block) out in its notebooks and checks them against the versions here.

Contents, in the order of the chapter: LeNet, LeNet-BN, AlexNet (torchvision's and the
paper's), ZFNet, VGG, NiN, GoogLeNet, ResNet (basic and bottleneck blocks, pre-activation,
Wide ResNet, ResNeXt, the paper's CIFAR networks and their plain twins), DenseNet,
SqueezeNet, MobileNet v1 (depthwise-separable convolutions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; valid activations are {', '.join(ACTIVATIONS)}."
        ) from None


def check_image_size(model_name: str, image_size: int, minimum: int) -> None:
    """Raise a clear error when ``image_size`` is below what ``model_name`` accepts."""
    if image_size < minimum:
        raise ValueError(f"{model_name} needs images of at least {minimum}x{minimum} pixels, "
                         f"got {image_size}x{image_size}; resize the data (e.g. "
                         f"load_data(..., resize={minimum})).")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------
# LeNet (LeCun et al., 1998)
# --------------------------------------------------------------------------------------

class LeNet(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with a choice of activation and max pooling.

    Two 5x5 convolutions (6 and 16 channels, the first padded so 28x28 inputs keep their
    size), each followed by 2x2 pooling, then fully connected layers of 120, 84 and
    ``num_classes`` units.
    """

    min_size = 12

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 activation: str = "relu") -> None:
        super().__init__()
        side = ((image_size // 2) - 4) // 2  # after conv(pad 2), pool, conv(5x5), pool
        if side < 1:
            raise ValueError(f"LeNet needs images of at least 12x12 pixels, got {image_size}.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), _activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), _activation(activation),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), _activation(activation),
            nn.Linear(120, 84), _activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNetBN(nn.Module):
    """LeNet with batch normalization after every convolution and hidden linear layer.

    The variant of the seed post: unpadded 5x5 convolutions, sigmoid activations and 2x2
    average pooling as in the original, made trainable at a large learning rate (1.0) by
    batch normalization (Ioffe & Szegedy, 2015). On 28x28 inputs: 28 -> 24 -> 12 -> 8 -> 4.
    """

    min_size = 16

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 activation: str = "sigmoid") -> None:
        super().__init__()
        check_image_size("LeNet-BN", image_size, self.min_size)
        side = ((image_size - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5), nn.BatchNorm2d(6), _activation(activation),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), _activation(activation),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), nn.BatchNorm1d(120), _activation(activation),
            nn.Linear(120, 84), nn.BatchNorm1d(84), _activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
          activation: str = "relu") -> LeNet:
    """The course's LeNet-5 (ReLU, max pooling): 61,706 parameters on 1x28x28, 10 classes."""
    return LeNet(in_channels, num_classes, image_size, activation)


def lenet_bn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
             activation: str = "sigmoid") -> LeNetBN:
    """LeNet with batch normalization (see :class:`LeNetBN`)."""
    return LeNetBN(in_channels, num_classes, image_size, activation)


# --------------------------------------------------------------------------------------
# AlexNet (Krizhevsky et al., 2012) and ZFNet (Zeiler & Fergus, 2014)
# --------------------------------------------------------------------------------------

class AlexNet(nn.Module):
    """Five convolutions (three followed by 3x3/2 max pooling) and three fully connected layers.

    The defaults are torchvision's single-tower AlexNet (64-192-384-256-256 channels).
    ``widths``, the first convolution's ``conv1`` = (kernel, stride, padding), ``conv2_stride``,
    ``lrn`` (local response normalization after conv1 and conv2, as in the paper) and
    ``groups`` (the paper's two-GPU split: conv2, conv4 and conv5 only see the channels on
    their own GPU) give the paper's network and ZFNet. An adaptive average pool to 6x6 lets
    the classifier accept any input size that survives the convolutions.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1000,
                 widths: Sequence[int] = (64, 192, 384, 256, 256),
                 conv1: tuple[int, int, int] = (11, 4, 2), conv2_stride: int = 1,
                 lrn: bool = False, groups: int = 1, hidden: int = 4096,
                 dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        k, s, p = conv1

        def norm() -> list[nn.Module]:
            # torch divides alpha by the window size n=5: 5e-4 / 5 is the paper's 1e-4
            return [nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)] if lrn else []

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=k, stride=s, padding=p),
            nn.ReLU(inplace=True), *norm(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, kernel_size=5, stride=conv2_stride, padding=2, groups=groups),
            nn.ReLU(inplace=True), *norm(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(c5 * 6 * 6, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
            variant: str = "torchvision") -> AlexNet:
    """AlexNet (Krizhevsky et al., 2012), randomly initialized, for any channel count.

    ``variant="torchvision"`` (64-192-384-256-256 channels, 61,100,840 parameters as
    published) is the network tutorials resize Fashion-MNIST to 224x224 for;
    ``"original"`` is the paper's 96-256-384-384-256 network with LRN on 227x227 inputs, as
    one tower; ``"two_gpu"`` adds the paper's split into two groups.
    """
    variants = {
        "torchvision": dict(),
        "original": dict(widths=(96, 256, 384, 384, 256), conv1=(11, 4, 0), lrn=True),
        "two_gpu": dict(widths=(96, 256, 384, 384, 256), conv1=(11, 4, 0), lrn=True, groups=2),
    }
    if variant not in variants:
        raise ValueError(f"Unknown AlexNet variant {variant!r}; valid variants are "
                         f"{', '.join(variants)}.")
    check_image_size("AlexNet", image_size, 63 if variant == "torchvision" else 67)
    return AlexNet(in_channels, num_classes, **variants[variant])


def zfnet(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> AlexNet:
    """ZFNet (Zeiler & Fergus, 2014): AlexNet with a 7x7 stride-2 first convolution, a
    stride-2 second one, and 512-1024-512 channels in conv3-5 (their larger variant)."""
    check_image_size("ZFNet", image_size, 57)
    return AlexNet(in_channels, num_classes, widths=(96, 256, 512, 1024, 512),
                   conv1=(7, 2, 1), conv2_stride=2)


# --------------------------------------------------------------------------------------
# VGG (Simonyan & Zisserman, 2015)
# --------------------------------------------------------------------------------------

# Output channels of the 3x3 convolutions; "M" is a 2x2 max pool.
VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def vgg_block(in_channels: int, out_channels: int, num_convs: int,
              batch_norm: bool = False) -> nn.Sequential:
    """``num_convs`` 3x3 convolutions (padding 1, so H and W are kept), then 2x2 max pool."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Blocks of 3x3 convolutions with 2x2 max pooling, then three fully connected layers.

    Laid out like torchvision's VGG (one flat ``features`` Sequential, adaptive 7x7 average
    pool, 4096-4096-classes classifier with dropout), so the parameter counts match.
    ``width_divisor`` divides every convolution's channels (the seed's VGG-11 on
    Fashion-MNIST uses 4); ``hidden`` is the width of the two hidden linear layers.
    """

    min_size = 32

    def __init__(self, config: Sequence[int | str], in_channels: int = 3,
                 num_classes: int = 1000, batch_norm: bool = False, width_divisor: int = 1,
                 hidden: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out = int(item) // width_divisor
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg(depth: int = 16, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
        batch_norm: bool = False, width_divisor: int = 1, hidden: int = 4096) -> VGG:
    """VGG-11/13/16/19 by ``depth`` (the number of weight layers)."""
    if depth not in VGG_CONFIGS:
        raise ValueError(f"Unknown VGG depth {depth}; valid depths are "
                         f"{', '.join(map(str, VGG_CONFIGS))}.")
    check_image_size(f"VGG-{depth}", image_size, VGG.min_size)
    return VGG(VGG_CONFIGS[depth], in_channels, num_classes, batch_norm, width_divisor, hidden)


def vgg11(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
          **kwargs) -> VGG:
    """VGG-11 (configuration A): 8 convolutions + 3 linear layers."""
    return vgg(11, in_channels, num_classes, image_size, **kwargs)


def vgg16(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
          **kwargs) -> VGG:
    """VGG-16 (configuration D): 13 convolutions + 3 linear layers."""
    return vgg(16, in_channels, num_classes, image_size, **kwargs)


def vgg19(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
          **kwargs) -> VGG:
    """VGG-19 (configuration E): 16 convolutions + 3 linear layers."""
    return vgg(19, in_channels, num_classes, image_size, **kwargs)


def vgg11_quarter(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> VGG:
    """The seed tutorial's VGG-11 with a quarter of the channels (4096-wide linear layers)."""
    return vgg(11, in_channels, num_classes, image_size, width_divisor=4)


# --------------------------------------------------------------------------------------
# Network in Network (Lin et al., 2014)
# --------------------------------------------------------------------------------------

def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int,
              padding: int) -> nn.Sequential:
    """A convolution followed by two 1x1 convolutions: a small MLP applied at every pixel."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(inplace=True),
    )


class NiN(nn.Module):
    """Network in Network with AlexNet's layout: four NiN blocks, the last one producing one
    channel per class, averaged over the image (global average pooling, no linear layers).

    This is the compact version of Dive into Deep Learning (Zhang et al.), not the paper's
    ImageNet network (which has a 1024-channel block); its accuracy is not compared with
    AlexNet's anywhere in the course except on Fashion-MNIST (Chapter 3, page 8)."""

    min_size = 67

    def __init__(self, in_channels: int = 3, num_classes: int = 1000,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nin_block(in_channels, 96, kernel_size=11, stride=4, padding=0), nn.MaxPool2d(3, 2),
            nin_block(96, 256, kernel_size=5, stride=1, padding=2), nn.MaxPool2d(3, 2),
            nin_block(256, 384, kernel_size=3, stride=1, padding=1), nn.MaxPool2d(3, 2),
            nn.Dropout(dropout),
            nin_block(384, num_classes, kernel_size=3, stride=1, padding=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def nin(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> NiN:
    """Network in Network, Dive into Deep Learning's compact version (see :class:`NiN`)."""
    check_image_size("NiN", image_size, NiN.min_size)
    return NiN(in_channels, num_classes)


# --------------------------------------------------------------------------------------
# GoogLeNet / Inception v1 (Szegedy et al., 2015)
# --------------------------------------------------------------------------------------

class ConvBN(nn.Sequential):
    """Convolution (no bias) -> batch norm -> ReLU, torchvision's ``BasicConv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_channels, eps=0.001),
            nn.ReLU(inplace=True),
        )


class Inception(nn.Module):
    """Four parallel branches concatenated along the channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5;
    3x3 max pool -> 1x1. The 1x1 convolutions before the 3x3 and 5x5 ones are bottlenecks:
    they shrink the channels the expensive convolutions see.

    ``large_kernel=3`` reproduces torchvision's GoogLeNet, whose "5x5" branch uses a 3x3
    convolution (a known deviation kept for its pretrained weights); 5 is the paper's.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, large_kernel: int = 3) -> None:
        super().__init__()
        self.branch1 = ConvBN(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(ConvBN(in_channels, ch3x3red, kernel_size=1),
                                     ConvBN(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(ConvBN(in_channels, ch5x5red, kernel_size=1),
                                     ConvBN(ch5x5red, ch5x5, kernel_size=large_kernel,
                                            padding=large_kernel // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     ConvBN(in_channels, pool_proj, kernel_size=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


class InceptionAux(nn.Module):
    """An auxiliary classifier on an intermediate feature map (used only in training)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = ConvBN(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(nn.Module):
    """GoogLeNet: a stem of plain convolutions, nine Inception modules, global average pooling
    and one linear layer, laid out like torchvision's (with batch normalization).

    With ``aux_logits=True`` the two auxiliary classifiers exist and, in training mode, the
    forward pass returns ``(logits, aux2, aux1)``; in eval mode it always returns the logits.
    """

    min_size = 15

    # (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of each module
    CONFIG: dict[str, tuple[int, ...]] = {
        "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
        "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
        "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
        "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
        "5b": (832, 384, 192, 384, 48, 128, 128),
    }

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, aux_logits: bool = False,
                 large_kernel: int = 3, dropout: float = 0.2) -> None:
        super().__init__()

        def block(name: str) -> Inception:
            return Inception(*self.CONFIG[name], large_kernel=large_kernel)

        self.stem = nn.Sequential(
            ConvBN(in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            ConvBN(64, 64, kernel_size=1),
            ConvBN(64, 192, kernel_size=3, padding=1),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        self.inception3a, self.inception3b = block("3a"), block("3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a, self.inception4b = block("4a"), block("4b")
        self.inception4c, self.inception4d = block("4c"), block("4d")
        self.inception4e = block("4e")
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a, self.inception5b = block("5a"), block("5b")
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.maxpool3(self.inception3b(self.inception3a(self.stem(x))))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None and aux2 is not None:
            return logits, aux2, aux1
        return logits


def googlenet(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
              aux_logits: bool = False, large_kernel: int = 3) -> GoogLeNet:
    """GoogLeNet (see :class:`GoogLeNet`); ``large_kernel=5`` gives the paper's 5x5 branch."""
    check_image_size("GoogLeNet", image_size, GoogLeNet.min_size)
    return GoogLeNet(in_channels, num_classes, aux_logits, large_kernel)


# --------------------------------------------------------------------------------------
# ResNet (He et al., 2016) and its descendants
# --------------------------------------------------------------------------------------

def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                     groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias: a projection shortcut or a bottleneck."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; the input is added before the last ReLU.

    ``downsample`` is the projection shortcut (1x1 conv + BN) used where the shape changes;
    ``shortcut=False`` drops the addition altogether (the "plain" network of the paper).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 shortcut: bool = True,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64.")
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = norm_layer(channels)
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 -> 1x1 (expand by 4), each with BN; the input is added before the
    last ReLU. The stride sits on the 3x3 convolution (torchvision's "ResNet v1.5").

    ``groups`` and ``base_width`` give ResNeXt (grouped 3x3) and Wide ResNet (wider 3x3):
    the inner width is ``channels * base_width / 64 * groups``.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 shortcut: bool = True) -> None:
        super().__init__()
        width = int(channels * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016, "Identity mappings"): BN -> ReLU -> conv,
    twice, and the shortcut is a clean identity (nothing after the addition)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 shortcut: bool = True) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection (if any) sees the normalized input, like the residual branch.
        skip = x if self.downsample is None else self.downsample(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + skip if self.shortcut else out


Block = type[BasicBlock] | type[Bottleneck] | type[PreActBlock]


class ResNet(nn.Module):
    """A 7x7/2 stem and max pool, four stages of residual blocks (64, 128, 256, 512 channels
    times the block's expansion; the first block of stages 2-4 halves H and W), global
    average pooling and one linear layer -- torchvision's layout, so the counts match.

    ``groups``/``width_per_group`` make ResNeXt and Wide ResNet; ``shortcut=False`` makes the
    plain twin of the same depth; pre-activation blocks get a final BN + ReLU.
    """

    min_size = 1

    def __init__(self, block: Block, layers: Sequence[int], in_channels: int = 3,
                 num_classes: int = 1000, groups: int = 1, width_per_group: int = 64,
                 shortcut: bool = True) -> None:
        super().__init__()
        self.block, self.groups, self.base_width, self.shortcut = (block, groups,
                                                                   width_per_group, shortcut)
        self.in_channels = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        preact = block is PreActBlock
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.final = (nn.Sequential(nn.BatchNorm2d(self.in_channels), nn.ReLU(inplace=True))
                      if preact else nn.Identity())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():  # He initialization, as in the paper
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
        out_channels = channels * self.block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = (conv1x1(self.in_channels, out_channels, stride)
                          if self.block is PreActBlock else
                          nn.Sequential(conv1x1(self.in_channels, out_channels, stride),
                                        nn.BatchNorm2d(out_channels)))
        layers = [self.block(self.in_channels, channels, stride, downsample, self.groups,
                             self.base_width, self.shortcut)]
        self.in_channels = out_channels
        layers += [self.block(out_channels, channels, groups=self.groups,
                              base_width=self.base_width, shortcut=self.shortcut)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(self.final(x)), 1))


RESNET_LAYERS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def resnet(depth: int = 18, in_channels: int = 3, num_classes: int = 1000,
           image_size: int = 224, shortcut: bool = True, preact: bool = False,
           groups: int = 1, width_per_group: int = 64) -> ResNet:
    """ResNet-18/34/50/101/152 by ``depth``; ``shortcut=False`` gives the plain network,
    ``preact=True`` (18 and 34 only) the pre-activation version."""
    if depth not in RESNET_LAYERS:
        raise ValueError(f"Unknown ResNet depth {depth}; valid depths are "
                         f"{', '.join(map(str, RESNET_LAYERS))}.")
    check_image_size(f"ResNet-{depth}", image_size, ResNet.min_size)
    block, layers = RESNET_LAYERS[depth]
    if preact:
        if block is not BasicBlock:
            raise ValueError("preact=True is available for ResNet-18 and ResNet-34 only.")
        block = PreActBlock
    return ResNet(block, layers, in_channels, num_classes, groups, width_per_group, shortcut)


def resnet18(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
             **kwargs) -> ResNet:
    """ResNet-18 (11,689,512 parameters as published). Any input size works: the global
    average pool adapts (Fashion-MNIST is usually resized to 96x96 for it)."""
    return resnet(18, in_channels, num_classes, image_size, **kwargs)


def resnet34(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
             **kwargs) -> ResNet:
    """ResNet-34: basic blocks, (3, 4, 6, 3) per stage."""
    return resnet(34, in_channels, num_classes, image_size, **kwargs)


def resnet50(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
             **kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks, (3, 4, 6, 3) per stage."""
    return resnet(50, in_channels, num_classes, image_size, **kwargs)


def resnet101(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
              **kwargs) -> ResNet:
    """ResNet-101: bottleneck blocks, (3, 4, 23, 3) per stage."""
    return resnet(101, in_channels, num_classes, image_size, **kwargs)


def resnet152(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
              **kwargs) -> ResNet:
    """ResNet-152: bottleneck blocks, (3, 8, 36, 3) per stage."""
    return resnet(152, in_channels, num_classes, image_size, **kwargs)


def preact_resnet18(in_channels: int = 3, num_classes: int = 1000,
                    image_size: int = 224) -> ResNet:
    """ResNet-18 built from pre-activation blocks (He et al., 2016, "Identity mappings")."""
    return resnet(18, in_channels, num_classes, image_size, preact=True)


def wide_resnet50_2(in_channels: int = 3, num_classes: int = 1000,
                    image_size: int = 224) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis, 2016, as in torchvision): ResNet-50 with the
    bottlenecks' 3x3 convolutions twice as wide."""
    return resnet(50, in_channels, num_classes, image_size, width_per_group=128)


def resnext50_32x4d(in_channels: int = 3, num_classes: int = 1000,
                    image_size: int = 224) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al., 2017): 32 groups of width 4 in the first stage's 3x3
    convolution -- ``groups=32`` is the number of groups, not their width."""
    return resnet(50, in_channels, num_classes, image_size, groups=32, width_per_group=4)


class ShortcutA(nn.Module):
    """The paper's option-A shortcut for CIFAR: subsample by 2 and pad the new channels with
    zeros, so the shortcut has no parameters."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))


class CifarResNet(nn.Module):
    """The paper's CIFAR-10 networks (He et al., 2016, section 4.2): a 3x3 convolution, three
    stages of ``n`` basic blocks with ``width``, 2x``width`` and 4x``width`` channels
    (16-32-64 in the paper), global average pooling and a linear layer: ``6n + 2`` weight
    layers. Option-A (parameter-free) shortcuts; ``shortcut=False`` is the plain twin;
    ``batch_norm=False`` removes every batch norm (the convolutions stay bias-free)."""

    min_size = 1

    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10,
                 width: int = 16, shortcut: bool = True, batch_norm: bool = True) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNets have 6n + 2 layers (20, 32, 44, 56, 110, ...), "
                             f"got {depth}.")
        n = (depth - 2) // 6

        def norm(channels: int) -> nn.Module:
            return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

        self.conv1 = conv3x3(in_channels, width)
        self.bn1 = norm(width)
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(3):
            out = width * 2**stage
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                down = ShortcutA(out - channels) if stride == 2 else None
                blocks.append(BasicBlock(channels, out, stride, down, shortcut=shortcut,
                                         norm_layer=norm))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(depth: int = 20, in_channels: int = 3, num_classes: int = 10,
                 image_size: int = 32, width: int = 16, shortcut: bool = True,
                 batch_norm: bool = True) -> CifarResNet:
    """The paper's CIFAR ResNet-``depth`` (or, with ``shortcut=False``, its plain twin)."""
    check_image_size(f"CIFAR ResNet-{depth}", image_size, CifarResNet.min_size)
    return CifarResNet(depth, in_channels, num_classes, width, shortcut, batch_norm)


# --------------------------------------------------------------------------------------
# DenseNet (Huang et al., 2017)
# --------------------------------------------------------------------------------------

class DenseLayer(nn.Module):
    """BN -> ReLU -> 3x3 conv producing ``growth_rate`` channels, concatenated to its input.

    With ``bn_size`` (DenseNet-B, torchvision's), a BN -> ReLU -> 1x1 conv to
    ``bn_size * growth_rate`` channels comes first.
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int | None = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        if bn_size:
            layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                       nn.Conv2d(channels, bn_size * growth_rate, kernel_size=1, bias=False)]
            channels = bn_size * growth_rate
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                   nn.Conv2d(channels, growth_rate, kernel_size=3, padding=1, bias=False)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


class DenseBlock(nn.Sequential):
    """``num_layers`` dense layers: the output has ``in_channels + num_layers * growth_rate``
    channels, every layer seeing the feature maps of all the layers before it."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int,
                 bn_size: int | None = 4) -> None:
        super().__init__(*(DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
                           for i in range(num_layers)))
        self.out_channels = in_channels + num_layers * growth_rate


def transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN -> ReLU -> 1x1 conv (fewer channels) -> 2x2 average pool (half H and W)."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                         nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """A 7x7/2 stem and max pool, dense blocks separated by transitions that halve the
    channels (``compression``) and the resolution, a final BN + ReLU, global average pooling
    and one linear layer. The defaults are torchvision's DenseNet-121."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, growth_rate: int = 32,
                 block_config: Sequence[int] = (6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int | None = 4, compression: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3,
                      bias=False),
            nn.BatchNorm2d(num_init_features), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]
        channels = num_init_features
        self.block_channels: list[int] = []  # channels after each block (and transition)
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size)
            layers.append(block)
            channels = block.out_channels
            self.block_channels.append(channels)
            if i != len(block_config) - 1:
                out = int(channels * compression)
                layers.append(transition(channels, out))
                channels = out
                self.block_channels.append(channels)
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def densenet_min_size(num_blocks: int) -> int:
    """Smallest input a DenseNet with ``num_blocks`` blocks accepts: the stem divides the
    size by 4 and each of the ``num_blocks - 1`` transitions by 2 (rounding down)."""
    return 2 ** (num_blocks + 1) - 3


def densenet121(in_channels: int = 3, num_classes: int = 1000,
                image_size: int = 224) -> DenseNet:
    """DenseNet-121 (growth rate 32, blocks of 6-12-24-16 bottleneck layers)."""
    check_image_size("DenseNet-121", image_size, densenet_min_size(4))
    return DenseNet(in_channels, num_classes)


def densenet(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
             growth_rate: int = 32, block_config: Sequence[int] = (4, 4, 4, 4)) -> DenseNet:
    """The seed's small DenseNet: four blocks of four plain (no 1x1 bottleneck) layers,
    growth rate 32, transitions halving the channels: 64 + 4x32 = 192 -> 96 -> ..."""
    check_image_size("DenseNet", image_size, densenet_min_size(len(block_config)))
    return DenseNet(in_channels, num_classes, growth_rate, block_config, bn_size=None)


# --------------------------------------------------------------------------------------
# SqueezeNet (Iandola et al., 2016) and depthwise-separable convolutions (Howard et al., 2017)
# --------------------------------------------------------------------------------------

class Fire(nn.Module):
    """Squeeze (1x1 to few channels) then expand (1x1 and 3x3 in parallel, concatenated)."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_channels, squeeze, kernel_size=1),
                                     nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand1x1, kernel_size=1),
                                       nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1),
                                       nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.0: a 7x7/2 convolution, eight fire modules with three max pools, and a
    1x1 convolution to one channel per class, averaged over the image (no linear layers)."""

    min_size = 21

    def __init__(self, in_channels: int = 3, num_classes: int = 1000,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=7, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Conv2d(512, num_classes, kernel_size=1),
            nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_0(in_channels: int = 3, num_classes: int = 1000,
                  image_size: int = 224) -> SqueezeNet:
    """SqueezeNet 1.0 (1,248,424 parameters as published)."""
    check_image_size("SqueezeNet", image_size, SqueezeNet.min_size)
    return SqueezeNet(in_channels, num_classes)


class DepthwiseSeparable(nn.Sequential):
    """A 3x3 depthwise convolution (``groups = in_channels``: one filter per channel), then a
    1x1 pointwise convolution mixing the channels, each followed by BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride, padding=1,
                      groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )


class MobileNetV1(nn.Module):
    """MobileNet v1: a 3x3/2 convolution and 13 depthwise-separable blocks, global average
    pooling and one linear layer; ``width_mult`` scales every channel count."""

    min_size = 1
    # (output channels, stride) of the depthwise-separable blocks
    CONFIG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, in_channels: int = 3, num_classes: int = 1000,
                 width_mult: float = 1.0) -> None:
        super().__init__()
        channels = int(32 * width_mult)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        for out, stride in self.CONFIG:
            layers.append(DepthwiseSeparable(channels, int(out * width_mult), stride))
            channels = int(out * width_mult)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v1(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
                 width_mult: float = 1.0) -> MobileNetV1:
    """MobileNet v1 (see :class:`MobileNetV1`)."""
    check_image_size("MobileNet v1", image_size, MobileNetV1.min_size)
    return MobileNetV1(in_channels, num_classes, width_mult)


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": lenet,
    "lenet_bn": lenet_bn,
    "alexnet": alexnet,
    "zfnet": zfnet,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "vgg11_quarter": vgg11_quarter,
    "nin": nin,
    "googlenet": googlenet,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "preact_resnet18": preact_resnet18,
    "wide_resnet50_2": wide_resnet50_2,
    "resnext50_32x4d": resnext50_32x4d,
    "cifar_resnet": cifar_resnet,
    "densenet": densenet,
    "densenet121": densenet121,
    "squeezenet1_0": squeezenet1_0,
    "mobilenet_v1": mobilenet_v1,
}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(".", "")


def get_model(name: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
              **kwargs) -> nn.Module:
    """Build a model by name for the course's data (by default 1x28x28, 10 classes).

    Names ignore case, '-', '_' and '.' ("ResNet-18", "squeezenet1.0"). Unknown names raise
    an error listing the valid ones; an ``image_size`` too small for the network raises one
    that names the smallest size it accepts. Extra keyword arguments go to the builder.
    """
    builders = {_key(k): v for k, v in MODELS.items()}
    if _key(name) not in builders:
        raise ValueError(f"Unknown model {name!r}; valid models are {', '.join(MODELS)}.")
    return builders[_key(name)](in_channels=in_channels, num_classes=num_classes,
                                image_size=image_size, **kwargs)


# Builders added after the registry was written register themselves here.


# --------------------------------------------------------------------------------------
# A deep plain CNN with a choice of normalization (Chapter 2)
# --------------------------------------------------------------------------------------

NORMS: tuple[str, ...] = ("none", "batch", "group", "layer", "instance")


def norm_layer(name: str, channels: int, groups: int = 4) -> nn.Module:
    """A normalization layer for (B, C, H, W) activations, by name.

    ``"batch"`` is ``nn.BatchNorm2d``; ``"group"`` is ``nn.GroupNorm`` with ``groups`` groups;
    ``"layer"`` and ``"instance"`` are the two ends of group norm (one group: statistics over
    C, H, W; ``channels`` groups: over H, W), each with a learnable per-channel scale and
    shift; ``"none"`` is the identity. Unknown names list the valid ones.
    """
    if name == "none":
        return nn.Identity()
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        if channels % groups:
            raise ValueError(f"group norm needs channels ({channels}) divisible by groups "
                             f"({groups}).")
        return nn.GroupNorm(groups, channels)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    if name == "instance":
        return nn.GroupNorm(channels, channels)
    raise ValueError(f"Unknown normalization {name!r}; valid ones are {', '.join(NORMS)}.")


def plain_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
              depth: int = 10, width: int = 16, norm: str = "none",
              groups: int = 4) -> nn.Sequential:
    """``depth`` 3x3 convolutions of ``width`` channels, each conv -> norm -> ReLU, no shortcuts.

    The first convolution and those at one and two thirds of the depth have stride 2 (28x28
    inputs are processed at 14x14, 7x7 and 4x4), then global average pooling and one linear
    classifier. With a normalization layer the convolutions have no bias: the normalization's
    shift ``beta`` takes its place. Chapter 2 trains it with and without batch normalization;
    ``image_size`` is accepted for a uniform signature.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}.")
    layers: list[nn.Module] = []
    strided = {0, depth // 3, 2 * depth // 3}
    for i in range(depth):
        layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3,
                             stride=2 if i in strided else 1, padding=1, bias=norm == "none"),
                   norm_layer(norm, width, groups), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


MODELS["plain_cnn"] = plain_cnn


def dropout_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                p: float = 0.0, width: int = 8, hidden: int = 256) -> nn.Sequential:
    """A small CNN with dropout ``p`` before both fully connected layers (Chapter 2).

    Two 5x5 convolutions (``width`` and ``2 * width`` channels, each followed by ReLU and 2x2
    max pooling), then dropout -> linear (``hidden`` units) -> ReLU -> dropout -> linear:
    dropout where most of the parameters are, as in AlexNet and VGG.
    """
    side = image_size // 4
    if side < 1:
        raise ValueError(f"dropout_cnn needs images of at least 4x4 pixels, got {image_size}.")
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Dropout(p), nn.Linear(2 * width * side * side, hidden), nn.ReLU(),
        nn.Dropout(p), nn.Linear(hidden, num_classes))


MODELS["dropout_cnn"] = dropout_cnn


class DropPathBlock(nn.Module):
    """A residual block ``relu(x + drop(f(x)))`` with ``f`` = conv-BN-ReLU-conv-BN (3x3, same
    channels) and ``drop`` torchvision's ``StochasticDepth(p, mode="row")``: in training each
    sample's branch is zeroed with probability ``p`` and kept ones scaled by ``1/(1-p)``; in
    evaluation the whole block runs (Chapter 2, stochastic depth)."""

    def __init__(self, channels: int, p: float = 0.0) -> None:
        super().__init__()
        from torchvision.ops import StochasticDepth

        self.f = nn.Sequential(conv3x3(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(),
                               conv3x3(channels, channels), nn.BatchNorm2d(channels))
        self.drop = StochasticDepth(p, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.drop(self.f(x)))


def residual_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 n_blocks: int = 6, width: int = 16, p_last: float = 0.0) -> nn.Sequential:
    """Chapter 2's small residual network, with stochastic depth when ``p_last > 0``.

    A stem (3x3 conv, batch norm, ReLU, 4x4 max pooling), ``n_blocks`` :class:`DropPathBlock`
    of ``width`` channels whose drop probability rises linearly, ``p_last * l / n_blocks`` for
    block ``l = 1..n_blocks`` (Huang et al.'s rule), global average pooling and a linear layer.
    """
    check_image_size("residual_cnn", image_size, 4)
    return nn.Sequential(
        conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(4),
        *(DropPathBlock(width, p_last * (i + 1) / n_blocks) for i in range(n_blocks)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


MODELS["residual_cnn"] = residual_cnn
