"""Benchmark 3: training input throughput with the decoded-image cache vs ImageFolder + PIL decode every epoch
(target ≥ 1.5×), and a whole training epoch of a small CNN on CPU with each (reported, CPU-bound).

Data: shapes written as 256 px JPEGs (so decoding costs what it costs on real photos), trained at 64 px with
flip augmentation, batch 32, loader workers 0, ``weights: none``, CPU.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from tlsweep.config.sections import DataConfig
from tlsweep.data import load_splits
from tlsweep.data.cache.decoded import CachedImages, build_images, passthrough
from tlsweep.data.sources import ImageList, Splits
from tlsweep.data.transforms import build_transform
from tlsweep.trial.loop import TransformedDataset, Trial, make_loader

WORK = Path(__file__).resolve().parent / "_work" / "image_cache"
SIZE, SOURCE_SIZE, AUGMENT = 64, 256, "flip"


def _images_per_s(loader, epochs: int) -> float:
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader:
            n += labels.shape[0]
    return n / (time.perf_counter() - start)


def _train_images_per_s(root: Path, n_images: int, rounds: int) -> tuple[float, float]:
    """Best epoch images/s of two identical trials, uncached and cached, epochs interleaved against load drift."""
    full = load_splits(DataConfig.model_validate({"root": str(root)}))
    step = max(1, len(full.train) // n_images)
    small = Splits(full.classes, ImageList(full.train.samples[::step][:n_images], full.classes), full.val, full.test)
    trials = []
    for images_cache in ("off", "on"):
        config = {"model": {"name": "mobilenet_v3_small", "weights": "none"}, "model_label": "m",
                  "data": {"root": str(root), "image_size": SIZE, "augment": AUGMENT,
                           "cache": {"images": images_cache, "features": "off"}, "cache_dir": str(WORK / "cache")},
                  "epochs": rounds, "seed": 0, "lr": 1e-3, "batch_size": 32, "optimizer": "adam",
                  "lr_scheduler": "none", "freeze_depth": 0.0, "device": "cpu"}
        trials.append(Trial(config, splits=small))
    best = [0.0, 0.0]
    for _ in range(rounds):
        for i, trial in enumerate(trials):
            best[i] = max(best[i], trial.train_epoch()["images_per_s"])
    return best[0], best[1]


def run(quick: bool = False) -> list[dict]:
    from tlsweep.data.synthetic import make_shapes_dataset

    per_class = 40 if quick else 120
    epochs = 2 if quick else 3
    shutil.rmtree(WORK, ignore_errors=True)
    root = make_shapes_dataset(WORK / "jpegs", num_classes=3, per_class={"train": per_class, "val": 4, "test": 2},
                               size=SOURCE_SIZE, fmt="jpg")
    train = load_splits(DataConfig.model_validate({"root": str(root)})).train
    generator = torch.Generator().manual_seed(0)
    plain = make_loader(TransformedDataset(train, build_transform(SIZE, AUGMENT, train=True)), 32, True, 0, generator)
    start = time.perf_counter()
    path = build_images(train, SIZE, WORK / "cache")
    build_s = time.perf_counter() - start
    cached = make_loader(CachedImages(path, SIZE, AUGMENT, train=True), 32, True, 0, generator,
                         collate_fn=passthrough)
    base, cand = _images_per_s(plain, epochs), _images_per_s(cached, epochs)
    train_n = 64 if quick else 128
    train_base, train_cand = _train_images_per_s(root, train_n, 2)
    common = (f"{len(train)} train images, {SOURCE_SIZE} px JPEG → {SIZE} px, augment {AUGMENT}, batch 32, "
              f"workers 0, CPU {torch.get_num_threads()} threads")
    return [
        {"benchmark": "image cache: training input pipeline images/s",
         "baseline": f"{base:.0f} img/s", "candidate": f"{cand:.0f} img/s", "ratio": round(cand / base, 1),
         "target": "≥ 1.5×", "met": cand / base >= 1.5,
         "notes": f"{common}; {epochs} epochs of loading; one-time cache build {build_s:.1f} s "
                  f"(≈ {len(train) / build_s:.0f} img/s, once per node)"},
        {"benchmark": "image cache: mobilenet_v3_small training epoch images/s (CPU-bound)",
         "baseline": f"{train_base:.0f} img/s", "candidate": f"{train_cand:.0f} img/s",
         "ratio": round(train_cand / train_base, 2), "target": "≥ 1× (compute dominates on CPU)",
         "met": train_cand >= train_base,
         "notes": f"{common}; forward+backward+Adam at {SIZE} px on {train_n} images, best of 2 interleaved "
                  "epochs each; on a GPU the model step is far cheaper, so the "
                  "input pipeline ratio above is what a GPU trial sees"},
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
