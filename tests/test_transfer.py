"""course_utils.transfer: stages, freezing (with BN kept in eval), parameter groups, features,
linear probes, the target tasks and the offline source-model cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import transfer as T
from course_utils.models import cifar_resnet, resnet18

TINY = T.SourceSpec(depth=8, width=4, epochs=1, min_epochs=1)


def small_net(num_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return cifar_resnet(8, 1, num_classes, 28, width=4)


def test_stage_names_of_the_supported_families():
    import torchvision

    assert T.stage_names(small_net()) == ["stem", "stage1", "stage2", "stage3", "head"]
    imagenet_style = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    with torch.device("meta"):
        assert T.stage_names(resnet18()) == imagenet_style
        assert T.stage_names(torchvision.models.resnet18()) == imagenet_style
    model = small_net()
    # every parameter belongs to exactly one stage
    owned = [id(p) for name in T.stage_names(model) for p in T.stage_parameters(model, name)]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())


def test_unknown_stage_and_model_give_clear_errors():
    model = small_net()
    with pytest.raises(ValueError, match="valid stages of this CifarResNet are stem, stage1"):
        T.freeze(model, ["layer4"])
    with pytest.raises(ValueError, match="valid stages"):
        T.param_groups(model, {"blocks": 0.1})
    with pytest.raises(TypeError, match="Stages are defined for"):
        T.stage_names(nn.Sequential(nn.Linear(2, 2)))


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def test_freeze_all_but_head_trains_only_the_head_and_keeps_bn_in_eval():
    model = T.freeze(small_net())
    assert T.trainable_stages(model) == ["head"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()  # what fit() does every epoch
    x, y = torch.randn(8, 1, 28, 28) * 3 + 1, torch.randint(0, 5, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}  # no running statistic moved either
    assert not model.bn1.training and model.fc.training


def test_the_frozen_bn_pitfall_is_real_without_bn_eval():
    model = T.freeze(small_net(), bn_eval=False)
    before = _bn_state(model)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 28, 28) * 3 + 1)
    after = _bn_state(model)
    assert T.trainable_stages(model) == ["head"]
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_unfreeze_from_and_unfreeze():
    model = T.freeze(small_net())
    assert T.unfreeze_from(model, "stage3") == ["stage3", "head"]
    assert T.trainable_stages(model) == ["stage3", "head"]
    model.train()
    assert model.blocks[-1].bn1.training  # an unfrozen stage's BN follows the model again
    T.unfreeze_from(model, "stage1")
    assert T.trainable_stages(model) == ["stage1", "stage2", "stage3", "head"]
    T.unfreeze(model)
    assert T.trainable_stages(model) == T.stage_names(model)


def test_replace_head():
    model = small_net()
    head = T.replace_head(model, 7)
    assert model.fc is head and head.out_features == 7 and head.in_features == 16
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_param_groups_discriminative_rates_and_frozen_params_left_out():
    model = small_net()
    groups = T.param_groups(model, 0.1, decay=0.1)
    assert [g["name"] for g in groups] == T.stage_names(model)
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    T.unfreeze_from(model, "stage3")
    groups = T.param_groups(model, 0.1, decay=0.5)
    assert [(g["name"], g["lr"]) for g in groups] == [("stage3", 0.05), ("head", 0.1)]
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups for p in g["params"]) == n_trainable
    opt = torch.optim.SGD(groups, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.1]
    explicit = T.param_groups(model, {"stage3": 1e-3, "head": 1e-2})
    assert [g["lr"] for g in explicit] == [1e-3, 1e-2]
    with pytest.raises(ValueError, match="'stage3' has trainable parameters but no"):
        T.param_groups(model, {"head": 1e-2})
    with pytest.raises(ValueError, match="decay"):
        T.param_groups(model, 0.1, decay=0)


def test_extract_features_runs_in_eval_mode_and_restores_the_mode():
    model = small_net().train()
    x, y = torch.randn(6, 1, 28, 28), torch.arange(6)
    feats, labels = T.extract_features(model, [(x[:4], y[:4]), (x[4:], y[4:])])
    assert model.training and torch.equal(labels, y)
    model.eval()
    with torch.no_grad():
        reference = model.pool(model.blocks(torch.relu(model.bn1(model.conv1(x))))).flatten(1)
        first = model.blocks[0](torch.relu(model.bn1(model.conv1(x)))).mean(dim=(2, 3))
    assert torch.allclose(feats, reference, atol=1e-6)
    stage1, _ = T.extract_features(model, [(x, y)], "stage1")
    assert stage1.shape == (6, 4) and torch.allclose(stage1, first, atol=1e-6)
    with pytest.raises(ValueError, match="logits"):
        T.extract_features(model, [(x, y)], "head")


def test_linear_probe_matches_scikit_learn_and_becomes_a_head():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 10, generator=g) * 2
    labels = torch.arange(4).repeat_interleave(60)
    feats = centers[labels] + torch.randn(240, 10, generator=g) * 1.5
    train, test = slice(0, None, 2), slice(1, None, 2)
    probe = T.linear_probe(feats[train], labels[train])
    ours = probe.accuracy(feats[test], labels[test])
    sk = LogisticRegression(max_iter=1000).fit(feats[train].numpy(), labels[train].numpy())
    theirs = sk.score(feats[test].numpy(), labels[test].numpy())
    assert ours > 0.8 and abs(ours - theirs) < 0.05
    head = probe.as_head()
    with torch.no_grad():
        assert torch.allclose(head(feats), probe.logits(feats), atol=1e-4)


def test_textures_and_class_subset():
    x, y = T.textures(6, size=28, seed=3)
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [6] * 5
    assert torch.equal(T.textures(6, size=28, seed=3)[0], x)
    sub_x, sub_y = T.class_subset(x, y, [3, 1], per_class=2, seed=0)
    assert sorted(sub_y.tolist()) == [0, 0, 1, 1]
    assert torch.equal(sub_x[sub_y == 0][0], x[y == 3][(x[y == 3] == sub_x[sub_y == 0][0])
                                                    .flatten(1).all(1)][0])
    with pytest.raises(ValueError, match="only 6 images"):
        T.class_subset(x, y, [0], per_class=7)


def test_source_cache_reuses_rebuilds_and_never_uses_a_bad_checkpoint(capsys):
    first = T.pretrained_source(TINY, verbose=False)
    assert not first.from_cache and first.path.exists() and "own pretraining" in first.description
    again = T.pretrained_source(TINY, verbose=False)
    assert again.from_cache
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a.cpu(), b.cpu())
    retrained = T.pretrained_source(TINY, rebuild=True, verbose=False)  # seeded: the same weights
    for a, b in zip(first.model.state_dict().values(), retrained.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a.cpu(), b.cpu())
    capsys.readouterr()
    first.path.write_bytes(b"not a checkpoint")  # corrupt
    rebuilt = T.pretrained_source(TINY, verbose=False)
    assert not rebuilt.from_cache and "cannot be read" in capsys.readouterr().out
    payload = torch.load(first.path, weights_only=True)
    payload["key"]["epochs"] = 99  # made for other settings
    torch.save(payload, first.path)
    again = T.pretrained_source(TINY, verbose=False)
    assert not again.from_cache and "differs in: epochs" in capsys.readouterr().out
    payload = torch.load(first.path, weights_only=True)
    payload["state_dict"].pop("fc.bias")  # right key, wrong weights
    torch.save(payload, first.path)
    again = T.pretrained_source(TINY, verbose=False)
    assert not again.from_cache and "does not fit the model" in capsys.readouterr().out
    assert T.pretrained_source(TINY, verbose=False).from_cache


def test_target_tasks_use_the_source_normalization():
    source = T.pretrained_source(TINY, verbose=False)
    similar = T.target_task(source, "similar", per_class=2)
    assert similar.train.num_samples == 10 and similar.num_classes == 5
    feats, labels = T.extract_features(source.model, similar.train)
    assert len(labels) == 10 and len(similar.train) == 9  # 10 images tiled 26 times: 9 batches
    assert torch.equal(similar.train.mean.flatten().cpu(), source.mean)
    different = T.target_task(source, "different")
    assert different.classes == T.TEXTURES and not different.standin
    every_label = T.target_task(source, "similar")  # balanced, as many as textures have
    assert every_label.train.num_samples == different.train.num_samples
    assert torch.bincount(T.distinct(every_label.train).labels).unique().numel() == 1
    with pytest.raises(ValueError, match="valid kinds are similar, different"):
        T.target_task(source, "medical")
    result = T.run_strategy("linear probe", source, similar, epochs=1)
    assert 0 <= result.accuracy <= 1
    with pytest.raises(ValueError, match="valid strategies"):
        T.run_strategy("distill", source, similar, epochs=1)


def test_torchvision_source_offline_says_so(capsys):
    assert T.torchvision_source("resnet18") is None
    assert "COURSE_OFFLINE is set" in capsys.readouterr().out
    with pytest.raises(ValueError, match="valid ones are DEFAULT"):
        T.torchvision_source("resnet18", "IMAGENET1K_V9")


def test_frozen_stages_save_no_activations_for_backward():
    model = small_net()
    x = torch.randn(4, 1, 28, 28)
    everything = T.saved_for_backward_bytes(model, x)
    T.freeze(model)
    head_only = T.saved_for_backward_bytes(model, x)
    assert 0 < head_only < everything / 10


def test_training_step_flops_count_forward_and_only_the_trainable_backward():
    from torch.utils.flop_counter import FlopCounterMode

    model = small_net()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        model(x)
    everything = T.training_step_flops(model, x)
    T.unfreeze_from(model, "stage3")
    top = T.training_step_flops(model, x)
    T.freeze(model)
    head_only = T.training_step_flops(model, x)
    assert forward.get_total_flops() < head_only < top < everything
    assert head_only < 1.01 * forward.get_total_flops()  # the head's backward is tiny
    assert 2.5 < everything / forward.get_total_flops() < 3.1  # backward: about twice forward
    assert all(p.grad is None for p in model.parameters())


def _records():
    return [{"kind": kind, "per_class": n, "strategy": s, "seed": seed,
             "accuracy": 0.2 + 0.1 * i + 0.01 * seed + (0.2 if kind == "similar" else 0),
             "seconds": 1.0}
            for kind in T.KINDS for n in (1, 5, 50) for seed in range(2)
            for i, s in enumerate(("probe, top", "fine-tune all", "scratch"))]


def test_chapter_figures_and_the_strategy_explorer():
    import base64

    from course_utils import transfer_plots as TP

    records = _records()
    stats = TP.summarize_runs(records)
    mean, sd, runs = stats[("similar", 5, "scratch")]
    assert runs == 2 and mean == pytest.approx(0.605) and sd == pytest.approx(0.00707, abs=1e-4)
    assert TP.plot_decision_table(records, few=5, lots=50).axes
    assert len(TP.plot_label_curves(records, mark=5).axes) == 2
    explorer = TP.strategy_explorer(records, kind="different", per_class=50)
    explorer.controls["per_class"].value = 1
    assert explorer.settings() == {"kind": "different", "per_class": 1}
    bundle = explorer._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="per_class must be one of"):
        TP.strategy_explorer(records, per_class=3)
    weight = small_net().conv1.weight
    assert TP.plot_filters(weight, "filters").axes
