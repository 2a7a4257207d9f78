"""Tests of the model zoo: output shapes, parameter counts equal to torchvision's, errors."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from course_utils.models import (
    MODELS,
    BasicBlock,
    Bottleneck,
    DenseBlock,
    DepthwiseSeparable,
    Inception,
    LeNet,
    PreActBlock,
    count_parameters,
    densenet,
    get_model,
    vgg,
)

# Sizes each builder is tested at for the course's data (1 channel, 10 classes), small enough
# to run a real forward pass on the CPU in well under a second each.
COURSE_SIZES = {
    "lenet": 28, "lenet_bn": 28, "alexnet": 63, "zfnet": 57, "vgg11": 32, "vgg16": 32,
    "vgg19": 32, "vgg11_quarter": 32, "nin": 67, "googlenet": 32, "resnet18": 32,
    "resnet34": 32, "resnet50": 32,
    "resnet101": 32, "resnet152": 32, "preact_resnet18": 32, "wide_resnet50_2": 32,
    "resnext50_32x4d": 32, "cifar_resnet": 28, "densenet": 32, "densenet121": 32,
    "squeezenet1_0": 32, "mobilenet_v1": 32,
}

# The smallest input each network accepts (the builder's error names it).
MIN_SIZES = {"lenet_bn": 16, "alexnet": 63, "zfnet": 57, "vgg11": 32, "vgg16": 32,
             "vgg19": 32, "vgg11_quarter": 32, "nin": 67, "googlenet": 15, "densenet": 29,
             "densenet121": 29,
             "squeezenet1_0": 21}


def test_every_architecture_is_registered():
    assert set(COURSE_SIZES) <= set(MODELS)  # other chapters may add models (tested at 28)


@pytest.mark.parametrize("name", ["lenet", "lenet_bn", "cifar_resnet", "densenet",
                                  "squeezenet1_0", "googlenet", "resnet18", "mobilenet_v1"])
def test_forward_shape_on_the_cpu(name):
    size = COURSE_SIZES[name]
    model = get_model(name, in_channels=1, num_classes=10, image_size=size)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_on_meta(name):
    """Every model, at its test size and at its smallest accepted size (shapes only)."""
    test_size = COURSE_SIZES.get(name, 28)
    for size in {test_size, MIN_SIZES.get(name, test_size)}:
        with torch.device("meta"):
            model = get_model(name, in_channels=1, num_classes=10, image_size=size).eval()
            assert model(torch.empty(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MIN_SIZES))
def test_too_small_input_names_the_size_needed(name):
    minimum = MIN_SIZES[name]
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        get_model(name, image_size=minimum - 1)
    if name != "lenet_bn":  # LeNet-BN's classifier is sized from image_size itself
        with torch.device("meta"), pytest.raises(RuntimeError):
            model = MODELS[name](in_channels=1, num_classes=10).eval()
            model(torch.empty(1, 1, minimum - 1, minimum - 1))


TORCHVISION = {
    "alexnet": (tvm.alexnet, {}), "vgg11": (tvm.vgg11, {}), "vgg16": (tvm.vgg16, {}),
    "vgg19": (tvm.vgg19, {}),
    "googlenet": (tvm.googlenet, dict(aux_logits=False, init_weights=False)),
    "resnet18": (tvm.resnet18, {}), "resnet34": (tvm.resnet34, {}),
    "resnet50": (tvm.resnet50, {}), "resnet101": (tvm.resnet101, {}),
    "resnet152": (tvm.resnet152, {}), "wide_resnet50_2": (tvm.wide_resnet50_2, {}),
    "resnext50_32x4d": (tvm.resnext50_32x4d, {}), "densenet121": (tvm.densenet121, {}),
    "squeezenet1_0": (tvm.squeezenet1_0, {}),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_count_equals_torchvision(name):
    builder, kwargs = TORCHVISION[name]
    with torch.device("meta"):  # no memory, no initialization: counting is instant
        ours, theirs = MODELS[name](), builder(weights=None, **kwargs)
    assert count_parameters(ours) == count_parameters(theirs)


# Builders whose module names differ from torchvision's (the tensors line up all the same).
NAMES_DIFFER = {"densenet121", "googlenet", "squeezenet1_0"}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_state_dict_shapes_equal_torchvision_in_order(name):
    # Equal parameter counts do not prove the same structure; the same tensors in the same
    # order (weights and buffers) come close, and names too where the layouts share them.
    builder, kwargs = TORCHVISION[name]
    with torch.device("meta"):
        ours, theirs = MODELS[name]().state_dict(), builder(weights=None, **kwargs).state_dict()
    assert [tuple(t.shape) for t in ours.values()] == [tuple(t.shape) for t in theirs.values()]
    if name not in NAMES_DIFFER:
        assert list(ours) == list(theirs)


def test_published_counts_and_variants():
    with torch.device("meta"):
        assert count_parameters(MODELS["alexnet"]()) == 61_100_840
        assert count_parameters(MODELS["vgg16"]()) == 138_357_544
        assert count_parameters(MODELS["googlenet"]()) == 6_624_904
        assert count_parameters(MODELS["resnet18"]()) == 11_689_512
        assert count_parameters(MODELS["resnet152"]()) == 60_192_808
        assert count_parameters(MODELS["squeezenet1_0"]()) == 1_248_424
        # GoogLeNet with its auxiliary classifiers, as torchvision builds it for training.
        assert (count_parameters(MODELS["googlenet"](aux_logits=True))
                == count_parameters(tvm.googlenet(weights=None, aux_logits=True,
                                                  init_weights=False)))
        # The paper's AlexNet: one tower, then split over two GPUs (grouped convolutions).
        assert count_parameters(MODELS["alexnet"](variant="original")) == 62_378_344
        assert count_parameters(MODELS["alexnet"](variant="two_gpu")) == 60_965_224
        # He et al. (2016), Table 6: ResNet-20 has 0.27M parameters, ResNet-56 0.85M.
        assert round(count_parameters(MODELS["cifar_resnet"](20)) / 1e6, 2) == 0.27
        assert round(count_parameters(MODELS["cifar_resnet"](56)) / 1e6, 2) == 0.85
        # Howard et al. (2017), Table 8: 1.0 MobileNet-224 has 4.2 million parameters.
        assert round(count_parameters(MODELS["mobilenet_v1"]()) / 1e6, 1) == 4.2


def test_lenet_shape_and_parameter_count():
    model = LeNet()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(model) == 61_706


def test_lenet_adapts_to_cifar_shape():
    model = get_model("lenet", in_channels=3, num_classes=10, image_size=32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_for_single_channel_96px():
    model = get_model("ResNet-18", in_channels=1, num_classes=10, image_size=96)
    assert model(torch.zeros(2, 1, 96, 96)).shape == (2, 10)
    assert count_parameters(model) == 11_175_370


def test_vgg_width_divisor_and_seed_densenet_channels():
    with torch.device("meta"):
        narrow = get_model("vgg11", image_size=224, width_divisor=4)
        assert count_parameters(narrow) == count_parameters(get_model("vgg11_quarter", 1, 10, 224))
    convs = [m.out_channels for m in narrow.features if isinstance(m, nn.Conv2d)]
    assert convs == [16, 32, 64, 64, 128, 128, 128, 128]
    assert densenet(in_channels=1, num_classes=10, image_size=96).block_channels == [
        192, 96, 224, 112, 240, 120, 248]


def test_blocks_shapes_and_shortcuts():
    x = torch.randn(2, 64, 8, 8)
    assert BasicBlock(64, 64)(x).shape == (2, 64, 8, 8)
    down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
    assert Bottleneck(64, 64, downsample=down)(x).shape == (2, 256, 8, 8)
    assert PreActBlock(64, 64)(x).shape == (2, 64, 8, 8)
    assert Inception(64, 16, 16, 24, 4, 8, 8)(x).shape == (2, 56, 8, 8)
    assert DenseBlock(3, 64, 12)(x).shape == (2, 100, 8, 8)
    assert DepthwiseSeparable(64, 128, stride=2)(x).shape == (2, 128, 4, 4)
    plain = BasicBlock(64, 64, shortcut=False).eval()
    with torch.no_grad():
        plain.bn2.weight.zero_()
        plain.bn2.bias.zero_()
        assert plain(x).abs().max() == 0  # no shortcut: a zeroed branch outputs zeros
        residual = BasicBlock(64, 64).eval()
        residual.load_state_dict(plain.state_dict())
        assert torch.equal(residual(x), torch.relu(x))  # ... with one, the identity passes


def test_googlenet_returns_aux_logits_only_in_training():
    model = get_model("googlenet", image_size=64, aux_logits=True)
    outputs = model(torch.zeros(2, 1, 64, 64))
    assert isinstance(outputs, tuple) and [o.shape for o in outputs] == [(2, 10)] * 3
    assert model.eval()(torch.zeros(2, 1, 64, 64)).shape == (2, 10)


def test_unknown_names_list_valid_values():
    with pytest.raises(ValueError, match="valid models are lenet, lenet_bn, alexnet"):
        get_model("transformer")
    with pytest.raises(ValueError, match="valid activations are relu, sigmoid"):
        LeNet(activation="swish")
    with pytest.raises(ValueError, match="valid depths are 11, 13, 16, 19"):
        vgg(12)
    with pytest.raises(ValueError, match="valid variants are torchvision, original"):
        get_model("alexnet", image_size=224, variant="caffe")


def test_cifar_resnet_without_batch_norm():
    with_bn = get_model("cifar_resnet", 3, 10, 32, depth=20)
    without = get_model("cifar_resnet", 3, 10, 32, depth=20, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    bn_params = sum(p.numel() for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d)
                    for p in m.parameters())
    assert count_parameters(with_bn) - count_parameters(without) == bn_params
    assert without(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_residual_cnn_stochastic_depth_rule_and_whole_network_at_test():
    from torchvision.ops import StochasticDepth

    from course_utils.models import DropPathBlock, residual_cnn

    torch.manual_seed(0)
    model = residual_cnn(p_last=0.5, n_blocks=4)
    drops = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    assert drops == pytest.approx([0.125, 0.25, 0.375, 0.5])  # linear in the block index
    plain = residual_cnn(p_last=0.0, n_blocks=4)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()(x))  # test: every block
        block = next(m for m in model.modules() if isinstance(m, DropPathBlock))
        h = torch.randn(8, 16, 7, 7)
        torch.testing.assert_close(block(h), torch.relu(h + block.f(h)))
        block.train()
        block.f.eval()
        skipped = torch.stack([(block(h) == torch.relu(h)).flatten(1).all(1) for _ in range(20)])
    assert 0 < skipped.float().mean() < 1  # training: some samples skip the branch, not all
    with pytest.raises(ValueError, match="at least 4x4"):
        residual_cnn(image_size=3)
