from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils.data import (
    Augment,
    DeviceLoader,
    dataset_key,
    load_data,
    random_crop,
    random_hflip,
    write_mnist_format,
)


def make_fake_fashion_mnist(root: Path, n_train: int = 300, n_test: int = 100) -> None:
    """Small learnable data in torchvision's on-disk format (class k: a bright bar at row 2k)."""
    rng = np.random.default_rng(0)
    splits = []
    for n in (n_train, n_test):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label:2 * label + 6, 4:24] = 200 + rng.integers(0, 55)
        splits += [torch.from_numpy(images), torch.from_numpy(labels)]
    # torchvision looks for the extracted files only, so no .gz archives are needed
    write_mnist_format(root, tuple(splits))


def test_torchvision_path_reads_files_on_disk(tmp_path, monkeypatch, capsys):
    make_fake_fashion_mnist(tmp_path / "data")
    data = load_data("Fashion-MNIST", batch_size=50, train_size=300, test_size=100)
    out = capsys.readouterr().out
    assert "STAND-IN" not in out
    assert data.name == "Fashion-MNIST" and not data.standin
    assert data.train.num_samples == 300 and data.test.num_samples == 100
    assert data.image_shape == (1, 28, 28) and data.classes[9] == "Ankle boot"
    x, y = next(iter(data.test))
    assert x.dtype == torch.float32 and x.shape == (100, 1, 28, 28)
    assert torch.equal(y[:10], torch.arange(10))


def test_offline_fallback_is_announced_and_labelled(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_OFFLINE")

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", no_network)
    data = load_data("fashion_mnist", batch_size=32)
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if "STAND-IN" in line]
    assert len(warnings) == 1 and "Fashion-MNIST is not available" in warnings[0]
    assert "Error downloading" in warnings[0]
    assert data.standin and data.name == "digits (offline stand-in for Fashion-MNIST)"
    assert data.classes == tuple("0123456789")  # the stand-in's real labels, not clothing
    assert data.name in data.summary()
    assert data.image_shape == (1, 28, 28)


def test_fallback_can_be_refused(monkeypatch):
    with pytest.raises(Exception):  # noqa: B017 - whatever torchvision raised is re-raised
        load_data("mnist", allow_standin=False)


def test_standin_matches_channels_and_size_of_cifar10():
    data = load_data("cifar10", batch_size=16)
    assert data.standin and data.image_shape == (3, 32, 32)
    images = data.train.images
    assert images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 1])  # grey digits copied to three channels


def test_profile_caps_sizes_and_batches_are_normalized():
    data = load_data("mnist", batch_size=64)  # smoke: 512 train / 256 test
    assert data.train.num_samples == 512 and data.test.num_samples == 256
    assert len(data.train) == 8
    x = torch.cat([xb for xb, _ in data.train])
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-2


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="valid datasets are fashion_mnist, mnist, cifar10"):
        load_data("imagenet")
    assert dataset_key("FashionMNIST") == dataset_key("fashion-mnist") == "fashion_mnist"


def test_resize_happens_on_the_batch():
    data = load_data("mnist", batch_size=32, resize=64)
    x, _ = next(iter(data.train))
    assert x.shape == (32, 1, 64, 64) and data.image_size == 64


def test_shuffle_covers_every_sample_once():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).clone()
    loader = DeviceLoader(images, torch.arange(10), 3, torch.zeros(1, 1, 1, 1),
                          torch.ones(1, 1, 1, 1), shuffle=True)
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 4 and sorted(labels.tolist()) == list(range(10))


def test_augmentation_differs_per_sample():
    torch.manual_seed(0)
    image = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8)
    batch = image.expand(32, 1, 8, 8).contiguous()
    cropped = random_crop(batch, padding=2)
    assert cropped.shape == batch.shape
    distinct = {tuple(c.flatten().tolist()) for c in cropped}
    assert len(distinct) > 5, "every sample of a batch should get its own crop offset"
    # each crop is a shifted window of the zero-padded original
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))[0, 0]
    for crop in cropped[:, 0]:
        assert any(torch.equal(crop, padded[dy:dy + 8, dx:dx + 8])
                   for dy in range(5) for dx in range(5))
    flipped = random_hflip(batch)
    n_flipped = sum(torch.equal(f, image[0].flip(-1)) for f in flipped)
    assert 0 < n_flipped < 32


def test_augment_applies_only_to_training_batches():
    data = load_data("fashion_mnist", batch_size=512, augment=Augment(crop_padding=4))
    assert data.train.augment is not None and data.test.augment is None
    a = next(iter(data.test))[0]
    b = next(iter(data.test))[0]
    assert torch.equal(a, b)


def test_loader_rejects_float_images():
    with pytest.raises(ValueError, match="expected uint8 images"):
        DeviceLoader(torch.zeros(4, 1, 2, 2), torch.zeros(4), 2, torch.zeros(1), torch.ones(1))


def test_root_argument_and_unnormalized_pixels(tmp_path):
    make_fake_fashion_mnist(tmp_path / "elsewhere")
    data = load_data("fashion_mnist", batch_size=100, root=tmp_path / "elsewhere",
                     normalize=False, verbose=False)
    assert not data.standin
    x, _ = next(iter(data.train))
    assert x.min().item() == 0.0 and 0.78 < x.max().item() <= 1.0  # pixels / 255
