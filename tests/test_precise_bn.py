"""Precise BN before evaluation (tlsweep.trial.loop.Trial.precise_bn) and the registry's BatchNorm momentum facts."""

import pytest
import torch
from torch import nn

from tlsweep.models.backbones import get_backbone
from tlsweep.trial.loop import PRECISE_BN_AUTO, Trial, precise_bn_images

from .conftest import trial_config_for


def norms(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "mnasnet0_75", "convnext_tiny"])
def test_registry_bn_momentum_is_torchvisions(name):
    import torchvision.models as tvm

    momenta = {round(m.momentum, 6) for m in norms(getattr(tvm, name)(weights=None))}
    fact = get_backbone(name).bn_momentum
    assert momenta == (set() if fact is None else {round(fact, 6)})


def test_auto_is_on_only_for_slow_momentum_backbones(shapes_root):
    config = lambda name, **kw: trial_config_for(  # noqa: E731
        shapes_root, model={"name": name, "weights": "none"}, model_label=name, **kw)
    assert precise_bn_images(config("mobilenet_v3_small")) == PRECISE_BN_AUTO
    assert precise_bn_images(config("resnet18")) == 0
    assert precise_bn_images(config("resnet18", precise_bn=40)) == 40
    assert precise_bn_images(config("mobilenet_v3_small", precise_bn=0)) == 0


def test_recomputes_statistics_of_training_norms_only(shapes_root):
    config = trial_config_for(shapes_root, model={"name": "mobilenet_v3_small", "weights": "none"},
                              model_label="mobilenet_v3_small", freeze_depth=0.5, epochs=1, precise_bn=40)
    trial = Trial(config)
    frozen = [m for m in norms(trial.model) if not any(p.requires_grad for p in m.parameters())]
    training = [m for m in norms(trial.model) if all(p.requires_grad for p in m.parameters())]
    assert frozen and training
    before = {id(m): m.running_mean.clone() for m in frozen}
    metrics = trial.step()
    assert metrics["precise_bn_images"] >= 40
    assert all(torch.equal(m.running_mean, before[id(m)]) for m in frozen)  # frozen stages keep their statistics
    assert all(m.momentum == 0.01 for m in training)  # momentum put back
    batches = -(-40 // 16)  # ceil: whole batches of 16 until 40 images are seen
    assert all(int(m.num_batches_tracked) == batches for m in training)  # reset, then averaged over those


def test_off_and_for_cached_linear_probes_nothing_changes(shapes_root):
    probe = Trial(trial_config_for(shapes_root, model={"name": "mobilenet_v3_small", "weights": "none"},
                                   model_label="mobilenet_v3_small", freeze_depth="all", epochs=1))
    assert probe.precise_bn() == 0
    off = Trial(trial_config_for(shapes_root, epochs=1, precise_bn=0))
    assert off.precise_bn() == 0
