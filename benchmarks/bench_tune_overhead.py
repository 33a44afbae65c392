"""`tlsweep run` (Ray Tune, FIFO, grid of fixed configs) vs the same configs through ``tlsweep.train.fit`` in a
plain Python loop. Fair budget: both run one trial at a time on one torch thread (Ray: ``resources.cpu: 1``,
``max_concurrent: 1``; loop: ``torch.set_num_threads(1)``), so neither gains from the other core; one thread also
keeps the ratio steady on a busy machine. Ray's start-up is timed apart.

The notes split Tune's extra time into a part paid once per sweep (the trial worker process: Python, Ray's worker
and the imports of ray.tune, torch and torchvision — timed again in a fresh interpreter for comparison — which the
loop, running in a process that has them imported, does not pay) and a part paid every epoch (checkpoint save,
its copy into storage, report), from the trials' ``result.json``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ._common import median, shapes, start_ray, sweep_spec


def _configs(plan):
    from tlsweep.sweep.space import build_groups

    return [plan.trial_config(dict(group.fixed)) for group in build_groups(plan)]


def _per_epoch_overhead(paths) -> float:
    """Mean of (time between reports − epoch_seconds) over epochs 2.. : checkpoint save + copy + report."""
    gaps = []
    for path in paths:
        for line in (Path(path) / "result.json").read_text().splitlines()[1:]:
            r = json.loads(line)
            gaps.append(r["time_this_iter_s"] - r["epoch_seconds"])
    return sum(gaps) / max(len(gaps), 1)


def _import_seconds() -> float:
    """Seconds a fresh interpreter takes to import the trainable (ray.tune, torch, torchvision, tlsweep)."""
    code = "import time; t = time.perf_counter(); import tlsweep.sweep.trainable; print(time.perf_counter() - t)"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            for _ in range(2)]
    return min(float(out.stdout.strip().splitlines()[-1]) for out in runs)


def _loop(configs: list[dict], threads: int) -> float:
    import torch

    from tlsweep.train import fit

    torch.set_num_threads(threads)
    start = time.perf_counter()
    for config in configs:
        fit(config)
    return time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    from tlsweep.sweep.runner import run_sweep

    cores = 1
    root = shapes("tune_overhead", 3, train=32, val=12)
    epochs = 2 if quick else 3
    spec = sweep_spec("tune_overhead", root, models=["resnet18", "mobilenet_v3_small"],
                      search={"lr": {"grid": [1e-3, 3e-3]}, "batch_size": 16, "lr_scheduler": "none"},
                      epochs=epochs, scheduler={"type": "fifo"}, searcher={"type": "grid"},
                      max_concurrent=1, resources={"cpu": cores})
    configs = _configs(spec.plan())
    startup = start_ray()
    loops = [_loop(configs, cores)]
    start = time.perf_counter()
    result = run_sweep(spec)
    tune_s = time.perf_counter() - start
    if not quick:
        loops.append(_loop(configs, cores))
    loop_s = median(loops)
    assert (result.trials["status"] == "finished").all(), result.trials[["status", "error"]]
    n, per_epoch = len(configs), _per_epoch_overhead(result.trials["path"])
    ratio = tune_s / loop_s
    once = tune_s - loop_s - n * epochs * per_epoch
    imports = _import_seconds()
    return [{
        "benchmark": "tune_overhead",
        "baseline": f"plain loop of fit(): {loop_s:.1f} s",
        "candidate": f"run_sweep on Ray: {tune_s:.1f} s",
        "ratio": ratio, "target": "≤ 1.10×", "met": ratio <= 1.10,
        "notes": (f"{n} trials × {epochs} epochs of {loop_s / (n * epochs):.1f} s, sequential, {cores} thread, one "
                  f"reused trial worker; extra {tune_s - loop_s:.1f} s = {once:.1f} s once per sweep (trial worker "
                  f"start; its imports alone take {imports:.1f} s in a fresh interpreter) + {per_epoch:.2f} s/epoch "
                  f"(checkpoint save+copy+report) × {n * epochs}; without the once-per-sweep part "
                  f"{(tune_s - once) / loop_s:.2f}×; Ray start-up {startup:.1f} s not included (with it "
                  f"{(tune_s + startup) / loop_s:.2f}×); loop runs: " + ", ".join(f"{x:.1f}" for x in loops) + " s"),
    }]
