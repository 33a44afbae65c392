"""`tlsweep run` (Ray Tune, FIFO, grid of fixed configs) vs the same configs through ``tlsweep.train.fit`` in a
plain Python loop. Fair budget: both run one trial at a time on one torch thread (Ray: ``resources.cpu: 1``,
``max_concurrent: 1``; loop: ``torch.set_num_threads(1)``), so neither gains from the other core; one thread also
keeps the ratio steady on a busy machine. Ray's start-up is timed apart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ._common import median, shapes, start_ray, sweep_spec


def _configs(plain: dict) -> list[dict]:
    from tlsweep.sweep.space import build_groups, trial_config

    return [trial_config(plain, dict(group.fixed)) for group in build_groups(plain)]


def _per_epoch_overhead(paths) -> float:
    """Mean of (time between reports − epoch_seconds) over epochs 2.. : checkpoint save + copy + report."""
    gaps = []
    for path in paths:
        for line in (Path(path) / "result.json").read_text().splitlines()[1:]:
            r = json.loads(line)
            gaps.append(r["time_this_iter_s"] - r["epoch_seconds"])
    return sum(gaps) / max(len(gaps), 1)


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
    plain = spec.to_plain()
    configs = _configs(plain)
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
    return [{
        "benchmark": "tune_overhead",
        "baseline": f"plain loop of fit(): {loop_s:.1f} s",
        "candidate": f"run_sweep on Ray: {tune_s:.1f} s",
        "ratio": ratio, "target": "≤ 1.10×", "met": ratio <= 1.10,
        "notes": (f"{n} trials × {epochs} epochs of {loop_s / (n * epochs):.1f} s, sequential, {cores} thread; "
                  f"overhead {(tune_s - loop_s) / n:.1f} s/trial, of which {per_epoch:.2f} s/epoch is checkpoint "
                  f"save+copy+report, the rest worker start (import torch) and Tune bookkeeping; Ray start-up "
                  f"{startup:.1f} s not included (with it {(tune_s + startup) / loop_s:.2f}×); loop runs: "
                  + ", ".join(f"{x:.1f}" for x in loops) + " s"),
    }]
