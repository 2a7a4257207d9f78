"""Tests of the architecture explorer: figures for every model, clear messages, settings."""

from __future__ import annotations

import pytest

from course_utils.explorer import EXPLORER_MODELS, architecture_explorer, explore
from course_utils.models import MODELS


def test_explorer_models_are_registered():
    assert set(EXPLORER_MODELS) <= set(MODELS)


@pytest.mark.parametrize("name", ["vgg16", "googlenet", "resnet152", "densenet121"])
def test_explore_summarizes_on_meta(name):
    s = explore(name, 224)
    assert s.params > 1e6 and s.macs > 1e8
    assert sum(r.params for r in s.rows) == s.params  # rows cover the whole network


def test_explorer_figure_settings_and_too_small_input():
    ex = architecture_explorer("alexnet", 224)
    assert ex.settings() == {"model": "alexnet", "image_size": 224}
    fig = ex.figure()
    assert len(fig.axes) == 3 and "61.10M parameters" in fig.texts[0].get_text()
    ex.controls["image_size"].value = 40  # below AlexNet's 63
    text = ex.figure().axes[0].texts[0].get_text()
    assert "at least 63x63" in text
    bundle = ex._repr_mimebundle_()
    assert "image/png" in bundle
    with pytest.raises(ValueError, match="valid models"):
        architecture_explorer("transformer")
