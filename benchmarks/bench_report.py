"""`tlsweep report` on a finished 20-trial sweep (resnet18 and mobilenet_v3_small × 10, ASHA, 4 epochs, 32 px,
4 classes × 20 test images) against a one-minute budget on this machine. The sweep is run once (kept under
``_work``); the report is built twice into fresh folders and the faster build counts (the first also pays
imports and page-cache misses), with torch's default threads and with one thread, alternating. CPU seconds are the
process's user + system time of that build."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time

from ._common import WORK, start_ray, sweep_spec

BUDGET_S = 60.0
TRIALS = 20


def _sweep():
    from tlsweep.sweep.runner import run_sweep

    root = WORK / "data" / "report4"
    if not (root / "test").is_dir():
        from tlsweep.data.synthetic import make_shapes_dataset

        shutil.rmtree(root, ignore_errors=True)
        make_shapes_dataset(root, num_classes=4, per_class={"train": 24, "val": 12, "test": 20}, size=32, seed=0)
    from tlsweep.sweep.runner import SUMMARY_FILE

    storage = WORK / "results" / "report20"
    done = storage / SUMMARY_FILE
    if done.is_file() and sum(1 for _ in storage.glob("*/result.json")) == TRIALS:
        return storage
    spec = sweep_spec("report20", root, models=["resnet18", "mobilenet_v3_small"],
                      search={"lr": {"loguniform": [1e-4, 3e-2]}, "batch_size": {"choice": [8, 16]},
                              "freeze_depth": {"choice": [0, 0.5]}, "optimizer": "adam", "lr_scheduler": "none"},
                      epochs=4, scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
                      searcher={"type": "optuna", "seed": 0}, num_samples=TRIALS // 2, resources={"cpu": 1})
    start_ray()
    run_sweep(spec)
    return storage


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(quick: bool = False) -> list[dict]:
    import ray
    import torch

    from tlsweep.report import make_report

    try:
        storage = _sweep()
    finally:
        ray.shutdown()
    default = torch.get_num_threads()
    builds: dict[int, list[tuple[float, float]]] = {default: [], 1: []}
    for i in range(1 if quick else 2):  # alternating, so both see the same machine load
        for threads in builds:
            out = WORK / "results" / f"report20_out{threads}_{i}"
            shutil.rmtree(out, ignore_errors=True)
            wall, cpu = time.perf_counter(), _cpu()
            make_report(storage, out_dir=out, threads=threads)
            builds[threads].append((time.perf_counter() - wall, _cpu() - cpu))
    summary = json.loads((WORK / "results" / "report20_out1_0" / "summary.json").read_text())
    rows = []
    for threads, times in builds.items():
        wall, cpu = min(times)
        rows.append({
            "benchmark": f"report_20_trials ({threads} torch thread{'s' if threads > 1 else ''})",
            "baseline": f"budget {BUDGET_S:.0f} s",
            "candidate": f"make_report: {wall:.1f} s wall, {cpu:.1f} s CPU",
            "ratio": wall / BUDGET_S, "target": "≤ 1.00×", "met": wall <= BUDGET_S,
            "notes": (f"{summary['trials']} trials, 2 models, 80 test images, Grad-CAM of 8 images; builds "
                      + ", ".join(f"{w:.1f} s" for w, _ in times) + f"; load average {os.getloadavg()[0]:.1f}"),
        })
    return rows
