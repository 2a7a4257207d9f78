"""The overfitting explorer (Chapter 2) and the dropout CNN it trains."""

import pytest
import torch
from torch import nn

from course_utils.models import dropout_cnn, get_model
from course_utils.widgets import OverfittingExplorer


def test_dropout_cnn_shapes_and_dropout_layers():
    model = get_model("dropout_cnn", in_channels=1, num_classes=10, p=0.5)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.5, 0.5]
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), model(x)), "deterministic in evaluation mode"
    with pytest.raises(ValueError, match="at least 4x4"):
        dropout_cnn(image_size=3)


def test_explorer_trains_reference_and_setting_and_caches():
    explorer = OverfittingExplorer(train_size=64, dropout=0.5, weight_decay=1e-2, epochs=2)
    fig = explorer.figure()
    assert len(explorer._runs) == 2  # the unregularized reference and the chosen setting
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any("dropout 0.5, decay 0.01" in label for label in labels)
    assert any("dropout 0.0, decay 0" in label for label in labels)
    explorer.figure()
    assert len(explorer._runs) == 2, "a second drawing reuses the cached runs"
    bundle = explorer._repr_mimebundle_()
    assert "image/png" in bundle and "Overfitting explorer" in bundle["text/plain"]
    explorer.controls["dropout"].value = 0.0
    explorer.controls["weight_decay"].value = 0.0
    assert len(explorer.figure().axes[0].get_lines()) == 2  # reference only: train + test


def test_bad_weight_decay_lists_the_valid_ones():
    with pytest.raises(ValueError, match="must be one of"):
        OverfittingExplorer(weight_decay=0.5)
