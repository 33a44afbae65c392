"""GPU benchmark (issue 13), measured side by side in one run on one GPU:

1. The trial loop, resnet50 and mobilenet_v2 at 224 px, batch 64, bf16 + channels_last, Adam: ``tlsweep.trial.loop.Trial``
   (decoded-image cache, input on the device, flip augmentation) vs the GPU-resident ceiling (random tensors
   already on the GPU: no input pipeline) vs an expert hand loop (ImageFolder + PIL, 8 loader workers, pinned
   memory, bf16 + channels_last). Each warmed up, then epochs interleaved; medians. Target: Trial ≥ 0.90× ceiling.
2. A real Ray sweep, 4 mobilenet_v2 trials × 3 epochs × 3,000 images: whole GPU per trial vs a quarter GPU per
   trial vs the sum of the trials' training time. Targets: whole-GPU sweep wall ≤ 1.15× the sum of its trials'
   training time; quarter-GPU sweep ≥ 1.8× faster than the whole-GPU one.

Without a GPU the rows say so and count as skipped (not failed). ``--quick`` without a GPU is a CPU smoke run of
the same code paths, tiny (32 px, Ray with one fake GPU for the sweep rows); its rows are not GPU figures.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ._common import WORK, fresh_dir

MODELS = ("resnet50", "mobilenet_v2")
NO_GPU = "not measured: no GPU found (torch.cuda.is_available() is False)"
SMOKE = "CPU smoke run (no GPU found), not a GPU figure"


def _settings(quick: bool, gpu: bool) -> dict:
    if gpu:
        return {"size": 224, "batch": 64, "per_class": 500, "side": 256, "rounds": 2 if quick else 3,
                "workers": 8, "sweep_images": 500, "sweep_epochs": 3, "whole": {"cpu": 3, "gpu": 1},
                "quarter": {"cpu": 3, "gpu": 0.25}, "precision": "bf16"}
    return {"size": 32, "batch": 8, "per_class": 4, "side": 40, "rounds": 1, "workers": 0, "sweep_images": 4,
            "sweep_epochs": 1, "whole": {"cpu": 0.5, "gpu": 1}, "quarter": {"cpu": 0.5, "gpu": 0.25},
            "precision": "bf16"}


def _data(s: dict, per_class: int) -> Path:
    from tlsweep.data.synthetic import make_shapes_dataset

    root = WORK / "data" / f"gpu_{s['side']}_{per_class}"
    if not (root / "val").is_dir():
        make_shapes_dataset(root, num_classes=6, per_class={"train": per_class, "val": max(2, per_class // 5),
                                                            "test": 1}, size=s["side"], seed=0, fmt="jpg")
    return root


class _Clock:
    def __init__(self, device):
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def images_per_s(self, epoch) -> float:
        self.sync()
        start = time.perf_counter()
        n = epoch()
        self.sync()
        return n / (time.perf_counter() - start)


def _ceiling(arch: str, s: dict, n: int, device):
    import torch
    from torch import nn
    from torchvision import models

    torch.manual_seed(0)
    model = getattr(models, arch)(weights=None, num_classes=6).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    x = torch.randn(s["batch"], 3, s["size"], s["size"], device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (s["batch"],), device=device)
    steps = max(1, n // s["batch"])

    def epoch() -> int:
        model.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = crit(model(x), y)
            loss.backward()
            opt.step()
        return steps * s["batch"]
    return epoch


def _expert(arch: str, s: dict, root: Path, device):
    import torch
    from torch import nn
    from torchvision import datasets, models, transforms

    tf = transforms.Compose([transforms.Resize((s["size"], s["size"])), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    data = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=s["batch"], shuffle=True, num_workers=s["workers"],
                                         pin_memory=device.type == "cuda", persistent_workers=s["workers"] > 0)
    torch.manual_seed(0)
    model = getattr(models, arch)(weights=None, num_classes=6).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()

    def epoch() -> int:
        model.train()
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = crit(model(x), y)
            loss.backward()
            opt.step()
        return len(data)
    return epoch


def _trial(arch: str, s: dict, root: Path, device):
    from tlsweep.trial.loop import Trial

    trial = Trial({"model": {"name": arch, "weights": "none"}, "model_label": arch,
                   "data": {"root": str(root), "image_size": s["size"], "augment": "flip", "num_workers": s["workers"],
                            "cache": {"images": "on", "features": "off"}, "cache_dir": str(WORK / "gpu_cache")},
                   "epochs": 1000, "seed": 0, "lr": 1e-3, "batch_size": s["batch"], "optimizer": "adam",
                   "lr_scheduler": "none", "performance": {"precision": "bf16", "channels_last": True,
                                                           "input": "device"}}, device=device)

    def epoch() -> int:
        trial.train_epoch()
        return len(trial.splits.train)
    return epoch, trial


def loop_rows(quick: bool, gpu: bool) -> list[dict]:
    import torch

    device = torch.device("cuda" if gpu else "cpu")
    s = _settings(quick, gpu)
    root = _data(s, s["per_class"])
    n = 6 * s["per_class"]
    clock = _Clock(device)
    rows = []
    for arch in MODELS:
        trial_epoch, trial = _trial(arch, s, root, device)
        cases = {"ceiling": _ceiling(arch, s, n, device), "expert": _expert(arch, s, root, device),
                 "trial": trial_epoch}
        for epoch in cases.values():  # warm-up: cudnn autotune, loader workers, cache pages
            clock.images_per_s(epoch)
        speeds: dict[str, list[float]] = {k: [] for k in cases}
        for i in range(s["rounds"]):
            names = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in names:
                speeds[name].append(clock.images_per_s(cases[name]))
        med = {k: statistics.median(v) for k, v in speeds.items()}
        ratio = med["trial"] / med["ceiling"]
        name = torch.cuda.get_device_name() if gpu else "CPU"
        rows.append({
            "benchmark": f"gpu: Trial vs GPU-resident ceiling, {arch}",
            "baseline": f"ceiling: {med['ceiling']:.0f} img/s", "candidate": f"Trial: {med['trial']:.0f} img/s",
            "ratio": ratio, "target": "≥ 0.90×", "met": ratio >= 0.90 if gpu else None,
            "notes": (f"device {name}; expert hand loop {med['expert']:.0f} img/s (Trial/expert "
                      f"{med['trial'] / med['expert']:.2f}×); {s['size']} px, batch {s['batch']}, bf16 + "
                      f"channels_last, {n} images, input {trial.cache_info['input']}, median of {s['rounds']} "
                      f"interleaved epochs after a warm-up" + ("" if gpu else f"; {SMOKE}"))})
        del cases, trial
        if gpu:
            torch.cuda.empty_cache()
    return rows


def _sweep(name: str, root: Path, s: dict, resources: dict):
    from tlsweep.config.spec import parse_spec
    from tlsweep.sweep.runner import run_sweep

    spec = parse_spec({
        "name": name, "weights": "none", "epochs": s["sweep_epochs"], "num_samples": 1, "seed": 0,
        "data": {"root": str(root), "image_size": s["size"], "augment": "flip", "num_workers": 0,
                 "cache": {"images": "on", "features": "off"}, "cache_dir": str(WORK / "gpu_cache")},
        "models": ["mobilenet_v2"], "resources": resources,
        "search": {"lr": {"grid": [1e-4, 3e-4, 1e-3, 3e-3]}, "batch_size": s["batch"], "optimizer": "adam",
                   "lr_scheduler": "none"},
        "scheduler": {"type": "fifo"}, "searcher": {"type": "grid"},
        "performance": {"precision": s["precision"], "channels_last": True},
        "checkpoints": {"num_to_keep": 1}, "storage": str(fresh_dir(f"gpu_{name}"))})
    start = time.perf_counter()
    result = run_sweep(spec)
    wall = time.perf_counter() - start
    assert set(result.trials["status"]) == {"finished"}, result.trials[["status", "error"]]
    return wall, float(result.trials["wall_s"].sum()), result.trials


def sweep_rows(quick: bool, gpu: bool) -> list[dict]:
    import ray

    from tlsweep.sweep.prebuild import build_caches
    from tlsweep.sweep.runner import init_ray

    s = _settings(quick, gpu)
    root = _data(s, s["sweep_images"])
    if ray.is_initialized():  # a Ray of its own: one real GPU, or (smoke) one fake GPU
        ray.shutdown()
    init_ray(None, num_gpus=None if gpu else 1)
    try:
        from tlsweep.config.spec import parse_spec

        warm = parse_spec({"name": "warm", "data": {"root": str(root), "image_size": s["size"], "augment": "flip",
                                                    "cache": {"images": "on"}, "cache_dir": str(WORK / "gpu_cache")},
                           "models": ["mobilenet_v2"], "weights": "none", "epochs": s["sweep_epochs"]})
        build_caches(warm.plan())  # both sweeps find the image cache built: the same work in each
        whole, whole_sum, whole_trials = _sweep("whole", root, s, s["whole"])
        quarter, quarter_sum, _ = _sweep("quarter", root, s, s["quarter"])
    finally:
        ray.shutdown()  # the other benchmarks start a CPU-only Ray of their own
    overhead, speedup = whole / whole_sum, whole / quarter
    device = whole_trials["device"].iloc[0] if "device" in whole_trials else "?"
    gpu_name = whole_trials["gpu_name"].iloc[0] if "gpu_name" in whole_trials else None
    common = (f"device {gpu_name or device}; 4 mobilenet_v2 trials × {s['sweep_epochs']} epochs × "
              f"{6 * s['sweep_images']} images, {s['size']} px, batch {s['batch']}, bf16, FIFO; mean setup_s "
              f"{whole_trials['setup_s'].mean():.1f} s, start_s {whole_trials['start_s'].mean():.1f} s per trial"
              + ("" if gpu else f"; {SMOKE}"))
    return [
        {"benchmark": "gpu sweep: whole-GPU sweep wall vs its trials' training time",
         "baseline": f"trials' time: {whole_sum:.1f} s", "candidate": f"sweep wall: {whole:.1f} s",
         "ratio": overhead, "target": "≤ 1.15×", "met": overhead <= 1.15 if gpu else None,
         "notes": f"resources {s['whole']}; {common}"},
        {"benchmark": "gpu sweep: quarter-GPU vs whole-GPU trials",
         "baseline": f"whole GPU: {whole:.1f} s", "candidate": f"quarter GPU: {quarter:.1f} s",
         "ratio": speedup, "target": "≥ 1.8× faster", "met": speedup >= 1.8 if gpu else None,
         "notes": f"resources {s['quarter']} vs {s['whole']}; quarter sweep's trials' time {quarter_sum:.1f} s; "
                  f"{common}"},
    ]


def skipped_rows() -> list[dict]:
    names = [f"gpu: Trial vs GPU-resident ceiling, {m}" for m in MODELS] + [
        "gpu sweep: whole-GPU sweep wall vs its trials' training time", "gpu sweep: quarter-GPU vs whole-GPU trials"]
    targets = ["≥ 0.90×", "≥ 0.90×", "≤ 1.15×", "≥ 1.8× faster"]
    return [{"benchmark": n, "baseline": "", "candidate": "", "ratio": float("nan"), "target": t, "met": None,
             "notes": NO_GPU} for n, t in zip(names, targets)]


def run(quick: bool = False) -> list[dict]:
    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not quick:
        return skipped_rows()
    if not gpu:
        torch.set_num_threads(1)
    return loop_rows(quick, gpu) + sweep_rows(quick, gpu)


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
