"""The networks the chapters train, built from torch.nn and torchvision.models.

``get_model(name, ...)`` builds one by name; the architectures chapter writes these out
block by block -- here they are the tools other chapters train.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
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


class LeNet(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with a choice of activation and max pooling.

    Two 5x5 convolutions (6 and 16 channels, the first padded so 28x28 inputs keep their
    size), each followed by 2x2 pooling, then fully connected layers of 120, 84 and
    ``num_classes`` units.
    """

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


def resnet18(in_channels: int = 3, num_classes: int = 10, image_size: int = 224) -> nn.Module:
    """torchvision's ResNet-18 (He et al., 2016), randomly initialized, for any channel count.

    ``image_size`` is accepted for a uniform signature; the global average pool makes the
    network work for any input of at least 32x32 (Fashion-MNIST is resized to 96x96).
    """
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,
    "resnet18": resnet18,
}


def get_model(name: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
              **kwargs) -> nn.Module:
    """Build a model by name; unknown names raise an error listing the valid ones."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        raise ValueError(f"Unknown model {name!r}; valid models are {', '.join(MODELS)}.")
    return MODELS[key](in_channels=in_channels, num_classes=num_classes, image_size=image_size,
                       **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def alexnet(in_channels: int = 3, num_classes: int = 10, image_size: int = 224) -> nn.Module:
    """torchvision's AlexNet (Krizhevsky et al., 2012), randomly initialized, any channel count.

    Built for 224x224 inputs, the size tutorials resize Fashion-MNIST to for this network;
    its adaptive pooling accepts any input of at least 63x63.
    """
    from torchvision.models import alexnet as tv_alexnet

    if image_size < 63:
        raise ValueError(f"AlexNet needs images of at least 63x63 pixels, got {image_size}.")
    model = tv_alexnet(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
    return model


# Builders added after the registry was written register themselves here.
MODELS["alexnet"] = alexnet
