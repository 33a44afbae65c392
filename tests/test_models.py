import pytest
import torch

from tlsweep.config.sections import ModelConfig
from tlsweep.models import build_model, get_backbone, list_backbones
from tlsweep.models.ensemble import Ensemble
from tlsweep.models.transfer import count_parameters, resolve_path

SEED_BACKBONES = ["resnet18", "resnet50", "vgg16", "densenet121", "densenet161", "googlenet", "mobilenet_v2",
                  "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_75", "shufflenet_v2_x2_0",
                  "efficientnet_b0", "convnext_tiny", "swin_t", "vit_b_16", "wide_resnet50_2"]


def test_registry_has_every_seed_backbone_and_globs():
    assert set(SEED_BACKBONES) <= set(list_backbones())
    assert list_backbones("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    with pytest.raises(KeyError, match="unknown backbone 'resnet19'"):
        get_backbone("resnet19")


@pytest.mark.parametrize("name", SEED_BACKBONES)
def test_backbone_builds_trains_and_freezes(name):
    torch.manual_seed(0)
    entry = get_backbone(name)
    model = build_model(ModelConfig.model_validate({"name": name, "weights": "none"}), num_classes=3)
    size = entry.input_size if entry.fixed_input_size else 64
    model.train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3)
    out.logsumexp(1).sum().backward()
    assert any(p.grad is not None for p in model.backbone.parameters())

    trainable = []
    for depth in (0.0, 0.5, "all"):
        model.freeze(depth)
        trainable.append(count_parameters(model)[1])
    assert trainable[0] == count_parameters(model)[0]  # depth 0 fine-tunes everything
    assert trainable[0] > trainable[1] > trainable[2]
    assert trainable[2] == sum(p.numel() for p in model.head.parameters())  # linear probe: head only
    assert isinstance(resolve_path(model.backbone, entry.cam_layer), torch.nn.Module)
    assert model.feature_dim == model.head.in_features


def test_frozen_stages_keep_batchnorm_statistics():
    model = build_model(ModelConfig.model_validate({"name": "resnet18", "weights": "none"}), 3, freeze_depth="all")
    model.train()
    before = model.backbone.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert not model.backbone.training
    assert torch.equal(before, model.backbone.bn1.running_mean)


def test_mlp_head_from_config():
    model = build_model(ModelConfig.model_validate({"name": "resnet18", "head": {"hidden": [64, 32], "dropout": [0.5, 0.3, 0.0],
                                                      "norm": "layernorm"}}), 5)
    layers = [type(m).__name__ for m in model.head]
    assert layers == ["LayerNorm", "Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("fusion", ["logits", "features", "mean"])
def test_ensembles(fusion):
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate({"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": fusion}), 4, freeze_depth="all")
    assert isinstance(model, Ensemble)
    x = torch.randn(3, 3, 32, 32)
    model.train()
    out = model(x)
    assert out.shape == (3, 4)
    if fusion == "mean":
        assert torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-5)
        model.eval()
        with torch.no_grad():
            probs = [m(x).softmax(1) for m in model.members]
            assert torch.allclose(model(x).exp(), (probs[0] + probs[1]) / 2, atol=1e-5)
    out.sum().backward()
    # freeze depth applies to both members: no backbone parameter gets a gradient
    for member in model.members:
        assert all(p.grad is None for p in member.backbone.parameters())
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == ({"members", "combiner"} if fusion == "logits" else
                         {"projections", "combiner"} if fusion == "features" else {"members"})
