"""A real Ray sweep on fake GPUs (``num_gpus=2`` on this CPU machine): each trial sees the GPU ids Ray gave it,
a trial given no GPU sees none, ``gpu: auto`` gives a share, and the image cache is built before any trial."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tlsweep.config.spec import parse_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake_gpu_ray():
    import os

    import ray

    from tlsweep.sweep.runner import init_ray
    from tlsweep.trial.gpus import ALLOW_CPU_FALLBACK_ENV

    if ray.is_initialized():
        ray.shutdown()
    before = os.environ.get(ALLOW_CPU_FALLBACK_ENV)
    os.environ[ALLOW_CPU_FALLBACK_ENV] = "1"  # Ray's fake GPUs have no CUDA behind them: train on the CPU
    init_ray(None, num_cpus=2, num_gpus=2)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop(ALLOW_CPU_FALLBACK_ENV, None)
    else:
        os.environ[ALLOW_CPU_FALLBACK_ENV] = before


def test_trials_see_the_gpus_ray_gave_them_and_read_prebuilt_caches(fake_gpu_ray, shapes_root, tmp_path):
    from tlsweep.sweep.runner import run_sweep

    spec = parse_spec({
        "name": "fake_gpus", "weights": "none", "epochs": 1, "num_samples": 1, "seed": 0,
        "data": {"root": str(shapes_root), "image_size": 32, "augment": "none",
                 "cache": {"images": "on", "features": "off"}, "cache_dir": str(tmp_path / "cache")},
        "models": [{"name": "mobilenet_v3_small", "id": "whole", "resources": {"gpu": 1}},
                   {"name": "mobilenet_v3_small", "id": "none", "resources": {"gpu": 0}},
                   {"name": "mobilenet_v3_small", "id": "auto"}],
        "resources": {"cpu": 1, "gpu": "auto"},
        "search": {"lr": 1e-3, "batch_size": 16, "optimizer": "adam", "lr_scheduler": "none"},
        "scheduler": {"type": "fifo"}, "searcher": {"type": "grid"},
        "storage": str(tmp_path / "results" / "fake_gpus")})
    result = run_sweep(spec)
    trials = result.trials.set_index("model")
    assert set(trials["status"]) == {"finished"}, result.trials[["model", "status", "error"]]
    seen = {}
    for model, row in trials.iterrows():
        progress = pd.read_csv(Path(row["path"]) / "progress.csv", keep_default_na=False, dtype=str)
        seen[model] = progress.iloc[0]
    for model in ("whole", "auto"):
        ids = seen[model]["gpu_ids"]
        assert ids in ("0", "1"), (model, ids)
        assert seen[model]["cuda_visible_devices"] == ids
    assert seen["none"]["gpu_ids"] == "" and seen["none"]["cuda_visible_devices"] == ""
    assert {s["device"] for s in seen.values()} == {"cpu"}  # no CUDA behind the fake GPUs
    # caches: built once before the first trial started; every trial found them ready
    assert {s["cache_images"] for s in seen.values()} == {"hit"}
    metas = list((tmp_path / "cache" / "images").glob("*/meta.json"))
    assert len(metas) == 2  # train and val
    first_start = float(trials["started_at"].min())
    assert max(m.stat().st_mtime for m in metas) <= first_start
    summary = pd.read_csv(Path(result.storage) / "summary.csv", dtype={"trial_id": str})
    assert (summary["setup_s"] > 0).all() and (summary["start_s"] >= 0).all()
    assert (summary["setup_model_s"] > 0).all() and summary["import_s"].max() > 0  # a fresh worker imports
    stored = json.loads((Path(result.storage) / "tlsweep_spec.json").read_text())
    assert stored["resources"]["gpu"] == "auto"  # the file's intent is kept; the number is per cluster
