import functools
import math

import pytest
import torch
from torch import nn

from course_utils.callbacks import Callback, EarlyStopping
from course_utils.data import load_data
from course_utils.history import History
from course_utils.models import LeNet
from course_utils.seed import seed_everything
from course_utils.train import TrainingDiverged, evaluate, fit


@pytest.fixture(scope="module")
def digits():
    return load_data("mnist", batch_size=64, verbose=False)


def small_model(data):
    seed_everything(0)
    return LeNet(in_channels=data.in_channels, num_classes=data.num_classes)


def test_fit_reduces_the_loss_and_records_everything(digits, capsys):
    history = fit(small_model(digits), digits, 4, optimizer="adam", lr=2e-3, progress=False)
    assert len(history) == 4
    assert history.train_loss[-1] < 0.7 * history.train_loss[0]
    assert history.test_acc[-1] > 0.5  # ten classes: chance is 0.1
    for name in History.METRICS:
        values = getattr(history, name)
        assert len(values) == 4 and all(math.isfinite(v) for v in values), name
    first_line = capsys.readouterr().out.splitlines()[0]
    for fact in ("LeNet", "digits (offline stand-in for MNIST)", "512 train", "profile smoke",
                 "cpu"):
        assert fact in first_line
    assert history.meta["device"].startswith("cpu") and history.meta["profile"] == "smoke"


def test_evaluate_matches_a_manual_count(digits):
    model = small_model(digits)
    metrics = evaluate(model, digits.test)
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in digits.test)
    assert metrics.accuracy == correct / digits.test.num_samples
    assert metrics.loss > 0 and model.training  # evaluate restores the training mode


def test_nan_loss_stops_with_advice(digits):
    advice = r"learning rate \(1e\+06\) is probably too high: try a smaller one, e.g. 100000"
    with pytest.raises(TrainingDiverged, match=advice):
        fit(small_model(digits), digits, 3, optimizer="sgd", lr=1e6, progress=False,
            verbose=False)


def test_nan_loss_can_return_the_history(digits, capsys):
    history = fit(small_model(digits), digits, 3, optimizer="sgd", lr=1e6, progress=False,
                  verbose=False, on_divergence="stop")
    assert len(history) == 0 and "too high" in history.meta["stopped"]
    assert "too high" in capsys.readouterr().out


def test_ctrl_c_returns_the_history_so_far(digits):
    class InterruptAfterTwo(Callback):
        def on_epoch_end(self, history):
            if len(history) == 2:
                raise KeyboardInterrupt

    history = fit(small_model(digits), digits, 5, optimizer="adam", lr=1e-3, progress=False,
                  verbose=False, callbacks=[InterruptAfterTwo()])
    assert len(history) == 2 and "interrupted" in history.meta["stopped"]


def test_early_stopping(digits):
    class NeverImproves(EarlyStopping):
        def on_epoch_end(self, history):
            history.test_loss[-1] = 1.0  # a plateau
            return super().on_epoch_end(history)

    history = fit(small_model(digits), digits, 10, optimizer="adam", lr=1e-3, progress=False,
                  verbose=False, callbacks=[NeverImproves(patience=2)])
    assert len(history) == 3 and "early stopping" in history.meta["stopped"]
    with pytest.raises(ValueError, match="valid metrics are"):
        EarlyStopping(monitor="f1")


def test_per_batch_scheduler_factory_optimizer_and_options(digits):
    model = small_model(digits)
    steps = len(digits.train)
    history = fit(
        model, digits, 2,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        scheduler=lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, 2 * steps),
        scheduler_step="batch", label_smoothing=0.1, grad_clip=1.0, ema_decay=0.9,
        progress=False, verbose=False,
    )
    assert history.lr[0] == pytest.approx(0.1) and history.lr[1] == pytest.approx(0.05)
    assert history.meta["optimizer"] == "SGD" and history.meta["ema_decay"] == 0.9
    assert isinstance(history.ema_model, torch.optim.swa_utils.AveragedModel)
    ema_acc = evaluate(history.ema_model, digits.test).accuracy
    assert ema_acc == pytest.approx(history.test_acc[-1])


def test_epoch_scheduler_and_ready_optimizer(digits):
    model = small_model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = fit(model, digits, 3, optimizer=opt, scheduler=sched, progress=False,
                  verbose=False)
    assert history.lr == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_accepts_plain_dataloaders():
    xs = torch.randn(64, 1, 28, 28)
    ys = torch.randint(0, 10, (64,))
    ds = torch.utils.data.TensorDataset(xs, ys)
    loaders = (torch.utils.data.DataLoader(ds, batch_size=16),
               torch.utils.data.DataLoader(ds, batch_size=32))
    history = fit(LeNet(), loaders, 1, progress=False, verbose=False)
    assert history.meta["n_train"] == 64 and history.meta["dataset"] == "custom data"


def test_bad_arguments_are_explained(digits):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="valid names are sgd, adam"):
        fit(model, digits, 1, optimizer="lion", progress=False, verbose=False)
    with pytest.raises(ValueError, match="scheduler_step"):
        fit(model, digits, 1, scheduler_step="step")
    with pytest.raises(TypeError, match="expects an ImageData"):
        fit(model, [1, 2, 3], 1)


def test_history_round_trips_to_disk(tmp_path, digits):
    history = fit(small_model(digits), digits, 1, optimizer="adam", lr=1e-3, progress=False,
                  verbose=False)
    path = history.save(tmp_path / "runs" / "h.json")
    restored = History.load(path)
    assert restored.to_dict() == history.to_dict()
    assert restored.summary() == history.summary()
    with pytest.raises(ValueError, match="Not a History"):
        History.from_dict({"loss": [1.0]})


def test_progress_bar_follows_course_progress(monkeypatch):
    from course_utils.train import _progress_bar

    monkeypatch.setenv("COURSE_PROGRESS", "0")
    assert _progress_bar(10, None, "run") is None
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    bar = _progress_bar(10, None, "run")
    assert bar is not None and bar.total == 10
    bar.close()
    assert _progress_bar(10, False, "run") is None


def _one_batch(x, y):
    """A (train, test) pair of one-batch loaders over the same tensors."""
    return [(x, y)], [(x, y)]


def test_soft_targets_one_sgd_step_matches_a_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(6, 4)
    soft = torch.softmax(torch.randn(6, 3), dim=1)  # (batch, classes) probabilities
    model = nn.Linear(4, 3)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    # Cross-entropy against probabilities, -sum_k t_k log softmax(z)_k averaged over the batch,
    # has gradient (softmax(z) - t) / B with respect to the logits z.
    z = x @ w0.T + b0
    loss = -(soft * torch.log_softmax(z, dim=1)).sum(1).mean()
    grad_z = (torch.softmax(z, dim=1) - soft) / len(x)
    lr = 0.3
    history = fit(model, _one_batch(x, soft), 1, optimizer="sgd", lr=lr, amp=False,
                  progress=False, verbose=False)
    torch.testing.assert_close(model.weight.detach(), w0 - lr * grad_z.T @ x)
    torch.testing.assert_close(model.bias.detach(), b0 - lr * grad_z.sum(0))
    assert history.train_loss[0] == pytest.approx(loss.item(), rel=1e-6)
    assert history.train_acc[0] == (z.argmax(1) == soft.argmax(1)).sum().item() / len(x)
    # evaluate() takes soft targets the same way (after the step, on the updated model)
    metrics = evaluate(model, [(x, soft)], amp=False)
    z1 = model(x).detach()
    assert metrics.loss == pytest.approx(-(soft * torch.log_softmax(z1, 1)).sum(1).mean().item(),
                                         rel=1e-6)
    assert metrics.accuracy == (z1.argmax(1) == soft.argmax(1)).sum().item() / len(x)


def test_one_hot_batch_transform_trains_exactly_like_hard_labels(digits):
    """Hard labels are unchanged; one-hot probabilities give the same loss and gradients."""
    def one_hot(images, labels):
        return images, nn.functional.one_hot(labels, digits.num_classes).float()

    hard = fit(small_model(digits), digits, 2, progress=False, verbose=False)
    soft = fit(small_model(digits), digits, 2, batch_transform=one_hot, progress=False,
               verbose=False)
    for name in History.METRICS:
        if name not in ("epoch_time", "images_per_sec"):
            assert getattr(soft, name) == pytest.approx(getattr(hard, name), rel=1e-5), name
    assert soft.meta["batch_transform"] == "one_hot" and hard.meta["batch_transform"] is None


def test_mixup_runs_through_fit_on_training_batches_only(digits):
    from torchvision.transforms import v2

    mixup = v2.MixUp(num_classes=digits.num_classes)
    seen = []

    def counted(images, labels):
        seen.append(labels.ndim)
        out_images, targets = mixup(images, labels)
        assert targets.shape == (len(labels), digits.num_classes)
        return out_images, targets

    model = small_model(digits)
    history = fit(model, digits, 2, optimizer="adam", lr=2e-3, batch_transform=counted,
                  progress=False, verbose=False)
    assert seen == [1] * (2 * len(digits.train))  # once per training step, hard labels in
    # test metrics are evaluate()'s on clean images with hard labels, never mixed ones
    clean = evaluate(model, digits.test)
    assert history.test_acc[-1] == clean.accuracy
    assert history.test_loss[-1] == pytest.approx(clean.loss, rel=1e-6)
    assert history.test_acc[-1] > 0.3 and history.meta["batch_transform"] == "counted"
