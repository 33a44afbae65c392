"""Benchmark 2: a linear-probe trial with the frozen-feature cache vs without (target ≥ 20× per trial once
the cache exists, val accuracy equal within 0.5 points), and the cache-building trial vs one uncached trial.

Data: the generated shapes set at 96 px (JPEG files), resnet18 with ``weights: none``, CPU.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from tlsweep.data.synthetic import make_shapes_dataset
from tlsweep.trial.loop import Trial

WORK = Path(__file__).resolve().parent / "_work" / "feature_cache"


def _config(root: Path, cache: dict, epochs: int, size: int) -> dict:
    return {"model": {"name": "resnet18", "weights": "none"}, "model_label": "resnet18",
            "data": {"root": str(root), "image_size": size, "augment": "none", "cache": cache,
                     "cache_dir": str(WORK / "cache")},
            "epochs": epochs, "seed": 0, "lr": 3e-3, "batch_size": 32, "optimizer": "adam",
            "lr_scheduler": "none", "freeze_depth": "all", "device": "cpu"}


def _timed_trial(config: dict) -> tuple[float, dict, dict]:
    start = time.perf_counter()
    trial = Trial(config)
    history = list(trial.run())
    return time.perf_counter() - start, history[-1], trial.cache_info


def run(quick: bool = False) -> list[dict]:
    per_class = {"train": 30, "val": 10, "test": 2} if quick else {"train": 80, "val": 30, "test": 2}
    size, epochs = (64, 3) if quick else (96, 5)
    shutil.rmtree(WORK, ignore_errors=True)
    root = make_shapes_dataset(WORK / "shapes", num_classes=3, per_class=per_class, size=size, fmt="jpg")
    plain_s, plain, _ = _timed_trial(_config(root, {"features": "off", "images": "off"}, epochs, size))
    build_s, built, info_b = _timed_trial(_config(root, {"features": "on", "images": "off"}, epochs, size))
    hit_s, hit, info_h = _timed_trial(_config(root, {"features": "on", "images": "off"}, epochs, size))
    assert (info_b["feature_cache"], info_h["feature_cache"]) == ("built", "hit"), (info_b, info_h)
    n = per_class["train"] * 3
    acc_gap = abs(hit["val_acc"] - plain["val_acc"]) * 100
    speedup = plain_s / hit_s
    common = (f"resnet18 linear probe, weights none, {n} train + {per_class['val'] * 3} val images at {size} px, "
              f"{epochs} epochs, CPU {torch.get_num_threads()} threads")
    return [
        {"benchmark": "feature cache: linear-probe trial, cache hit vs uncached",
         "baseline": f"{plain_s:.2f} s", "candidate": f"{hit_s:.2f} s", "ratio": round(speedup, 1),
         "target": "≥ 20×", "met": speedup >= 20 and acc_gap <= 0.5,
         "notes": f"{common}; val acc {plain['val_acc']:.3f} uncached vs {hit['val_acc']:.3f} cached "
                  f"(gap {acc_gap:.2f} points, target ≤ 0.5)"},
        {"benchmark": "feature cache: cache-building trial vs one uncached trial",
         "baseline": f"{plain_s:.2f} s", "candidate": f"{build_s:.2f} s", "ratio": round(plain_s / build_s, 2),
         "target": "≥ 1× (building costs no more than one uncached trial)", "met": build_s <= plain_s,
         "notes": f"{common}; the building trial extracts train+val features once, then trains the head "
                  f"(val acc {built['val_acc']:.3f})"},
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
