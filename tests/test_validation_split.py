"""The validation split carved from training data, and early stopping that restores the best
weights (Chapter 2's model-selection tools)."""

from collections import Counter

import pytest
import torch

from course_utils.callbacks import EarlyStopping
from course_utils.data import load_data
from course_utils.models import LeNet
from course_utils.seed import seed_everything
from course_utils.train import evaluate, fit


def _rows(images: torch.Tensor) -> Counter:
    """A multiset of images, each as bytes, to compare splits regardless of order."""
    return Counter(bytes(img.flatten().tolist()) for img in images.cpu())


def test_validation_is_carved_from_training_data_never_the_test_split():
    plain = load_data("mnist", train_size=10_000, test_size=10_000, verbose=False)
    data = load_data("mnist", train_size=10_000, test_size=10_000, val_size=200,
                     verbose=False)
    assert data.val is not None and data.val.num_samples == 200
    assert data.train.num_samples == plain.train.num_samples - 200
    # train + validation is exactly the old training split; the test split is untouched.
    assert _rows(data.train.images) + _rows(data.val.images) == _rows(plain.train.images)
    assert torch.equal(data.test.images, plain.test.images)
    assert torch.equal(data.test.labels, plain.test.labels)
    assert "200 validation" in data.summary()
    # The same carve every time, whatever the global seed.
    torch.manual_seed(123)
    again = load_data("mnist", train_size=10_000, val_size=200, verbose=False)
    assert torch.equal(again.val.images, data.val.images)


def test_train_size_caps_what_is_left_after_the_carve():
    data = load_data("mnist", train_size=300, val_size=100, verbose=False)
    assert data.train.num_samples == 300 and data.val.num_samples == 100
    # the carve comes first, so capping the rest does not change the validation split
    full = load_data("mnist", train_size=10_000, val_size=100, verbose=False)
    assert torch.equal(full.val.images, data.val.images)


def test_validation_view_puts_val_in_the_test_slot_and_says_so():
    data = load_data("mnist", batch_size=64, val_size=100, verbose=False)
    view = data.validation()
    assert view.test is data.val and view.train is data.train
    assert "validation split" in view.name
    with pytest.raises(ValueError, match="val_size"):
        load_data("mnist", verbose=False).validation()
    with pytest.raises(ValueError, match="val_size must be between"):
        load_data("mnist", val_size=10**6, verbose=False)


def test_early_stopping_restores_the_best_weights():
    data = load_data("mnist", batch_size=64, val_size=100, verbose=False)
    seed_everything(0)
    model = LeNet(data.in_channels, data.num_classes)
    snapshots = []

    class Record(EarlyStopping):
        def on_epoch_end(self, history):
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
            history.test_loss[-1] = [3.0, 1.0, 2.0, 2.5, 2.7, 9.0][len(history) - 1]
            return super().on_epoch_end(history)

    history = fit(model, data.validation(), 10, optimizer="adam", lr=1e-3, progress=False,
                  verbose=False, callbacks=[Record(patience=3, restore_best=model)])
    assert len(history) == 5 and history.meta["best_epoch"] == 2
    assert history.meta["stopped"].startswith(
        "early stopping: validation loss (history.test_loss) did not improve"), "names the split"
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[1][key]), key


def test_early_stopping_with_ema_restores_the_averaged_weights_it_scored():
    # With ema_decay the epoch's scores are the averaged model's, so "the best weights" are
    # the averaged ones of the best epoch: the restored model must score exactly that.
    data = load_data("mnist", batch_size=64, train_size=512, val_size=128, verbose=False)
    view = data.validation()
    seed_everything(0)
    model = LeNet(data.in_channels, data.num_classes)
    history = fit(model, view, 4, optimizer="adam", lr=3e-3, ema_decay=0.9, progress=False,
                  verbose=False, callbacks=[EarlyStopping(patience=10, restore_best=model)])
    best = history.meta["best_epoch"]
    assert history.test_loss[best - 1] == min(history.test_loss)
    restored = evaluate(model, view.test)
    assert restored.loss == pytest.approx(history.test_loss[best - 1], rel=1e-5)
    assert restored.accuracy == history.test_acc[best - 1]


def test_early_stopping_can_be_reused_across_runs():
    stopper = EarlyStopping(patience=1)
    stopper.best, stopper.bad_epochs = 0.0, 5
    from course_utils.history import History

    stopper.on_fit_start(History())
    assert stopper.best == float("inf") and stopper.bad_epochs == 0


def test_any_uint8_callable_can_augment_training_batches():
    calls = []

    def invert(images):
        calls.append(images.shape[0])
        return 255 - images

    plain = load_data("mnist", batch_size=16, normalize=False, verbose=False)
    data = load_data("mnist", batch_size=16, normalize=False, augment=invert, verbose=False)
    x = data.train.prepare(plain.train.images[:4])
    torch.testing.assert_close(x, 1 - plain.train.prepare(plain.train.images[:4]))
    next(iter(data.test))
    assert calls == [4], "applied to training batches only"
