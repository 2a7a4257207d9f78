"""Data-parallel ``fit``: two CPU processes on gloo, started by torchrun, train the same
weights as one process on the combined batches, draw different random numbers, and only
process 0 prints and saves."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
import torch

from course_utils.distributed import (
    ProcessGroup,
    ShardedEvalLoader,
    ShardedTrainLoader,
    torchrun,
)

# The script every process runs. ``build`` is also imported by the test for the
# single-process reference, so both runs start from exactly the same data and model.
SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import torch

    from course_utils import LeNet, fit, seed_everything
    from course_utils.data import DeviceLoader
    from course_utils.distributed import is_main_process, rank


    def build():
        g = torch.Generator().manual_seed(1)
        images = torch.randint(0, 256, (264 + 61, 1, 16, 16), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (264 + 61,), generator=g)
        stats = dict(mean=torch.full((1, 1, 1, 1), 127.0 / 255), std=torch.full((1, 1, 1, 1), 0.3))
        # 264 training images in global batches of 32: 8 full ones and one of 8 (4 each);
        # 61 test images: 31 and 30 per process.
        train = DeviceLoader(images[:264], labels[:264], 32, shuffle=True, **stats)
        test = DeviceLoader(images[264:], labels[264:], 16, **stats)
        seed_everything(0)
        return LeNet(1, 10, 16), (train, test)


    def train(model, data):
        return fit(model, data, 2, optimizer="sgd", lr=0.05,
                   optimizer_kwargs={"momentum": 0.9}, progress=False, label="ddp")


    if __name__ == "__main__":
        out = Path(sys.argv[1])
        model, data = build()
        history = train(model, data)
        torch.save(torch.rand(8), out / f"draw_{rank()}.pt")  # the processes' next draws
        if is_main_process():
            torch.save(model.state_dict(), out / f"weights_{rank()}.pt")
            history.save(out / "history.json")
''')


def _load(path):
    spec = importlib.util.spec_from_file_location("ddp_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_gloo_processes_train_the_same_weights_as_one(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    output = torchrun(script, tmp_path, nproc=2, timeout_s=120)  # a free port, one thread each

    # only process 0 printed and saved
    assert output.count("Training ddp") == 1, output
    assert output.count("epoch ") == 2 and "2 processes (gloo)" in output, output
    assert sorted(p.name for p in tmp_path.glob("weights_*.pt")) == ["weights_0.pt"]

    # each process draws its own random numbers (dropout, augmentation), though seeded alike
    draws = [torch.load(tmp_path / f"draw_{r}.pt", weights_only=True) for r in range(2)]
    assert not torch.equal(draws[0], draws[1])

    # the reference: one process, the same global batches
    module = _load(script)
    model, data = module.build()
    single = module.train(model, data)
    parallel = torch.load(tmp_path / "weights_0.pt", weights_only=True)
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(parallel[name], weight, rtol=1e-4, atol=1e-5, msg=name)

    # metrics reduced across processes: the whole group's numbers, as one process sees them
    from course_utils import History

    history = History.load(tmp_path / "history.json")
    assert history.meta["processes"] == 2 and single.meta["processes"] == 1
    assert history.meta["n_train"] == 264 and history.meta["batch_size"] == 32
    for metric in ("train_loss", "test_loss"):
        assert getattr(history, metric) == pytest.approx(getattr(single, metric), rel=1e-4)
    for metric in ("train_acc", "test_acc"):
        assert getattr(history, metric) == pytest.approx(getattr(single, metric), abs=1.5 / 61)


def _loader(n, batch_size, drop_last=False):
    from course_utils.data import DeviceLoader

    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    one = torch.ones(1, 1, 1, 1)
    return DeviceLoader(images, torch.arange(n), batch_size, mean=0 * one, std=one / 255,
                        drop_last=drop_last)


def test_shards_split_every_global_batch_evenly():
    loader = _loader(21, 8)  # batches of 8, 8 and 5 -> 4, 4 and 2 images per process
    shards = [ShardedTrainLoader(loader, r, 2) for r in range(2)]
    batches = [[y.tolist() for _, y in shard] for shard in shards]
    assert len(shards[0]) == len(shards[1]) == 3 and shards[0].num_samples == 10
    for i, (_, y) in enumerate(loader):
        kept = y[: len(y) // 2 * 2].tolist()
        assert batches[0][i] + batches[1][i] == kept  # image 20 is the one left out
    evals = [ShardedEvalLoader(loader, r, 2) for r in range(2)]
    seen = sorted(v for shard in evals for _, y in shard for v in y.tolist())
    assert seen == list(range(21)) and [e.num_samples for e in evals] == [11, 10]


def test_bad_shards_and_single_process_group():
    with pytest.raises(ValueError, match="divisible"):
        ShardedTrainLoader(_loader(20, 9), 0, 2)
    group = ProcessGroup.from_env(torch.device("cpu"))
    assert (group.rank, group.world_size, group.is_main, group.describe()) == (0, 1, True, "")
    loader, model, x = _loader(4, 2), torch.nn.Linear(1, 1), torch.ones(())
    assert group.shard(loader) is loader and group.wrap(model) is model
    assert group.all_sum(x, 3) == (x, 3) and group.all_mean(torch.tensor(6.0), 3) == 2.0
    state = torch.get_rng_state()
    group.decorrelate_randomness()  # alone: the random stream is left as it was
    assert torch.equal(torch.get_rng_state(), state)


def test_process_r_reseeds_with_the_seed_plus_r_even_at_the_top_of_the_range():
    state = torch.get_rng_state()
    try:
        for seed, expected in ((7, 10), (2**64 - 2, 1)):
            torch.manual_seed(seed)
            ProcessGroup(3, 4, torch.device("cpu")).decorrelate_randomness()
            assert torch.initial_seed() == expected
    finally:
        torch.set_rng_state(state)
