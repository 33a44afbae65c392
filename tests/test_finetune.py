"""Discriminative LRs and gradual unfreezing: the optimizer's groups, their LRs and which parameters get
gradients, epoch by epoch; resume restores the thawed state."""

import pytest
import torch

from tlsweep.trial.finetune import backbones, frozen_target
from tlsweep.trial.loop import Trial, fit

from .conftest import trial_config_for

RESNET_STAGES = ["layer4", "layer3", "layer2", "layer1", "conv1"]  # deepest first


def _names(trial):
    return [g["name"] for g in trial.optimizer.param_groups]


def _lrs(trial):
    return {g["name"]: g["lr"] for g in trial.optimizer.param_groups}


def _with_grad(trial) -> set[str]:
    """Registry stages (and "head") whose parameters received a gradient in the last step."""
    member = backbones(trial.model)[0]
    out = {"head"} if any(p.grad is not None for p in trial.model.head.parameters()) else set()
    for stage, members in zip(member.entry.stages, member.stages()):
        params = [p for m in members for p in ([m] if isinstance(m, torch.nn.Parameter) else m.parameters())]
        if any(p.grad is not None for p in params):
            out.add(stage)
    return out


def test_discriminative_lrs_decay_by_stage_and_follow_the_schedule(shapes_root):
    lr, decay = 1e-3, 0.5
    trial = Trial(trial_config_for(shapes_root, epochs=2, lr=lr, lr_decay=decay, head_lr_mult=10.0,
                                   lr_scheduler="step", step_size=1, step_gamma=0.1, optimizer="sgd"))
    assert _names(trial) == ["head", *RESNET_STAGES, "(outside stages)"]
    expected = {"head": lr * 10, **{s: lr * decay ** (k + 1) for k, s in enumerate(RESNET_STAGES)},
                "(outside stages)": lr * decay ** 5}
    for epoch in range(2):
        assert _lrs(trial) == pytest.approx({k: v * 0.1 ** epoch for k, v in expected.items()})
        metrics = trial.step()
        assert metrics["lr"] == pytest.approx(lr * 10 * 0.1 ** epoch)  # the head's
        assert _with_grad(trial) == {"head", *RESNET_STAGES}


def test_onecycle_gets_a_max_lr_per_group(shapes_root):
    trial = Trial(trial_config_for(shapes_root, epochs=1, lr=1e-2, lr_decay=0.1, lr_scheduler="onecycle"))
    max_lrs = [g["max_lr"] for g in trial.optimizer.param_groups]
    assert max_lrs == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-7])
    trial.step()
    lrs = [g["lr"] for g in trial.optimizer.param_groups]
    assert [a / b for a, b in zip(lrs, max_lrs)] == pytest.approx([lrs[0] / max_lrs[0]] * len(lrs))


@pytest.mark.parametrize("scheduler", ["cosine", "plateau", "onecycle"])
def test_gradual_unfreezing_thaws_a_stage_every_k_epochs(shapes_root, scheduler):
    lr, decay = 1e-3, 0.5
    config = trial_config_for(shapes_root, epochs=4, lr=lr, lr_decay=decay, freeze_depth="all", unfreeze_every=1,
                              lr_scheduler=scheduler, plateau_patience=0, batch_size=24)
    trial = Trial(config)
    assert trial.cache_info["feature_cache"] in ("built", "hit")  # valid while the whole backbone is frozen
    for epoch in range(4):
        trial.step()
        thawed = RESNET_STAGES[:epoch]
        assert _names(trial) == ["head", *thawed] + (["(outside stages)"] if len(thawed) == 5 else [])
        assert _with_grad(trial) == {"head", *thawed}
        assert [m.frozen_stages for m in backbones(trial.model)] == [5 - epoch]
        head_ratio = trial.optimizer.param_groups[0]["lr"] / lr
        for k, stage in enumerate(thawed):  # each thawed stage at its decayed LR, on the same schedule
            assert _lrs(trial)[stage] == pytest.approx(lr * decay ** (k + 1) * head_ratio, rel=1e-6)
        frozen = trial.model.backbone.layer1 if epoch < 4 else None
        if frozen is not None:
            assert not frozen.training and not frozen[0].bn1.training  # BatchNorm of frozen stages stays in eval
    assert trial.cache_info["feature_cache"] == "until epoch 1"
    assert trial.history[-1]["param_groups"] == 4


def test_resume_restores_the_thawed_stages_and_groups(shapes_root, tmp_path):
    config = trial_config_for(shapes_root, epochs=3, lr=1e-3, lr_decay=0.7, freeze_depth=0.6, unfreeze_every=1,
                              lr_scheduler="cosine", optimizer="adam")
    straight = fit(config)
    first = Trial(config)
    first.step(), first.step()
    first.save(tmp_path)
    resumed = Trial(config)
    assert _names(resumed) == ["head", "layer4", "layer3"]
    resumed.restore(tmp_path)
    assert _names(resumed) == _names(first) == ["head", "layer4", "layer3", "layer2"]
    assert _lrs(resumed) == pytest.approx(_lrs(first))
    assert ({n for n, p in resumed.model.named_parameters() if p.requires_grad} ==
            {n for n, p in first.model.named_parameters() if p.requires_grad})
    last = resumed.step()
    assert resumed.history[-1]["epoch"] == 3 and _names(resumed)[-1] == "layer1"
    assert last["train_loss"] == pytest.approx(straight[2]["train_loss"], rel=1e-5)
    assert last["val_acc"] == straight[2]["val_acc"]


def test_restore_refuses_a_checkpoint_from_another_unfreezing_plan(shapes_root, tmp_path):
    config = trial_config_for(shapes_root, epochs=2, freeze_depth="all", unfreeze_every=1, lr_decay=0.5)
    trial = Trial(config)
    trial.step(), trial.step()
    trial.save(tmp_path)
    other = Trial(config.replace(unfreeze_every=5))
    with pytest.raises(ValueError, match="frozen stages"):
        other.restore(tmp_path)


def test_ensemble_members_each_get_their_groups_and_thaw(shapes_root):
    config = trial_config_for(shapes_root, epochs=2, lr_decay=0.5, freeze_depth="all", unfreeze_every=1,
                              model={"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "logits"})
    trial = Trial(config)
    assert _names(trial) == ["head"]
    trial.step(), trial.step()
    assert _names(trial) == ["head", "members.0.layer4", "members.1.features.12"]
    assert [m.frozen_stages for m in backbones(trial.model)] == [4, 12]
    lrs = _lrs(trial)
    assert lrs["members.0.layer4"] == pytest.approx(lrs["members.1.features.12"])


def test_frozen_target():
    assert [frozen_target(3, e, 2) for e in range(8)] == [3, 3, 2, 2, 1, 1, 0, 0]
    assert frozen_target(3, 10, None) == 3


def test_leaderboard_shows_recipe_columns_only_when_used():
    import pandas as pd

    from tlsweep.report.leaderboard import CONFIG_COLUMNS, display_frame

    assert {"lr_decay", "head_lr_mult", "unfreeze_every", "preprocess"} <= set(CONFIG_COLUMNS)
    row = {"model": "m", "test_acc": 0.9, "test_acc_ci_low": 0.8, "test_acc_ci_high": 0.95, "val_acc": 0.9,
           "p_vs_best": float("nan"), "group": "best", "macro_f1": 0.9, "macro_f1_ci_low": 0.8,
           "macro_f1_ci_high": 1.0, "lr": 1e-3, "batch_size": 8, "freeze_depth": 0.0, "optimizer": "adam",
           "lr_scheduler": "none", "lr_decay": 1.0, "head_lr_mult": 1.0, "unfreeze_every": None,
           "preprocess": "squash", "epoch": 1, "epochs_trained": 1, "trials_run": 1, "trials_stopped": 0,
           "train_s": 1.0, "wall_s": 1.0, "total_params": 10, "trainable_params": 5, "train_images_per_s": 9.0,
           "latency_ms": 1.0}
    plain = display_frame(pd.DataFrame([row]))
    assert "lr decay" not in plain and "unfreeze every" not in plain and plain["preprocess"].tolist() == ["squash"]
    used = display_frame(pd.DataFrame([row, {**row, "model": "n", "lr_decay": 0.8, "unfreeze_every": 2}]))
    assert used["lr decay"].tolist() == ["1", "0.8"] and used["unfreeze every"].tolist() == ["-", "2"]
