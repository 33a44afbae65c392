"""Accuracy of a linear probe with the weights' own preprocessing vs squashing, on a 224-px dataset.

Makes an ImageFolder of Fashion-MNIST images upscaled (bicubic) to 256×320 RGB PNGs — a larger, non-square
"photo" whose aspect ratio squashing distorts and centre-cropping keeps — then trains mobilenet_v2
(IMAGENET1K_V1) as a linear probe at image_size 224 with ``preprocess: weights`` and ``squash`` (same seed, data,
epochs; the frozen-feature cache makes the head's epochs cheap) and prints val/test accuracy.

    PYTHONPATH=$PWD .venv/bin/python scripts/compare_preprocess.py [--per-class 60] [--epochs 15]
Needs `bash scripts/setup.sh demo` (Fashion-MNIST and the mobilenet_v2 weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image


def make_dataset(root: Path, fmnist_root: Path, per_class: int, seed: int = 0) -> Path:
    """``root/{train,val,test}/<class>/*.png``: ``per_class`` train images per class, half that for val/test."""
    from torchvision.datasets import FashionMNIST

    if (root / "test").is_dir():
        return root
    counts = {"train": per_class, "val": per_class // 2, "test": per_class // 2}
    for split, train in (("train", True), ("val", True), ("test", False)):
        ds = FashionMNIST(str(fmnist_root), train=train, download=False)
        taken = {c: 0 for c in ds.classes}
        start = 30000 if split == "val" else 0  # val from the second half of train: disjoint from train
        for i in range(start, len(ds)):
            image, label = ds[i]
            name = ds.classes[label].replace("/", "-")
            if taken[ds.classes[label]] >= counts[split]:
                continue
            taken[ds.classes[label]] += 1
            out = root / split / name / f"{i}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            image.convert("RGB").resize((320, 256), Image.BICUBIC).save(out)
            if all(v >= counts[split] for v in taken.values()):
                break
    return root


def run(root: Path, mode: str, epochs: int, lr: float) -> dict:
    from tlsweep.data.preprocess import preprocess_for
    from tlsweep.report.evaluate import evaluate
    from tlsweep.trial.loop import Trial

    config = {"model": {"name": "mobilenet_v2", "weights": "IMAGENET1K_V1"}, "model_label": "mobilenet_v2",
              "data": {"root": str(root), "image_size": 224, "augment": "none", "preprocess": mode},
              "preprocess": mode, "epochs": epochs, "seed": 0, "lr": lr, "batch_size": 32, "optimizer": "adam",
              "lr_scheduler": "cosine", "freeze_depth": "all"}
    start = time.perf_counter()
    trial = Trial(config)
    history = list(trial.run())
    test = evaluate(trial.model.eval(), trial.splits.test, trial.classes, 224, preprocess_for(config))
    return {"mode": mode, "val_acc": history[-1]["val_acc"], "best_val_acc": max(h["val_acc"] for h in history),
            "test_acc": test.accuracy, "ci": (test.ci_low, test.ci_high), "seconds": time.perf_counter() - start,
            "cache": trial.cache_info.get("feature_cache")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--data", type=Path, default=Path("data/fmnist224"))
    parser.add_argument("--modes", nargs="+", default=["weights", "squash"])
    args = parser.parse_args()
    root = make_dataset(args.data, Path("data"), args.per_class)
    print("| preprocess | val acc (last) | val acc (best) | test acc (95% CI) | seconds |")
    print("|---|---|---|---|---|")
    for mode in args.modes:
        r = run(root, mode, args.epochs, args.lr)
        print(f"| {r['mode']} | {r['val_acc']:.3f} | {r['best_val_acc']:.3f} | {r['test_acc']:.3f} "
              f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
