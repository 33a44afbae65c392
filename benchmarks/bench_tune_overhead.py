"""`tlsweep run` (Ray Tune, FIFO, grid of fixed configs) vs the same configs through ``tlsweep.trial.loop.Trial`` in a
plain Python loop doing the same work: the preflight checks, every trial's epochs and a checkpoint per epoch
written to a temp folder and copied into a storage folder (what the trainable and Tune do). Fair budget: both run
one trial at a time on one torch thread (Ray: ``resources.cpu: 1``, ``max_concurrent: 1``; loop:
``torch.set_num_threads(1)``). The loop is warmed up (one trial run before timing); Ray's start-up is timed apart.

The notes split Tune's extra time into the trial worker's start, timed directly (a fresh Ray actor importing the
trainable, until it answers), the per-epoch part (time between reports minus the epoch, from ``result.json``:
report and checkpoint handling beyond the loop's) and the rest."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from ._common import fresh_dir, median, shapes, start_ray, sweep_spec


def _configs(plan):
    from tlsweep.config.space import build_groups

    return [plan.trial_config(dict(group.fixed)) for group in build_groups(plan)]


def _per_epoch_overhead(paths) -> float:
    """Mean of (time between reports − epoch_seconds) over epochs 2.. : checkpoint save + copy + report."""
    gaps = []
    for path in paths:
        for line in (Path(path) / "result.json").read_text().splitlines()[1:]:
            r = json.loads(line)
            gaps.append(r["time_this_iter_s"] - r["epoch_seconds"])
    return sum(gaps) / max(len(gaps), 1)


def _worker_start_seconds() -> float:
    """A new Ray actor with the trainable imported, from creation until it answers (the faster of two)."""
    import ray

    @ray.remote(num_cpus=1)
    class Probe:
        def ready(self) -> bool:
            import tlsweep.sweep.trainable  # noqa: F401 - what a trial's worker imports

            return True

    times = []
    for _ in range(2):
        start = time.perf_counter()
        actor = Probe.remote()
        ray.get(actor.ready.remote())
        times.append(time.perf_counter() - start)
        ray.kill(actor)
    return min(times)


def _loop(spec, configs: list[dict], threads: int, storage: Path) -> tuple[float, float]:
    """Seconds of the whole loop and mean seconds per epoch spent saving and copying the checkpoint."""
    import torch

    from tlsweep.sweep.preflight import check_or_raise
    from tlsweep.trial.loop import Trial

    torch.set_num_threads(threads)
    shutil.rmtree(storage, ignore_errors=True)
    start, saving = time.perf_counter(), []
    check_or_raise(spec)
    for i, config in enumerate(configs):
        trial = Trial(config)
        for _ in trial.run():
            t = time.perf_counter()
            with tempfile.TemporaryDirectory() as directory:
                trial.save(directory)
                shutil.copytree(directory, storage / f"trial_{i}" / f"checkpoint_{trial.epoch:06d}")
            saving.append(time.perf_counter() - t)
    return time.perf_counter() - start, sum(saving) / len(saving)


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
    storage = fresh_dir("tune_overhead_loop")
    startup = start_ray()
    _loop(spec, configs[:1], cores, storage)  # warm-up: first model build, data, allocator
    loops, loop_save = map(list, zip(_loop(spec, configs, cores, storage)))
    start = time.perf_counter()
    result = run_sweep(spec)
    tune_s = time.perf_counter() - start
    if not quick:
        total, save = _loop(spec, configs, cores, storage)
        loops.append(total)
        loop_save.append(save)
    loop_s = median(loops)
    per_epoch_loop = median(loop_save)
    assert (result.trials["status"] == "finished").all(), result.trials[["status", "error"]]
    n, per_epoch = len(configs), _per_epoch_overhead(result.trials["path"])
    ratio = tune_s / loop_s
    worker = _worker_start_seconds()
    rest = tune_s - loop_s - worker - n * epochs * (per_epoch - per_epoch_loop)
    return [{
        "benchmark": "tune_overhead",
        "baseline": f"plain loop of Trial, same preflight and checkpoints: {loop_s:.1f} s",
        "candidate": f"run_sweep on Ray: {tune_s:.1f} s",
        "ratio": ratio, "target": "≤ 1.10×", "met": ratio <= 1.10,
        "notes": (f"{n} trials × {epochs} epochs of {loop_s / (n * epochs):.1f} s, sequential, {cores} thread, one "
                  f"reused trial worker, loop warmed up; extra {tune_s - loop_s:.1f} s = trial worker start "
                  f"{worker:.1f} s (timed: a new actor importing the trainable) + {per_epoch - per_epoch_loop:.2f} s/epoch "
                  f"(outside the epoch: Tune {per_epoch:.2f} s, checkpoint save+copy+report; loop "
                  f"{per_epoch_loop:.2f} s, save+copy) × {n * epochs} + {rest:.1f} s rest; without the "
                  f"worker start {(tune_s - worker) / loop_s:.2f}×; Ray start-up {startup:.1f} s not included (with "
                  f"it {(tune_s + startup) / loop_s:.2f}×); loop runs: " + ", ".join(f"{x:.1f}" for x in loops) + " s"),
    }]
