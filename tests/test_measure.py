"""Tests of course_utils.measure: FLOP counts against hand counts, MFU arithmetic, meters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_utils.measure import (
    PEAK_TFLOPS,
    PeakMemory,
    Stopwatch,
    flops_per_image,
    lookup_peak,
    mfu,
    peak_flops,
    throughput,
    timing_check,
)
from course_utils.models import LeNet


def test_linear_flops_forward_and_training():
    # Forward: 2 FLOPs per multiply-add. Training adds, per layer, the weight gradient and,
    # except for the first layer (its input needs no gradient), the input gradient.
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 5, bias=False), nn.ReLU(),
                          nn.Linear(5, 3, bias=False))
    assert flops_per_image(model, (1, 1, 10)) == 2 * (10 * 5 + 5 * 3)
    assert flops_per_image(model, (1, 1, 10), training=True) == 2 * (
        (10 * 5 + 5 * 3) + (10 * 5) + 2 * (5 * 3))


def test_conv_flops_match_hand_count():
    conv = nn.Conv2d(1, 4, kernel_size=3, padding=1, bias=False)
    assert flops_per_image(conv, (1, 8, 8)) == 2 * 8 * 8 * 4 * 3 * 3


def test_lenet_flops_match_hand_count():
    macs = (28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10)
    assert flops_per_image(LeNet(), (1, 28, 28)) == 2 * macs


def test_flops_per_image_leaves_model_as_it_was():
    model = LeNet()
    model.eval()
    flops_per_image(model, (1, 28, 28), training=True)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_flops_per_image_rejects_bad_shape():
    with pytest.raises(ValueError, match="channels, height, width"):
        flops_per_image(LeNet(), (28, 28))


def test_peak_table_lookup_and_precisions(monkeypatch):
    assert peak_flops(device_name="NVIDIA H100 80GB HBM3", precision="bf16") == 989.4e12
    assert peak_flops(device_name="NVIDIA H100 PCIe", precision=torch.bfloat16) == 756e12
    assert peak_flops(device_name="NVIDIA H200", precision="fp16") == 989.4e12
    assert peak_flops(device_name="Tesla T4", precision="bf16") is None  # no bf16 on Turing
    assert peak_flops(device_name="Some Future GPU", precision="bf16") is None
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert peak_flops(device_name="NVIDIA A100-SXM4-40GB", precision="fp32") == 156e12
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert peak_flops(device_name="NVIDIA A100-SXM4-40GB", precision="fp32") == 19.5e12
    assert peak_flops(device_name="Tesla V100-SXM2-16GB", precision="fp32") == 15.7e12
    with pytest.raises(ValueError, match="valid values"):
        peak_flops(device_name="NVIDIA A100", precision="int8")


def test_peak_table_more_specific_keys_first():
    keys = list(PEAK_TFLOPS)
    assert keys.index("H100 PCIe") < keys.index("H100")
    assert lookup_peak("NVIDIA L40S") is PEAK_TFLOPS["L40S"]
    assert lookup_peak("NVIDIA L4") is PEAK_TFLOPS["L4"]


def test_no_peak_on_cpu():
    assert peak_flops(torch.device("cpu"), "fp32") is None


def test_mfu_and_throughput_arithmetic():
    assert mfu(1e9, 1000.0, 1e13) == pytest.approx(0.1)
    assert mfu(1e9, 1000.0, None) is None
    assert throughput(500, 2.0) == 250.0
    assert math.isnan(throughput(500, 0.0))


def test_timing_check_reports_both_outcomes_and_never_raises(capsys):
    timing_check(True, "a is faster than b")
    timing_check(False, "a is faster than b")  # reported, not raised
    held, failed = capsys.readouterr().out.strip().splitlines()
    assert held == "timing check -- held in this run: a is faster than b"
    assert failed.startswith("timing check -- did NOT hold in this run: a is faster than b.")


def test_stopwatch_on_cpu():
    with Stopwatch(torch.device("cpu")) as sw:
        torch.ones(100).sum()
    assert sw.seconds > 0 and math.isfinite(sw.seconds)


def test_peak_memory_on_cpu_sees_a_transient_allocation():
    with PeakMemory(torch.device("cpu")) as quiet:
        pass
    if quiet.bytes is None:
        pytest.skip(f"peak RSS not measurable here ({quiet.kind})")
    with PeakMemory(torch.device("cpu")) as busy:
        big = torch.ones(32 * 2**20)  # 128 MiB, touched, then freed inside the block
        del big
    assert busy.kind == "peak resident set of the main process"
    assert busy.bytes - quiet.bytes > 100 * 2**20
