"""`tlsweep run` (Ray Tune, FIFO, grid of fixed configs) vs the same configs through ``tlsweep.train.fit`` in a
plain Python loop. Fair budget: both run one trial at a time on one torch thread (Ray: ``resources.cpu: 1``,
``max_concurrent: 1``; loop: ``torch.set_num_threads(1)``), so neither gains from the other core; one thread also
keeps the ratio steady on a busy machine. Ray's start-up is timed apart."""

from __future__ import annotations

import time

from ._common import median, shapes, start_ray, sweep_spec


def _configs(plain: dict) -> list[dict]:
    from tlsweep.sweep.space import build_groups, trial_config

    return [trial_config(plain, dict(group.fixed)) for group in build_groups(plain)]


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
    n, per_epoch = len(configs), (tune_s - loop_s) / (len(configs) * epochs)
    ratio = tune_s / loop_s
    return [{
        "benchmark": "tune_overhead",
        "baseline": f"plain loop of fit(): {loop_s:.1f} s",
        "candidate": f"run_sweep on Ray: {tune_s:.1f} s",
        "ratio": ratio, "target": "≤ 1.10×", "met": ratio <= 1.10,
        "notes": (f"{n} trials × {epochs} epochs, sequential, {cores} threads each; overhead "
                  f"{(tune_s - loop_s) / n:.2f} s/trial ({per_epoch:.2f} s/epoch); Ray start-up {startup:.1f} s "
                  f"not included (with it {(tune_s + startup) / loop_s:.2f}×); loop runs: "
                  + ", ".join(f"{x:.1f}" for x in loops)),
    }]
