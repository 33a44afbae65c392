"""GPU benchmark (issues 13 and 22), measured side by side in one run on one GPU:

1. The trial loop, resnet50 and mobilenet_v2 at 224 px, batch 64, bf16 + channels_last, Adam:
   ``tlsweep.trial.loop.Trial`` (decoded-image cache, input on the device) with the ``flip`` and the ``basic``
   policy (random-resized crop, flip, colour jitter), the split resident on the GPU and (``flip``) streamed
   (the loader's resident copy released: side stream, pinned buffers, gather thread) vs the GPU-resident
   ceiling (random tensors already on the GPU, every image of the epoch, the last partial batch too) vs an
   expert hand loop reading the same decoded uint8 cache through a pinned ``DataLoader`` (flip and normalise on
   the GPU). Each warmed up, then epochs interleaved; medians. Target: Trial ≥ 0.90× ceiling.
2. A resnet50 linear probe (frozen backbone), one epoch: the frozen-feature cache hit vs uncached. Target ≥ 20×.
3. A real Ray sweep, 4 mobilenet_v2 trials × 4 epochs × 2,000 images: whole GPU per trial vs a quarter GPU per
   trial, two rounds in alternating order (warm actors: Tune reuses them within a sweep); medians. Targets:
   whole-GPU sweep wall ≤ 1.15× the sum of its trials' time; quarter-GPU sweep ≥ 1.8× faster than the whole-GPU
   one.

Without a GPU the rows say so and count as skipped (not failed). ``--quick`` without a GPU is a CPU smoke run of
the same code paths, tiny (32 px, Ray with one fake GPU for the sweep rows); its rows are not GPU figures.
"""

from __future__ import annotations

import os
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
                "workers": 8, "sweep_images": 333, "sweep_epochs": 4, "sweep_rounds": 1 if quick else 2,
                "whole": {"cpu": 3, "gpu": 1}, "quarter": {"cpu": 3, "gpu": 0.25}, "precision": "bf16"}
    return {"size": 32, "batch": 8, "per_class": 4, "side": 40, "rounds": 1, "workers": 0, "sweep_images": 4,
            "sweep_epochs": 1, "sweep_rounds": 1, "whole": {"cpu": 0.5, "gpu": 1},
            "quarter": {"cpu": 0.5, "gpu": 0.25}, "precision": "bf16"}


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
    sizes = [s["batch"]] * (n // s["batch"]) + ([n % s["batch"]] if n % s["batch"] else [])  # the last batch too

    def epoch() -> int:
        model.train()
        for b in sizes:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = crit(model(x[:b]), y[:b])
            loss.backward()
            opt.step()
        return n
    return epoch


def _expert(arch: str, s: dict, cached, device):
    """A hand loop over the decoded uint8 cache entry (``CachedImages``): pinned DataLoader, flip + normalise on
    the GPU, bf16 + channels_last."""
    import torch
    from torch import nn
    from torchvision import models

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(cached.targets)

        def __getitem__(self, i):
            return torch.from_numpy(cached.images[i].copy()), cached.targets[i]

    loader = torch.utils.data.DataLoader(Rows(), batch_size=s["batch"], shuffle=True, num_workers=s["workers"],
                                         pin_memory=device.type == "cuda", persistent_workers=s["workers"] > 0)
    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)
    torch.manual_seed(0)
    model = getattr(models, arch)(weights=None, num_classes=6).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()

    def epoch() -> int:
        model.train()
        for x, y in loader:
            x = x.to(device, non_blocking=True).float().div_(255)
            flip = torch.rand(len(x), device=device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = crit(model(x), y)
            loss.backward()
            opt.step()
        return len(cached.targets)
    return epoch


def _trial(arch: str, s: dict, root: Path, device, augment: str = "flip", streamed: bool = False, **fields):
    from tlsweep.trial.loop import Trial

    trial = Trial({"model": {"name": arch, "weights": "none"}, "model_label": arch,
                   "data": {"root": str(root), "image_size": s["size"], "augment": augment, "num_workers": s["workers"],
                            "cache": {"images": "on", "features": "off"}, "cache_dir": str(WORK / "gpu_cache")},
                   "epochs": 1000, "seed": 0, "lr": 1e-3, "batch_size": s["batch"], "optimizer": "adam",
                   "lr_scheduler": "none", "performance": {"precision": "bf16", "channels_last": True,
                                                           "input": "device"}, **fields}, device=device)
    if streamed:  # the side-stream copy of pinned batches gathered on a thread, not the resident split
        trial.train_loader.release()

    def epoch() -> int:
        trial.train_epoch()
        return len(trial.splits.train)
    return epoch, trial


def loop_rows(quick: bool, gpu: bool, models=MODELS) -> list[dict]:
    import torch

    device = torch.device("cuda" if gpu else "cpu")
    s = _settings(quick, gpu)
    root = _data(s, s["per_class"])
    n = 6 * s["per_class"]
    clock = _Clock(device)
    rows = []
    for arch in models:
        trial_epoch, trial = _trial(arch, s, root, device)
        cases = {"ceiling": _ceiling(arch, s, n, device), "expert": _expert(arch, s, trial.train_loader.source, device),
                 "trial": trial_epoch, "trial_streamed": _trial(arch, s, root, device, streamed=True)[0],
                 "trial_basic": _trial(arch, s, root, device, "basic")[0]}
        for epoch in cases.values():  # warm-up: cudnn autotune, loader workers, cache pages
            clock.images_per_s(epoch)
        speeds: dict[str, list[float]] = {k: [] for k in cases}
        for i in range(s["rounds"]):
            names = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in names:
                speeds[name].append(clock.images_per_s(cases[name]))
        med = {k: statistics.median(v) for k, v in speeds.items()}
        name = torch.cuda.get_device_name() if gpu else "CPU"
        for case, what in zip(("trial", "trial_streamed", "trial_basic"), LOOP_CASES):
            ratio = med[case] / med["ceiling"]
            rows.append({
                "benchmark": f"gpu: Trial vs GPU-resident ceiling, {arch}, {what}",
                "baseline": f"ceiling: {med['ceiling']:.0f} img/s", "candidate": f"Trial: {med[case]:.0f} img/s",
                "ratio": ratio, "target": "≥ 0.90×", "met": ratio >= 0.90 if gpu else None,
                "notes": (f"device {name}; expert hand loop on the uint8 cache {med['expert']:.0f} img/s "
                          f"(Trial/expert {med[case] / med['expert']:.2f}×); {s['size']} px, batch {s['batch']}, "
                          f"bf16 + channels_last, {n} images, input {trial.cache_info['input']}, median of "
                          f"{s['rounds']} interleaved epochs after a warm-up" + ("" if gpu else f"; {SMOKE}"))})
        del cases, trial
        if gpu:
            torch.cuda.empty_cache()
    return rows


def feature_rows(quick: bool, gpu: bool) -> list[dict]:
    """A resnet50 linear probe: one epoch reading cached features vs one uncached (backbone forward each step)."""
    import torch

    device = torch.device("cuda" if gpu else "cpu")
    s = _settings(quick, gpu)
    root = _data(s, s["per_class"])
    clock = _Clock(device)
    arch = "resnet50" if gpu else "mobilenet_v3_small"
    uncached_epoch, _ = _trial(arch, s, root, device, "none", freeze_depth="all")  # feature cache off
    hit_epoch, hit = _feature_trial(arch, s, root, device)
    trials = {"uncached": uncached_epoch, "hit": hit_epoch}
    for epoch in trials.values():
        clock.images_per_s(epoch)
    speeds = {k: statistics.median([clock.images_per_s(e) for _ in range(s["rounds"])]) for k, e in trials.items()}
    ratio = speeds["hit"] / speeds["uncached"]
    return [{"benchmark": f"gpu: linear probe epoch, feature-cache hit vs uncached, {arch}",
             "baseline": f"uncached: {speeds['uncached']:.0f} img/s", "candidate": f"hit: {speeds['hit']:.0f} img/s",
             "ratio": ratio, "target": "≥ 20×", "met": ratio >= 20 if gpu else None,
             "notes": f"feature cache {hit.cache_info['feature_cache']}; {s['size']} px, batch {s['batch']}, bf16"
                      + ("" if gpu else f"; {SMOKE}")}]


def _feature_trial(arch: str, s: dict, root: Path, device):
    from tlsweep.trial.loop import Trial

    config = {"model": {"name": arch, "weights": "none"}, "model_label": arch,
              "data": {"root": str(root), "image_size": s["size"], "augment": "none", "num_workers": s["workers"],
                       "cache": {"images": "on", "features": "on"}, "cache_dir": str(WORK / "gpu_cache")},
              "epochs": 1000, "seed": 0, "lr": 1e-3, "batch_size": s["batch"], "optimizer": "adam",
              "lr_scheduler": "none", "freeze_depth": "all",
              "performance": {"precision": "bf16", "channels_last": True, "input": "device"}}
    Trial(config, device=device)  # builds the entry (or finds it)
    trial = Trial(config, device=device)

    def epoch() -> int:
        trial.train_epoch()
        return len(trial.splits.train)
    return epoch, trial


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
    if not gpu:
        from tlsweep.trial.gpus import ALLOW_CPU_FALLBACK_ENV

        os.environ[ALLOW_CPU_FALLBACK_ENV] = "1"  # the fake GPU has no CUDA behind it: its trials use the CPU
    init_ray(None, num_gpus=None if gpu else 1)
    try:
        from tlsweep.config.spec import parse_spec

        warm = parse_spec({"name": "warm", "data": {"root": str(root), "image_size": s["size"], "augment": "flip",
                                                    "cache": {"images": "on"}, "cache_dir": str(WORK / "gpu_cache")},
                           "models": ["mobilenet_v2"], "weights": "none", "epochs": s["sweep_epochs"]})
        build_caches(warm.plan())  # both sweeps find the image cache built: the same work in each
        runs: dict[str, list] = {"whole": [], "quarter": []}
        for i in range(s["sweep_rounds"]):  # alternating order: whole, quarter; quarter, whole; ...
            for name in ("whole", "quarter") if i % 2 == 0 else ("quarter", "whole"):
                runs[name].append(_sweep(name, root, s, s[name]))
    finally:
        ray.shutdown()  # the other benchmarks start a CPU-only Ray of their own

    def median_run(name):
        return sorted(runs[name], key=lambda r: r[0])[len(runs[name]) // 2]

    whole, whole_sum, whole_trials = median_run("whole")
    quarter, quarter_sum, _ = median_run("quarter")
    overhead, speedup = whole / whole_sum, whole / quarter
    device = whole_trials["device"].iloc[0] if "device" in whole_trials else "?"
    gpu_name = whole_trials["gpu_name"].iloc[0] if "gpu_name" in whole_trials else None
    common = (f"device {gpu_name or device}; median of {s['sweep_rounds']} alternating rounds; 4 mobilenet_v2 "
              f"trials × {s['sweep_epochs']} epochs × "
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


LOOP_CASES = ("flip, resident", "flip, streamed", "basic, resident")


def skipped_rows() -> list[dict]:
    names = [(f"gpu: Trial vs GPU-resident ceiling, {m}, {c}", "≥ 0.90×") for m in MODELS for c in LOOP_CASES] + [
        ("gpu: linear probe epoch, feature-cache hit vs uncached, resnet50", "≥ 20×"),
        ("gpu sweep: whole-GPU sweep wall vs its trials' training time", "≤ 1.15×"),
        ("gpu sweep: quarter-GPU vs whole-GPU trials", "≥ 1.8× faster")]
    return [{"benchmark": n, "baseline": "", "candidate": "", "ratio": float("nan"), "target": t, "met": None,
             "notes": NO_GPU} for n, t in names]


def run(quick: bool = False) -> list[dict]:
    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not quick:
        return skipped_rows()
    if not gpu:
        torch.set_num_threads(1)
    return loop_rows(quick, gpu) + feature_rows(quick, gpu) + sweep_rows(quick, gpu)


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
