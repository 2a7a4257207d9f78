import pytest
import torch

from course_utils.device import DeviceError, autocast_dtype, device_summary, get_device
from course_utils.profile import PROFILES, get_profile
from course_utils.seed import seed_everything


def test_course_device_env_is_honoured(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "not-a-device")
    assert get_device("cpu") == torch.device("cpu")


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("course_utils.device._mps_available", lambda: False)
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr("course_utils.device._mps_available", lambda: True)
    assert get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "cpu:1"])
def test_unknown_device_lists_valid_values(name):
    with pytest.raises(DeviceError, match="valid values are auto, cpu, cuda"):
        get_device(name)


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        get_device()


def test_summary_names_device_torch_and_precision():
    line = device_summary(torch.device("cpu"))
    assert line.startswith("cpu -- CPU")
    assert torch.__version__ in line and "fp32" in line
    assert autocast_dtype(torch.device("cpu")) is None


def test_profile_from_environment_and_default(monkeypatch):
    assert get_profile().name == "smoke"
    monkeypatch.delenv("COURSE_PROFILE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile().name == "full"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match="valid profiles are smoke, quick, full"):
        get_profile("huge")


def test_profiles_scale_experiments_monotonically():
    smoke, quick, full = (PROFILES[n] for n in ("smoke", "quick", "full"))
    assert smoke.epochs(20) == 1 and quick.epochs(20) == 5 and full.epochs(20) == 20
    assert smoke.size(60_000) < quick.size(60_000) < full.size(60_000) == 60_000
    assert smoke.size(100) == 100  # never more than the split has
    assert smoke.steps(1000) <= quick.steps(1000) <= full.steps(1000) == 1000
    assert smoke.epochs(1) == 1 and smoke.steps(3, minimum=2) == 2


def test_seed_everything_repeats_random_streams():
    seed_everything(3)
    first = torch.rand(4), torch.randint(0, 100, (3,))
    seed_everything(3)
    second = torch.rand(4), torch.randint(0, 100, (3,))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
