"""Decoded-image and frozen-feature caches, and the fast paths, on CPU without Ray."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest
import torch

from tlsweep.config.sections import CacheConfig, DataConfig, ModelConfig
from tlsweep.data import load_splits
from tlsweep.data.cache import decoded as I
from tlsweep.data.cache import features as F
from tlsweep.data.cache.store import build_once, open_array
from tlsweep.data.sources import ImageList, Splits
from tlsweep.data.transforms import build_transform
from tlsweep.models import build_model
from tlsweep.trial.loop import TransformedDataset, Trial, load_checkpoint

from .conftest import trial_config_for


@pytest.fixture(scope="module")
def small(shapes_root):
    """12 train and 6 val images of the shapes set: enough to compare paths, cheap on a loaded CPU."""
    full = load_splits(DataConfig.model_validate({"root": str(shapes_root)}))

    def pick(ds, n):
        return ImageList([x for k in range(3) for x in [s for s in ds.samples if s[1] == k][:n]], full.classes)

    return Splits(full.classes, pick(full.train, 4), pick(full.val, 2), pick(full.test, 2))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cached(shapes_root, tmp_path, cache, **overrides):
    config = trial_config_for(shapes_root, **overrides)
    return config.replace(data=config.data.replace(cache=CacheConfig(**cache), cache_dir=str(tmp_path / "cache")))


def test_decoded_images_give_the_same_tensors_and_logits(shapes_root, tmp_path):
    splits = load_splits(DataConfig.model_validate({"root": str(shapes_root)}))
    size = 24  # the 32 px files are resized, so the cache must store exactly what the transform makes
    path = I.build_images(splits.val, size, tmp_path)
    cached = I.CachedImages(path, size)
    plain = TransformedDataset(splits.val, build_transform(size))
    assert len(cached) == len(plain) and cached.targets == plain.targets
    batch, labels = cached.__getitems__(list(range(len(cached))))
    expected = torch.stack([plain[i][0] for i in range(len(plain))])
    assert torch.equal(batch, expected) and torch.equal(cached[3][0], expected[3])
    assert labels.tolist() == plain.targets
    model = build_model(ModelConfig.model_validate({"name": "mobilenet_v3_small"}), 3).eval()
    with torch.no_grad():
        assert torch.allclose(model(batch), model(expected), atol=1e-6)
    augmented = I.CachedImages(path, size, "basic", train=True)
    x, _ = augmented.__getitems__([0, 1])
    assert x.shape == (2, 3, size, size) and x.dtype == torch.float32


def test_image_key_changes_with_size_and_file_content(shapes_root, tmp_path):
    splits = load_splits(DataConfig.model_validate({"root": str(shapes_root)}))
    key = I.image_key(splits.val, 32)
    assert key == I.image_key(load_splits(DataConfig.model_validate({"root": str(shapes_root)})).val, 32)
    assert key != I.image_key(splits.val, 24)
    file = splits.val.samples[0][0]
    stat = os.stat(file)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert I.image_key(splits.val, 32) != key
    finally:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cached_features_through_the_head_equal_the_full_model(shapes_root, tmp_path):
    splits = load_splits(DataConfig.model_validate({"root": str(shapes_root)}))
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate({"name": "resnet18", "head": {"hidden": [8]}}), 3, freeze_depth="all").eval()
    split = F.feature_split(model)
    assert split is not None and F.feature_split(build_model(ModelConfig.model_validate({"name": "resnet18"}), 3, 0.5)) is None
    data = TransformedDataset(splits.val, build_transform(32))
    path = F.build_features(tmp_path / "f", split, data, torch.device("cpu"))
    cached = F.FeatureSet(path)
    images = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        assert torch.allclose(split.head(cached.features), model(images), atol=1e-5)
    assert cached.targets == splits.val.targets


def test_feature_key_changes_with_weights_size_data_and_transform(shapes_root):
    torch.manual_seed(0)
    a = build_model(ModelConfig.model_validate({"name": "mobilenet_v3_small"}), 3, freeze_depth="all")
    b = build_model(ModelConfig.model_validate({"name": "mobilenet_v3_small"}), 3, freeze_depth="all")  # other random init
    sa, sb = F.feature_split(a), F.feature_split(b)
    wa, wb = F.weights_hash(sa.backbones), F.weights_hash(sb.backbones)
    assert wa != wb and wa == F.weights_hash(sa.backbones)
    base = F.feature_key(sa, wa, 32, "data", repr(build_transform(32)))
    assert base == F.feature_key(sa, wa, 32, "data", repr(build_transform(32)))
    assert base != F.feature_key(sb, wb, 32, "data", repr(build_transform(32)))
    assert base != F.feature_key(sa, wa, 64, "data", repr(build_transform(64)))
    assert base != F.feature_key(sa, wa, 32, "other", repr(build_transform(32)))
    assert base != F.feature_key(sa, wa, 32, "data", repr(build_transform(32, "flip", train=True)))
    assert base != F.feature_key(sa, wa, 32, "data", repr(build_transform(32)), precision="bf16")


@pytest.mark.parametrize("model", [{"name": "resnet18", "head": {"hidden": [16], "dropout": 0.2}},
                                   {"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "features",
                                    "head": {"hidden": [16]}}], ids=["resnet18-mlp", "ensemble-features"])
def test_linear_probe_trial_with_feature_cache_matches_the_uncached_trial(shapes_root, small, tmp_path, model):
    common = dict(freeze_depth="all", epochs=2, lr=3e-3, batch_size=8, model=model)
    trials, histories = [], []
    for cache in ({"features": "off", "images": "off"}, {"features": "auto"}, {"features": "auto"}):
        trials.append(Trial(_cached(shapes_root, tmp_path, cache, **common), splits=small))
        histories.append(list(trials[-1].run()))  # right after construction: same global RNG state
    plain, built, hit = trials
    assert [t.cache_info["feature_cache"] for t in trials] == ["off", "built", "hit"]
    for h in histories[1:]:
        assert [m["val_acc"] for m in h] == [m["val_acc"] for m in histories[0]]
        assert [m["train_loss"] for m in h] == pytest.approx([m["train_loss"] for m in histories[0]], abs=1e-4)
    hit.save(tmp_path / "ckpt")  # checkpoints stay full-model state dicts
    state = load_checkpoint(tmp_path / "ckpt" / "checkpoint.pt")
    assert state["model"].keys() == plain.model.state_dict().keys()
    plain.model.load_state_dict(state["model"])
    assert plain.evaluate()["val_acc"] == pytest.approx(histories[2][-1]["val_acc"])


def test_feature_cache_needs_frozen_backbone_and_no_augmentation(shapes_root, small, tmp_path):
    partial = Trial(_cached(shapes_root, tmp_path, {"features": "auto"}, freeze_depth=0.5), splits=small)
    augmented = _cached(shapes_root, tmp_path, {"features": "auto"}, freeze_depth="all")
    augmented = augmented.replace(data=augmented.data.replace(augment="flip"))
    forced = _cached(shapes_root, tmp_path, {"features": "on"}, freeze_depth="all")
    forced = forced.replace(data=forced.data.replace(augment="flip"))
    assert partial.cache_info == {"feature_cache": "off", "image_cache": "on",
                                  "images": partial.cache_info["images"], "input": "cpu"}
    assert partial.cache_info["images"] in ("built", "hit")
    assert Trial(augmented, splits=small).cache_info["feature_cache"] == "off"
    assert Trial(forced, splits=small).cache_info["feature_cache"] in ("built", "hit")


def _slow_build(path, log):
    def build(tmp):
        with open(log, "a") as f:
            f.write("build\n")
        time.sleep(0.5)
        np.save(tmp / "x.npy", np.arange(1000))
        return {"n": 1000}

    build_once(path, build)


def test_concurrent_builders_produce_one_valid_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    path, log = tmp_path / "cache" / "entry", tmp_path / "log"
    procs = [ctx.Process(target=_slow_build, args=(path, log)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert log.read_text().count("build") == 1
    assert open_array(path / "x.npy").sum() == sum(range(1000))
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry", "entry.lock"]  # no leftover temp folders


def test_fast_paths_on_cpu(shapes_root, small, tmp_path):
    config = _cached(shapes_root, tmp_path, {}, epochs=1, model={"name": "mobilenet_v3_small"},
                     performance={"precision": "bf16", "channels_last": True, "pin_memory": False})
    trial = Trial(config, splits=small)
    assert trial.fast.channels_last and not trial.fast.pin_memory
    assert next(trial.model.parameters()).dtype == torch.float32  # autocast, not a cast of the weights
    conv = trial.model.backbone.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    metrics = trial.step()
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["val_loss"])
    fp16 = Trial(_cached(shapes_root, tmp_path, {"features": "on"}, epochs=1, freeze_depth="all",
                         model={"name": "mobilenet_v3_small"}, performance={"precision": "fp16"}), splits=small)
    assert fp16.fast.scaler.is_enabled()
    assert np.isfinite(fp16.step()["train_loss"])
    fp16.save(tmp_path / "fp16")
    assert load_checkpoint(tmp_path / "fp16" / "checkpoint.pt")["scaler"]["scale"] > 0


def test_spec_cache_and_performance_sections(spec_dict):
    from tlsweep.config.spec import SpecError, parse_spec

    spec_dict["data"].update(cache={"images": "off", "features": "on"}, cache_dir="/tmp/c")
    spec_dict["performance"] = {"precision": "bf16", "channels_last": True, "compile": False}
    config = parse_spec(spec_dict).plan().trial_config({"model": "resnet18"})
    assert config.data.cache.to_dict() == {"images": "off", "features": "on"} and config.data.cache_dir == "/tmp/c"
    assert config.performance.to_dict() == {"precision": "bf16", "channels_last": True, "pin_memory": "auto",
                                            "compile": False, "input": "auto", "cuda_tuning": True}
    spec_dict["performance"] = {"precision": "fp8"}
    spec_dict["data"]["cache"] = {"image": "on"}
    with pytest.raises(SpecError) as err:
        parse_spec(spec_dict)
    text = str(err.value)
    assert "performance.precision" in text and "data.cache.image" in text and "did you mean 'images'" in text
