"""timm backbones (weights: none, 32 px): registry entries from group_matcher/feature_info, training with
discriminative LRs and gradual unfreezing, Grad-CAM, listing, spec validation, offline weights."""

import pytest
import torch

from tlsweep.config.sections import ModelConfig
from tlsweep.config.spec import SpecError, parse_spec
from tlsweep.models import build_model, get_backbone, list_backbones
from tlsweep.models import timm_models as T
from tlsweep.models.weights import WeightsError
from tlsweep.trial.loop import Trial

from .conftest import trial_config_for

CNN, VIT = "timm/convnext_atto", "timm/vit_tiny_patch16_224"


def test_entries_come_from_group_matcher_and_feature_info():
    cnn, vit = get_backbone(CNN), get_backbone(VIT)
    assert cnn.stages == ("stem", "stages.0", "stages.1", "stages.2", "stages.3+head")  # head.norm joins the last
    assert cnn.cam_layer == "stages.3" and cnn.reshape is None and cnn.source == "timm"
    assert vit.stages[0] == "cls_token+pos_embed+patch_embed" and vit.stages[-1] == "blocks.11+norm"
    assert vit.num_stages == 13 and vit.cam_layer == "blocks.11" and vit.reshape == "vit"


@pytest.mark.parametrize("name", [CNN, VIT])
def test_every_parameter_is_in_one_stage_or_the_head(name):
    model = build_model(ModelConfig.model_validate({"name": name, "weights": "none"}), 3)
    staged = [id(p) for members in model.stages() for m in members
              for p in ([m] if isinstance(m, torch.nn.Parameter) else m.parameters())]
    assert len(staged) == len(set(staged)) == len(list(model.backbone.parameters()))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name, first_thawed", [(CNN, "stages.3+head"), (VIT, "blocks.11+norm")])
def test_timm_trial_trains_with_decayed_groups_and_unfreezing(shapes_root, name, first_thawed):
    config = trial_config_for(shapes_root, model={"name": name, "weights": "none"}, epochs=4, lr=1e-3,
                              lr_decay=0.5, head_lr_mult=2.0, freeze_depth="all", unfreeze_every=1,
                              lr_scheduler="cosine", batch_size=24)
    trial = Trial(config)
    assert [g["name"] for g in trial.optimizer.param_groups] == ["head"]
    first = trial.step()
    assert all(p.grad is None for p in trial.model.backbone.parameters())
    trial.step()
    groups = {g["name"]: g for g in trial.optimizer.param_groups}
    assert list(groups) == ["head", first_thawed]
    assert groups[first_thawed]["lr"] / groups["head"]["lr"] == pytest.approx(0.5 / 2.0)
    last = [p for m in trial.model.stages()[-1] for p in ([m] if isinstance(m, torch.nn.Parameter) else m.parameters())]
    assert all(p.grad is not None for p in last)
    assert all(p.grad is None for m in trial.model.stages()[0]
               for p in ([m] if isinstance(m, torch.nn.Parameter) else m.parameters()))
    assert first["train_loss"] == first["train_loss"] and trial.history[-1]["val_acc"] >= 0


def test_grad_cam_on_a_timm_vit():
    from tlsweep.report.cam import cam_layer, grad_cam

    model = build_model(ModelConfig.model_validate({"name": VIT, "weights": "none"}), 3).eval()
    layer = cam_layer(model, 32)
    masks = grad_cam(model, torch.randn(2, 3, 32, 32), layer.module, layer.reshape)
    assert masks.shape == (2, 32, 32)


def test_listing_and_spec_validation(spec_dict):
    names = list_backbones("timm/*convnext*")
    assert CNN in names and all(n.startswith("timm/") and "convnext" in n for n in names)
    spec_dict["models"] = [CNN, {"ensemble": [VIT, "resnet18"], "fusion": "mean"}]
    assert parse_spec(spec_dict).model_labels()[0] == CNN
    spec_dict["models"] = ["timm/convnext_atoo"]
    with pytest.raises(SpecError, match="did you mean 'timm/convnext_atto'"):
        parse_spec(spec_dict)


def test_offline_weights_error_names_the_file_and_import_loads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsError) as info:
        build_model(ModelConfig.model_validate({"name": CNN, "weights": "imagenet"}), 3)
    message = str(info.value)
    assert "convnext_atto.d2_in1k" in message and str(tmp_path / "torch") in message
    assert "tlsweep weights import FILE --timm convnext_atto.d2_in1k" in message

    import timm

    source = timm.create_model("convnext_atto")  # stand-in for the published file: same architecture and keys
    torch.save(source.state_dict(), tmp_path / "convnext_atto.pth")
    target = T.import_timm_weights(tmp_path / "convnext_atto.pth", "convnext_atto.d2_in1k")
    assert target.parent == tmp_path / "torch" / "hub" / "checkpoints" / "timm"
    model = build_model(ModelConfig.model_validate({"name": CNN, "weights": "imagenet"}), 3)
    assert torch.equal(model.backbone.stem[0].weight, source.stem[0].weight)

    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="does not load into timm/convnext_atto"):
        T.import_timm_weights(tmp_path / "wrong.pth", "convnext_atto.d2_in1k")
