"""Tests of course_utils.summary: per-layer shapes, parameters, multiply-adds, activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.measure import flops_per_image
from course_utils.models import LeNet, count_parameters, get_model
from course_utils.summary import summarize


def test_lenet_rows_match_hand_counts():
    s = summarize(LeNet(), (1, 28, 28))
    conv1 = s.row("features.0")
    assert conv1.output_shape == (6, 28, 28)
    assert conv1.params == 6 * 25 + 6
    assert conv1.macs == 28 * 28 * 6 * 25
    assert s.row("classifier.1").params == 400 * 120 + 120
    assert s.params == count_parameters(LeNet()) == 61_706
    assert 2 * s.macs == flops_per_image(LeNet(), (1, 28, 28))
    assert s.output_shape == (10,)


def test_in_place_and_view_layers_hold_no_new_activations():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.ReLU(),
                          nn.Flatten(), nn.Dropout(), nn.Linear(2 * 6 * 6, 3))
    s = summarize(model, (1, 8, 8))
    assert [r.activations for r in s.rows] == [72, 0, 72, 0, 0, 3]
    assert s.activations == 64 + 72 + 72 + 3
    assert s.activation_bytes == 4 * s.activations


def test_meta_device_summarizes_vgg16_without_computing():
    with torch.device("meta"):
        model = get_model("vgg16", 3, 1000, 224)
    s = summarize(model, (3, 224, 224))
    assert s.params == 138_357_544
    assert s.row("classifier.0").params == 25088 * 4096 + 4096
    assert len(s.select("Conv2d")) == 13


def test_depth_groups_rows_and_totals_add_up():
    with torch.device("meta"):
        model = get_model("resnet18", 3, 1000, 224)
    s = summarize(model, (3, 224, 224), depth=1)
    assert [r.name for r in s.rows][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    assert s.row("layer4").output_shape == (512, 7, 7)
    assert sum(r.params for r in s.rows) == s.params
    assert sum(r.macs for r in s.rows) == s.macs
    text = s.table(max_rows=6)
    assert "total" in text and "11,689,512" in text and "..." in text


def test_model_mode_is_restored_and_bad_shape_rejected():
    model = LeNet().train()
    summarize(model, (1, 28, 28))
    assert model.training
    with pytest.raises(ValueError, match="channels, height, width"):
        summarize(model, (28, 28))
    with pytest.raises(KeyError, match="layers are"):
        summarize(model, (1, 28, 28)).row("nope")
