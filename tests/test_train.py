import math

import pytest
import torch

from tlsweep.trial.loop import LR_SCHEDULERS, Trial, fit, load_checkpoint

from .conftest import trial_config_for


def test_trial_learns_shapes_well_above_chance(shapes_root):
    history = fit(trial_config_for(shapes_root, epochs=3, lr=1e-3, batch_size=8))
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert max(m["val_acc"] for m in history) >= 0.8  # 3 classes: chance is 0.33
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds", "images_per_s"):
        assert key in history[-1] and math.isfinite(history[-1][key])


def test_checkpoint_resume_continues_exactly(shapes_root, tmp_path):
    config = trial_config_for(shapes_root, epochs=2, lr_scheduler="step", step_size=1, optimizer="sgd")
    straight = fit(config)

    first = Trial(config)
    metrics = first.step()
    assert metrics["val_acc"] == straight[0]["val_acc"]
    first.save(tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True
    assert state["epoch"] == 1 and state["classes"] == ["circle", "square", "triangle"]

    resumed = Trial(config)
    resumed.restore(tmp_path)
    rest = list(resumed.run())
    assert [m["epoch"] for m in rest] == [2]
    assert rest[0]["lr"] == pytest.approx(straight[1]["lr"])
    assert rest[0]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-5)
    assert rest[0]["val_acc"] == straight[1]["val_acc"]


@pytest.mark.parametrize("scheduler", sorted(LR_SCHEDULERS))
def test_every_lr_scheduler_runs(shapes_root, scheduler):
    config = trial_config_for(shapes_root, epochs=2, lr_scheduler=scheduler, model={"name": "mobilenet_v3_small"},
                              step_size=1, plateau_patience=0)
    history = fit(config)
    assert len(history) == 2
    if scheduler in ("step", "cosine"):
        assert history[1]["lr"] < history[0]["lr"]
    if scheduler == "none":
        assert history[1]["lr"] == history[0]["lr"]


def test_diverging_trial_is_marked_and_stops(shapes_root):
    history = fit(trial_config_for(shapes_root, epochs=3, lr=1e12, optimizer="sgd", momentum=0.0))
    assert history[-1]["diverged"] is True and not any(m["diverged"] for m in history[:-1])
    assert len(history) == history[-1]["epoch"] < 3  # stopped at the diverged epoch, before the budget's end
    assert "training loss became" in history[-1]["error"]


def test_same_seed_same_metrics(shapes_root):
    config = trial_config_for(shapes_root, epochs=1, model={"name": "mobilenet_v3_small"})
    a, b = fit(config), fit(config)
    assert a[0]["train_loss"] == b[0]["train_loss"] and a[0]["val_acc"] == b[0]["val_acc"]


def test_linear_probe_optimizes_only_the_head(shapes_root):
    trial = Trial(trial_config_for(shapes_root, freeze_depth="all", epochs=1))
    before = {k: v.clone() for k, v in trial.model.backbone.state_dict().items()}
    trial.step()
    after = trial.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trial.trainable_params == sum(p.numel() for p in trial.model.head.parameters())
