"""The deep plain CNN with a choice of normalization (Chapter 2), checked against torch."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.models import NORMS, get_model, norm_layer, plain_cnn


def test_norm_layers_by_name_match_torch_functional():
    x = torch.randn(3, 8, 5, 5)
    expected = {
        "none": x,
        "batch": F.batch_norm(x, None, None, training=True),
        "group": F.group_norm(x, 4),
        "layer": F.layer_norm(x, x.shape[1:]),
        "instance": F.instance_norm(x),
    }
    assert set(expected) == set(NORMS)
    for name, want in expected.items():
        torch.testing.assert_close(norm_layer(name, 8).train()(x), want, rtol=1e-4, atol=1e-4)


def test_bad_norm_names_and_groups_are_explained():
    with pytest.raises(ValueError, match="valid ones are none, batch, group"):
        norm_layer("batchnorm", 8)
    with pytest.raises(ValueError, match="divisible"):
        norm_layer("group", 6, groups=4)
    with pytest.raises(ValueError, match="depth"):
        plain_cnn(depth=0)


@pytest.mark.parametrize("norm", NORMS)
def test_plain_cnn_shapes_and_biases(norm):
    model = get_model("plain_cnn", in_channels=1, num_classes=10, depth=10, norm=norm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 10
    assert all((c.bias is None) == (norm != "none") for c in convs)  # beta replaces the bias
    assert sum(c.stride == (2, 2) for c in convs) == 3
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_batch_of_one_after_a_linear_layer_raises_torchs_error():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(4).train()(torch.randn(1, 4))
