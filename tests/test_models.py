import pytest
import torch

from course_utils.models import LeNet, count_parameters, get_model


def test_lenet_shape_and_parameter_count():
    model = LeNet()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(model) == 61_706


def test_lenet_adapts_to_cifar_shape():
    model = get_model("lenet", in_channels=3, num_classes=10, image_size=32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_for_single_channel_96px():
    model = get_model("resnet18", in_channels=1, num_classes=10, image_size=96)
    assert model(torch.zeros(2, 1, 96, 96)).shape == (2, 10)
    assert count_parameters(model) == 11_175_370


def test_unknown_model_and_activation_list_valid_values():
    with pytest.raises(ValueError, match="valid models are lenet, resnet18"):
        get_model("transformer")
    with pytest.raises(ValueError, match="valid activations are relu, sigmoid"):
        LeNet(activation="swish")
