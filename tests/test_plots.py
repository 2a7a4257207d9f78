import matplotlib

from course_utils.data import load_data
from course_utils.history import History
from course_utils.plots import LivePlot, plot_curves, plot_histories, plot_samples

matplotlib.use("Agg")


def make_history(dataset="digits (offline stand-in for Fashion-MNIST)", label="run"):
    return History(train_loss=[1.0, 0.5], train_acc=[0.5, 0.8], test_loss=[1.1, 0.6],
                   test_acc=[0.4, 0.7], lr=[0.1, 0.1], epoch_time=[1.0, 1.0],
                   images_per_sec=[100.0, 120.0],
                   meta={"dataset": dataset, "label": label, "epochs": 2})


def test_plot_histories_side_by_side_names_the_dataset():
    fig = plot_histories([make_history(label="a"), make_history(label="b")])
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.lines) == 4  # two runs x (train, test)
    assert acc_ax.lines[1].get_ydata()[-1] == 70.0  # accuracy in percent
    assert "offline stand-in" in fig._suptitle.get_text()
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()][0] == "a (train)"


def test_live_plot_prints_lines_outside_jupyter(capsys):
    live = LivePlot()
    assert live.replaces_epoch_lines
    history = make_history()
    live.on_fit_start(history)
    live.on_epoch_end(history)
    assert capsys.readouterr().out.startswith("epoch 2/2  train loss 0.5000")


def test_plot_samples_titles_classes():
    data = load_data("fashion_mnist", batch_size=8, verbose=False)
    fig = plot_samples(data, n=8)
    assert "stand-in" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 8 and set(titles) <= set(data.classes)


def test_plot_curves_marks_stopped_runs_and_draws_the_rate_panel():
    fig = plot_curves({"ok": [3.0, 2.0, 1.0], "diverged": [3.0, 30.0]}, title="t", steps=3,
                      vlines=(2,))
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_title() == "t"
    assert [t.get_text() for t in ax.texts] == ["diverged: stopped"]
    assert [ln.get_label() for ln in ax.get_legend().get_lines()] == ["ok", "diverged"]
    fig = plot_curves({"a": ([0, 10, 20], [1.0, 0.5, 0.4])}, title="t", markers=("a",),
                      lrs=([0, 10, 20], [0.5, 0.05, 0.05]), lr_position="above")
    lr_ax, ax = fig.axes
    assert ax.get_lines()[0].get_marker() == "o" and ax.get_xlabel() == "step"
    assert lr_ax.get_title() == "t" and lr_ax.get_lines()[0].get_drawstyle() == "steps-post"
    assert [t.get_text() for t in lr_ax.get_yticklabels()] == ["0.05", "0.5"]
