"""The weights' own preprocessing: metadata, resize + centre crop, cache keys, resolution in trial configs;
edge validation of the fine-tuning dimensions."""

import textwrap

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.functional import InterpolationMode

from tlsweep.config.plan import TrialConfig
from tlsweep.config.sections import DataConfig, ModelConfig, resolve_mode
from tlsweep.config.spec import SpecError, load_spec, parse_spec
from tlsweep.data import load_splits
from tlsweep.data.cache import decoded as I
from tlsweep.data.preprocess import preprocess_for
from tlsweep.data.transforms import TransformedDataset, build_transform
from tlsweep.models import IMAGENET, preprocessing


def weights_preprocess(name, weights="imagenet"):
    return preprocessing(ModelConfig.model_validate({"name": name, "weights": weights}), "weights")


def test_weights_metadata_gives_ratio_interpolation_and_stats():
    import torchvision.models as tvm

    for name, enum, tag in (("resnet50", "ResNet50_Weights", "IMAGENET1K_V2"),
                            ("efficientnet_b0", "EfficientNet_B0_Weights", "IMAGENET1K_V1")):
        ref = getattr(tvm, enum)[tag].transforms()
        pre = weights_preprocess(name, tag)
        assert pre.resize_ratio == pytest.approx(ref.resize_size[0] / ref.crop_size[0])
        assert pre.interpolation == ref.interpolation.value and pre.mean == tuple(ref.mean)
    assert weights_preprocess("resnet50", "IMAGENET1K_V2").resize_ratio == pytest.approx(232 / 224)
    assert weights_preprocess("efficientnet_b0").interpolation == "bicubic"
    assert weights_preprocess("resnet50", "imagenet") == weights_preprocess("resnet50", "DEFAULT")


def test_weights_preprocess_resizes_the_shorter_side_then_centre_crops():
    image = Image.new("RGB", (90, 60))
    image.paste((255, 0, 0), (0, 0, 10, 60))  # a red strip at the left edge: cropped away, not squashed
    pre = weights_preprocess("efficientnet_b0")
    x = build_transform(32, pre=pre)(image)
    assert x.shape == (3, 32, 32)
    side = round(32 * pre.resize_ratio)
    expected = v2.Compose([v2.ToImage(), v2.Resize(side, InterpolationMode.BICUBIC, antialias=True),
                           v2.CenterCrop(32), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(pre.mean, pre.std)])(image)
    assert torch.equal(x, expected)
    squashed = build_transform(32)(image)
    red = (1 - IMAGENET.mean[0]) / IMAGENET.std[0]
    assert squashed[0, :, 0].mean() == pytest.approx(red, rel=0.05) and x[0, :, 0].max() < red / 2


def test_decoded_image_cache_keys_and_tensors_follow_the_preprocessing(shapes_root, tmp_path):
    splits = load_splits(DataConfig.model_validate({"root": str(shapes_root)}))
    pre = weights_preprocess("efficientnet_b0")
    assert I.image_key(splits.val, 24, pre) != I.image_key(splits.val, 24)
    path = I.build_images(splits.val, 24, tmp_path, pre=pre)
    cached = I.CachedImages(path, 24, pre=pre)
    plain = TransformedDataset(splits.val, build_transform(24, pre=pre))
    batch, _ = cached.__getitems__(list(range(len(cached))))
    assert torch.equal(batch, torch.stack([plain[i][0] for i in range(len(plain))]))


def test_mode_defaults_to_weights_for_pretrained_models_only():
    data, squash = DataConfig(root="x"), DataConfig(root="x", preprocess="squash")
    assert resolve_mode(data, ModelConfig(name="resnet18", weights="imagenet")) == "weights"
    assert resolve_mode(data, ModelConfig(name="resnet18", weights="none")) == "squash"
    assert resolve_mode(squash, ModelConfig(name="resnet18", weights="imagenet")) == "squash"
    assert resolve_mode(squash, ModelConfig(name="resnet18", weights="imagenet", preprocess="weights")) == "weights"
    old = {"model": {"name": "resnet18", "weights": "imagenet"}, "data": {"root": "x"}}  # an older checkpoint
    assert preprocess_for(TrialConfig.from_dict(old)) == IMAGENET
    assert preprocess_for(TrialConfig.from_dict({**old, "preprocess": "weights"})).resize_ratio


def test_trial_config_carries_the_resolved_mode(spec_dict):
    spec_dict["models"] = [{"name": "resnet18", "weights": "IMAGENET1K_V1"}, {"name": "mobilenet_v2", "id": "scratch"}]
    plan = parse_spec(spec_dict).plan()
    assert plan.trial_config({"model": "resnet18", "lr": 1e-3}).preprocess == "weights"
    assert plan.trial_config({"model": "scratch", "lr": 1e-3}).preprocess == "squash"
    spec_dict["data"]["preprocess"] = "squash"
    plan = parse_spec(spec_dict).plan()
    assert plan.trial_config({"model": "resnet18", "lr": 1e-3}).preprocess == "squash"


SWEEP = textwrap.dedent("""\
    name: t
    data:
      root: data/x
      preprocess: weights
    models: [resnet18]
    search:
      lr_decay: {grid: [1, 0.8]}
      head_lr_mult: 10
      unfreeze_every: 2
    """)


@pytest.mark.parametrize("change, fragment, message, line", [
    ("  preprocess: weights", "  preprocess: crop", "'weights' or 'squash'", 4),
    ("lr_decay: {grid: [1, 0.8]}", "lr_decay: {grid: [1, 0]}", "decay in (0, 1]", 7),
    ("lr_decay: {grid: [1, 0.8]}", "lr_decay: {uniform: [0.5, 1.5]}", "decay in (0, 1]", 7),
    ("head_lr_mult: 10", "head_lr_mult: 0", "must be > 0", 8),
    ("unfreeze_every: 2", "unfreeze_every: 0", "must be >= 1", 9),
    ("unfreeze_every: 2", "unfreeze_every: 1.5", "whole number", 9),
])
def test_fine_tuning_dimensions_are_validated_at_the_edge(tmp_path, change, fragment, message, line):
    (tmp_path / "s.yaml").write_text(SWEEP)
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.data.preprocess == "weights" and spec.search.unfreeze_every == 2
    (tmp_path / "s.yaml").write_text(SWEEP.replace(change, fragment))
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "s.yaml")
    assert message in str(info.value) and f"line {line}:" in str(info.value)


def test_a_model_can_override_the_data_preprocess(spec_dict):
    spec_dict["data"]["preprocess"] = "weights"
    spec_dict["models"] = [{"name": "resnet18", "weights": "IMAGENET1K_V1", "id": "w"},
                           {"name": "resnet18", "weights": "IMAGENET1K_V1", "preprocess": "squash", "id": "s"}]
    plan = parse_spec(spec_dict).plan()
    assert [plan.trial_config({"model": m}).preprocess for m in ("w", "s")] == ["weights", "squash"]
