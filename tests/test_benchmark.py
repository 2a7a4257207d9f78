"""The side-by-side training benchmark, in a tiny configuration (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils.data import write_mnist_format

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "training_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("training_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["training_speed"] = module
    spec.loader.exec_module(module)
    return module


def test_idx_files_round_trip_through_torchvision(bench, tmp_path):
    import torchvision

    splits = bench.synthetic_fashion_mnist(20, 10)
    write_mnist_format(tmp_path, splits)
    train = torchvision.datasets.FashionMNIST(str(tmp_path), train=True)
    test = torchvision.datasets.FashionMNIST(str(tmp_path), train=False)
    assert torch.equal(train.data, splits[0][:, 0]) and torch.equal(train.targets, splits[1])
    assert torch.equal(test.data, splits[2][:, 0]) and torch.equal(test.targets, splits[3])


def test_synthetic_data_is_fashion_mnist_shaped(bench):
    train_x, train_y, test_x, test_y = bench.synthetic_fashion_mnist(64, 32)
    assert train_x.shape == (64, 1, 28, 28) and train_x.dtype == torch.uint8
    assert test_x.shape == (32, 1, 28, 28)
    assert set(train_y.tolist()) <= set(range(10)) and len(test_y) == 32


def test_same_initial_weights_for_every_arm(bench):
    cfg = bench.Config(model="lenet")
    a, b = bench.initial_weights(cfg, 3), bench.initial_weights(cfg, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.0.weight"], bench.initial_weights(cfg, 4)[
        "features.0.weight"])


def test_cpu_ablations_are_reported_not_faked(bench):
    cfg = bench.Config(model="lenet", image_size=28)
    cpu = torch.device("cpu")
    assert "fp32" in bench.ablation_unavailable("fp32", cfg, cpu)
    assert "channels_last" in bench.ablation_unavailable("nchw", cfg, cpu)
    assert "28x28" in bench.ablation_unavailable("pil_resize", cfg, cpu)
    assert bench.ablation_unavailable("dataloader", cfg, cpu) is None
    arms = bench.arm_functions(cfg, cpu)
    assert {"baseline", "systems", "recipe", "sync_every_step", "train_reeval",
            "dataloader"} == set(arms)


def test_alexnet_is_registered_for_224_inputs():
    from course_utils.models import get_model

    model = get_model("alexnet", in_channels=1, num_classes=10, image_size=224)
    assert model(torch.zeros(1, 1, 224, 224)).shape == (1, 10)


def test_tiny_benchmark_end_to_end(tmp_path):
    """A few hundred images, one epoch, CPU: every arm runs and the outputs are complete."""
    common = [sys.executable, str(SCRIPT)]
    subprocess.run(common + [
        "run", "--model", "lenet", "--device", "cpu", "--train-size", "256",
        "--test-size", "128", "--accuracy-epochs", "1", "--accuracy-train-size", "256",
        "--accuracy-test-size", "128", "--seeds", "0", "1", "--out", str(tmp_path),
    ], check=True, cwd=ROOT, capture_output=True, text=True, timeout=300)
    (path,) = tmp_path.glob("lenet-cpu-*.json")
    result = json.loads(path.read_text())

    env = result["environment"]
    assert env["device_type"] == "cpu" and env["torch"] == torch.__version__
    assert {"torchvision", "cpu_count", "profile"} <= set(env)
    speed, accuracy = result["phases"]["speed"], result["phases"]["accuracy"]
    assert speed["data_kind"] in ("synthetic", "real")
    assert accuracy["data_kind"] in ("standin", "real")
    assert speed["n_train"] == 256 and accuracy["n_train"] == 256
    for name in ("baseline", "systems", "recipe", "dataloader", "train_reeval"):
        runs = speed["arms"][name]["runs"]
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(r["seconds"] > 0 and 0 <= r["test_acc"] <= 1 for r in runs)
    assert speed["arms"]["baseline"]["summary"]["precision"] == "fp32"
    assert result["flops_per_image"]["training"] > result["flops_per_image"]["forward"] > 0
    comparison = result["comparison"]["systems"]
    assert comparison["speed_ratio"] > 0 and len(comparison["paired_ratios"]) == 2
    assert "accuracy_diff_points" in comparison
    assert result["ablations"]["fp32"]["available"] is False

    table = (tmp_path / "latest.md").read_text()
    assert "typical loop" in table and "systems only" in table
    assert "n/a on cpu" in table
    assert "stand-in" in table or accuracy["data_kind"] == "real"


def test_several_models_in_one_run_at_their_cpu_sizes(bench):
    from course_utils.models import get_model

    args = bench.parse_args(["run", "--model", "seven", "lenet", "alexnet", "--cpu-sizes"])
    models = bench.models_from_args(args)
    assert models == [*bench.SEVEN, "lenet"]  # 'seven' expanded, duplicates dropped
    configs = {m: bench.config_from_args(args, m) for m in models}
    assert configs["alexnet"].image_size == 64 and configs["lenet"].image_size == 28
    assert configs["lenet_bn"].batch_size == 256 and configs["lenet_bn"].lr == 1.0
    assert bench.config_from_args(bench.parse_args(["run", "--model", "nin"])).image_size == 224
    with torch.device("meta"):  # every model accepts its reduced size
        for m in bench.SEVEN:
            get_model(m, 1, 10, bench.CPU_SIZES[m])


def test_table_opens_with_every_recorded_model_side_by_side(bench):
    results = bench.latest_results()
    table = bench.render_table()
    overview = table.split("\n### ")[1]
    assert overview.startswith("All models side by side")
    rows = [line for line in overview.splitlines() if line.startswith("| ") and "x" in line
            and "Model" not in line]
    assert len(rows) == len(results) > 0
    keys = {(r["model"], r["environment"]["device_type"], r["image_size"],
             r["phases"]["speed"]["n_train"]) for r in results}
    assert len(keys) == len(results)  # one result per (model, device, size, images)
