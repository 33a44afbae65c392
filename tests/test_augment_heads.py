"""Sweep-file augmentation policies, input-size schedules and searchable heads (Ray-free)."""
import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from tlsweep.config.sections import HeadConfig, ModelConfig
from tlsweep.config.spec import SpecError, parse_spec
from tlsweep.data.augment import AugmentError, build_op, build_policy, check_policy
from tlsweep.data.transforms import build_transform
from tlsweep.models.heads import build_head
from tlsweep.trial.loop import Trial

from .conftest import trial_config_for


def spec(shapes_root, **changes):
    data = {"name": "t", "data": {"root": str(shapes_root), "image_size": 32}, "models": ["resnet18"],
            "weights": "none", "epochs": 3, "search": {"lr": 1e-3}}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_spec(data)


def test_unknown_op_names_the_allowed_ops():
    with pytest.raises(AugmentError, match=r"augment\[1\]: unknown augmentation op 'ColourJitter' "
                                           r"\(did you mean 'ColorJitter'\?\); allowed: .*RandomRot90"):
        check_policy([{"RandomRot90": {}}, {"ColourJitter": {"brightness": 0.2}}])


def test_bad_kwargs_name_the_op(shapes_root):
    with pytest.raises(AugmentError, match="RandomAffine: unknown argument.*degree; allowed: degrees"):
        check_policy([{"RandomAffine": {"degree": 10}}])
    with pytest.raises(SpecError, match=r"data.augment: augment\[0\] ColorJitter\(hue=0.9\)"):
        spec(shapes_root, data={"augment": [{"ColorJitter": {"hue": 0.9}}]})
    with pytest.raises(SpecError, match="data.augment: unknown augment policy 'flips'"):
        spec(shapes_root, data={"augment": "flips"})


def test_strength_scales_magnitudes_and_p_wraps_in_random_apply():
    jitter = build_op("ColorJitter", {"brightness": 0.2, "hue": [-0.1, 0.1]}, strength=2.0)
    assert jitter.brightness == pytest.approx((0.6, 1.4)) and jitter.hue == pytest.approx((-0.2, 0.2))
    assert build_op("ColorJitter", {"brightness": 0.2}, strength=0.0).brightness is None  # off
    affine = build_op("RandomAffine", {"degrees": 45, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "p": 0.5},
                      strength=0.5)
    assert isinstance(affine, v2.RandomApply) and affine.p == 0.5
    inner = affine.transforms[0]
    assert inner.degrees == [-22.5, 22.5] and inner.translate == [0.05, 0.05] and inner.scale == [0.95, 1.05]
    crop = build_op("RandomResizedCrop", {"scale": [0.6, 1.0]}, strength=0.5, size=48)
    assert crop.size == (48, 48) and crop.scale == pytest.approx([0.8, 1.0])


def test_random_rot90_gives_the_four_rotations():
    x = torch.arange(16, dtype=torch.uint8).view(1, 4, 4).expand(3, 4, 4).contiguous()
    rot = build_policy(["RandomRot90"])[0]
    torch.manual_seed(0)
    seen = {tuple(rot(v2.functional.to_image(x)).flatten().tolist()) for _ in range(40)}
    expected = {tuple(torch.rot90(x, k, dims=(1, 2)).flatten().tolist()) for k in range(4)}
    assert seen == expected


def test_list_policy_transform_runs_on_pil(shapes_root):
    from PIL import Image

    img = Image.open(next((shapes_root / "train" / "circle").iterdir())).convert("RGB")
    policy = [{"ColorJitter": {"brightness": 0.2, "contrast": 0.2, "p": 0.5}},
              {"RandomAffine": {"degrees": 45, "translate": [0.06, 0.06], "scale": [0.9, 1.1]}},
              {"ElasticTransform": {"alpha": 30.0, "sigma": 5.0}}, {"RandomRot90": {"p": 0.5}}]
    out = build_transform(24, policy, train=True, strength=1.5)(img)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32


def test_size_schedule_spec_and_train_size(shapes_root):
    plain = spec(shapes_root, data={"image_size_schedule": [{"epochs": 1, "size": 16}, {"size": 32}]}).plan()
    assert [plain.data.train_size(e) for e in range(3)] == [16, 32, 32]
    implicit = parse_spec({"name": "t", "data": {"root": str(shapes_root),
                                                 "image_size_schedule": [{"epochs": 2, "size": 96}, {"size": 160}]},
                           "models": ["resnet18"]})
    assert implicit.data.image_size == 160
    with pytest.raises(SpecError, match="ends at size 40 but image_size is 32"):
        spec(shapes_root, data={"image_size_schedule": [{"epochs": 1, "size": 16}, {"size": 40}]})
    with pytest.raises(SpecError, match="spends 3 epochs before image_size 32, but epochs is 3"):
        spec(shapes_root, data={"image_size_schedule": [{"epochs": 3, "size": 16}]})
    with pytest.raises(SpecError, match="only the last image_size_schedule phase may omit epochs"):
        spec(shapes_root, data={"image_size_schedule": [{"size": 16}, {"epochs": 1, "size": 24}]})


def test_trial_rebuilds_train_loader_per_phase(shapes_root):
    torch.set_num_threads(1)
    data = {"root": str(shapes_root), "image_size": 32, "augment": [{"RandomRot90": {}}],
            "image_size_schedule": [{"epochs": 1, "size": 16}, {"size": 32}]}
    trial = Trial(trial_config_for(shapes_root, data=data, epochs=2, model={"name": "mobilenet_v3_small"},
                                   batch_size=24, augment_strength=0.5))
    history = list(trial.run())
    assert [h["train_size"] for h in history] == [16, 32]
    assert next(iter(trial.val_loader))[0].shape[-1] == 32


def test_head_dropout_lists_are_checked(shapes_root):
    with pytest.raises(SpecError, match=r"heads.big: head dropout takes one rate, or one per layer: 3 .* or 2 .*got 1"):
        spec(shapes_root, heads={"big": {"hidden": [64, 32], "dropout": [0.5]}})
    with pytest.raises(SpecError, match=r"head dropout rates must be within \[0, 1\)"):
        spec(shapes_root, models=[{"name": "resnet18", "head": {"hidden": [8], "dropout": [1.0]}}])
    with pytest.raises(SpecError, match="search.head: unknown head 'bigg' \\(did you mean 'big'\\?\\)"):
        spec(shapes_root, heads={"big": {"hidden": [64]}}, search={"head": {"choice": ["linear", "bigg"]}})


def test_seed_head_layers_with_one_rate_per_hidden_layer():
    head = build_head(2048, 2, hidden=(1024, 256), dropout=(0.5, 0.3))
    kinds = [(type(m).__name__, getattr(m, "p", getattr(m, "out_features", None))) for m in head]
    assert kinds == [("Dropout", 0.5), ("Linear", 1024), ("ReLU", None), ("Dropout", 0.3), ("Linear", 256),
                     ("ReLU", None), ("Linear", 2)]


def test_searched_head_reaches_the_trial_config(shapes_root):
    from tlsweep.config.space import build_groups

    s = spec(shapes_root, heads={"mlp": {"hidden": [16], "dropout": 0.2, "norm": "layernorm"}},
             models=["resnet18", {"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "features"}],
             search={"head": {"grid": ["mlp", "linear"]}, "head_dropout": {"uniform": [0.0, 0.4]}})
    plain = s.plan()
    groups = build_groups(plain)
    assert sorted((g.fixed["model"], g.fixed["head"]) for g in groups) == sorted(
        (m, h) for m in ("resnet18", "resnet18+mobilenet_v3_small-features") for h in ("mlp", "linear"))
    cfg = plain.trial_config({"model": "resnet18", "head": "mlp", "head_dropout": 0.1})
    assert cfg.model.head == HeadConfig(hidden=(16,), dropout=0.1, norm="layernorm")
    assert plain.models_table["resnet18"].head is None  # the table itself is untouched
    fused = plain.trial_config({"model": "resnet18+mobilenet_v3_small-features", "head": None, "head_dropout": 0.3})
    assert fused.model.head.hidden == (1024, 512) and fused.model.head.dropout == 0.3
    assert ModelConfig(name="resnet18").with_head("linear", None, {}).head == HeadConfig()
    from tlsweep.models import build_model

    model = build_model(cfg.model, 3)
    assert isinstance(model.head[0], nn.LayerNorm) and model.head[1].p == 0.1
