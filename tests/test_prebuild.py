"""Caches built before the trials (``tlsweep.sweep.prebuild``): which entries a sweep's trials will read, built
once, then found by the trials."""

import torch

from tlsweep.config.spec import parse_spec
from tlsweep.sweep.prebuild import build_caches, feature_jobs
from tlsweep.trial.loop import Trial


def test_feature_jobs_are_the_fully_frozen_models_without_augmentation(spec_dict):
    spec_dict["models"] = ["resnet18", {"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "features"}]
    spec_dict["search"]["freeze_depth"] = {"choice": [0.5, "all"]}
    spec_dict["data"]["augment"] = "none"
    plan = parse_spec(spec_dict).plan()
    assert feature_jobs(plan) == [("resnet18", "all"), ("resnet18+mobilenet_v3_small-features", "all")]
    spec_dict["data"]["augment"] = "flip"
    assert feature_jobs(parse_spec(spec_dict).plan()) == []
    spec_dict["data"]["cache"] = {"features": "on"}
    assert len(feature_jobs(parse_spec(spec_dict).plan())) == 2
    spec_dict["search"]["freeze_depth"] = 0.5
    assert feature_jobs(parse_spec(spec_dict).plan()) == []


def test_built_before_then_every_trial_hits(spec_dict, tmp_path):
    torch.set_num_threads(1)
    spec_dict["models"] = ["mobilenet_v3_small"]
    spec_dict["search"].update(freeze_depth="all", batch_size=16)
    spec_dict["data"].update(augment="none", cache_dir=str(tmp_path / "cache"),
                             image_size_schedule=None)
    plan = parse_spec(spec_dict).plan()
    first = build_caches(plan)
    assert first["entries"] == {"train@32": "built", "val": "built", "features:mobilenet_v3_small": "built"}
    assert build_caches(plan)["entries"] == {"train@32": "hit", "val": "hit", "features:mobilenet_v3_small": "hit"}
    sampled = {"model": "mobilenet_v3_small", "lr": 1e-3, "batch_size": 16, "optimizer": "adam",
               "lr_scheduler": "none", "freeze_depth": "all"}
    assert Trial(plan.trial_config(sampled), device="cpu").cache_info["feature_cache"] == "hit"
    unfrozen = plan.trial_config({**sampled, "freeze_depth": 0.0})
    assert Trial(unfrozen, device="cpu").cache_info["images"] == "hit"


def test_latency_is_measured_before_the_trials_and_read_by_them(spec_dict, tmp_path):
    import json

    from tlsweep.sweep.trainable import trial_latency
    from tlsweep.trial import latency

    torch.set_num_threads(1)
    spec_dict["models"] = ["mobilenet_v3_small"]
    spec_dict["objectives"] = [{"metric": "val_acc", "mode": "max"}, "latency_ms"]
    spec_dict["searcher"] = {"type": "optuna", "seed": 0}
    spec_dict["data"].update(cache_dir=str(tmp_path / "cache"), cache={"images": "off", "features": "off"})
    plan = parse_spec(spec_dict).plan()
    entries = build_caches(plan)["entries"]
    assert entries["latency:mobilenet_v3_small"].endswith("ms")
    assert len(list((tmp_path / "cache" / "latency").glob("*.json"))) == 1
    threads = int(plan.resources_of("mobilenet_v3_small").cpu)
    torch.set_num_threads(threads)  # what the trial's worker sets
    trial = Trial(plan.trial_config({"model": "mobilenet_v3_small", "lr": 1e-3, "batch_size": 8,
                                     "freeze_depth": 0.0}), device="cpu")
    path = latency.cache_file(trial.config.model, len(trial.classes), trial.config.data.image_size,
                              trial.device, trial.config.performance, trial.config.data)
    stored = json.loads(path.read_text())["latency_ms"]  # the trial's key is the one the prebuild measured
    assert trial_latency(trial) == stored
