"""ASHA vs FIFO on the same fixed configs (one model, learning rates spread log-evenly over 1e-4..1e-1, in a
fixed shuffled order): share of the epoch budget and of the seconds ASHA uses, and how much best val accuracy
it gives up. Both sweeps on the same local Ray, two one-thread trials at a time.

Asynchronous ASHA always lets the first trial at a rung go on, so one sweep's share depends on which configs
happen to come first. The ratio is therefore the mean over 200 random trial orders of Ray's own ASHA rule
replayed on the FIFO sweep's learning curves (``asha_replay``; the curves are deterministic: same seed, one
thread). The real ASHA sweep, in the fixed order, is reported beside it; its order replayed on FIFO's epoch times
can differ from it by which trial happens to report first at a rung."""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from ._common import shapes, start_ray, sweep_spec
from .asha_replay import replay, replay_orders

GRACE, RF, SLOTS = 1, 3, 2


def _sweep(name: str, root, lrs: list[float], epochs: int, scheduler: dict, model: str = "resnet18"):
    from tlsweep.sweep.runner import run_sweep

    spec = sweep_spec(name, root, models=[model], epochs=epochs, scheduler=scheduler,
                      search={"lr": {"grid": lrs}, "batch_size": 16, "lr_scheduler": "none"},
                      searcher={"type": "grid"}, max_concurrent=SLOTS, resources={"cpu": 1})
    start = time.perf_counter()
    result = run_sweep(spec)
    return result.trials, time.perf_counter() - start


def _curves(trials, lrs: list[float]) -> list[list[tuple[float, float]]]:
    """Per config (in ``lrs`` order): (val_acc, seconds) of each epoch, from the trials' result.json."""
    by_lr = {}
    for _, row in trials.iterrows():
        rows = [json.loads(line) for line in (Path(row["path"]) / "result.json").read_text().splitlines()]
        by_lr[row["lr"]] = [(r["val_acc"], r["time_this_iter_s"]) for r in rows]
    return [by_lr[lr] for lr in lrs]


def run(quick: bool = False) -> list[dict]:
    n, epochs = (6, 3) if quick else (16, 9)
    lrs = [float(f"{x:.3g}") for x in np.logspace(-4, -1, n)]
    random.Random(0).shuffle(lrs)
    root = shapes("asha", 3, train=16, val=20)  # 60 val images
    start_ray()
    fifo, fifo_s = _sweep("asha_fifo", root, lrs, epochs, {"type": "fifo"})
    asha, asha_s = _sweep("asha_asha", root, lrs, epochs,
                          {"type": "asha", "grace_period": GRACE, "reduction_factor": RF})
    assert fifo["epochs"].sum() == n * epochs, fifo[["status", "epochs", "error"]]
    curves = _curves(fifo, lrs)
    replays = replay_orders(curves, epochs, GRACE, RF, SLOTS)
    share = statistics.mean(s for s, _ in replays)
    worst_gap = max(g for _, g in replays)
    replayed_fixed = sum(replay(curves, list(range(n)), epochs, GRACE, RF, SLOTS).values())
    real_share = asha["epochs"].sum() / (n * epochs)
    seconds_share = asha["wall_s"].sum() / fifo["wall_s"].sum()
    gap = 100 * (fifo["val_acc"].max() - asha["val_acc"].max())
    len_val = 3 * 20
    stopped_best = fifo.loc[fifo["val_acc"].idxmax(), "lr"]
    best_epochs = int(asha.loc[asha["lr"] == stopped_best, "epochs"].iloc[0])
    return [{
        "benchmark": "asha",
        "baseline": f"FIFO: {n * epochs} epochs, {fifo_s:.0f} s, best val acc {fifo['val_acc'].max():.3f}",
        "candidate": (f"ASHA: {statistics.mean(s for s, _ in replays) * n * epochs:.0f} epochs on average over "
                      f"{len(replays)} trial orders (this sweep's order: {int(asha['epochs'].sum())} epochs, "
                      f"{asha_s:.0f} s, best val acc {asha['val_acc'].max():.3f})"),
        "ratio": share, "target": "≤ 0.35× of the epochs, ≤ 1 point lost",
        "met": share <= 0.35 and max(gap, worst_gap) <= 1.0,
        "notes": (f"{n} resnet18 configs × {epochs} epochs (grace {GRACE}, reduction {RF}, {SLOTS} trials at a "
                  f"time); ratio = mean epoch share of Ray's ASHA rule replayed on the FIFO curves over "
                  f"{len(replays)} random orders (median {statistics.median(s for s, _ in replays):.2f}, "
                  f"≤ 0.35 in {100 * np.mean([s <= 0.35 for s, _ in replays]):.0f}% of orders, at most "
                  f"{worst_gap:.1f} points lost); this sweep's order {lrs}: real {real_share:.2f}× "
                  f"(replayed on FIFO's epoch times {replayed_fixed / (n * epochs):.2f}×), gap {gap:.1f} points "
                  f"(one val image = {100 / len_val:.1f}), FIFO's best lr {stopped_best:g} got {best_epochs} "
                  f"epoch(s); training seconds {seconds_share:.2f}×, sweep wall {asha_s / fifo_s:.2f}×"),
    }]
