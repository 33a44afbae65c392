"""ASHA vs FIFO on the same fixed configs (one model, learning rates spread log-evenly over 1e-4..1e-1): share of
the epoch budget ASHA uses and how much best val accuracy it gives up, both measured on real sweeps on the same
local Ray, two one-thread trials at a time. Data a FIFO sweep does not solve (six shapes told apart by shape
alone, not colour) with a validation split where one image is well under a point.

Asynchronous ASHA always lets the first trial at a rung go on, so one sweep's share depends on the order configs
arrive in: the real ASHA sweep runs in several shuffled orders and the ratio is the mean of their measured
shares. Ray's own ASHA rule replayed on the FIFO sweep's curves over 200 random orders (``asha_replay``) is a
note beside it."""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from ._common import shapes, start_ray, sweep_spec
from .asha_replay import replay_orders

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
    n, epochs, orders = (6, 3, 1) if quick else (16, 9, 3)
    lrs = [float(f"{x:.3g}") for x in np.logspace(-4, -1, n)]
    classes, val_per_class = 6, 25
    root = shapes("asha_shape_only", classes, train=16, val=val_per_class, colour_cue=False)
    len_val = classes * val_per_class
    start_ray()
    fifo, fifo_s = _sweep("asha_fifo", root, lrs, epochs, {"type": "fifo"})
    assert fifo["epochs"].sum() == n * epochs, fifo[["status", "epochs", "error"]]
    fifo_best = fifo["val_acc"].max()
    real = []  # per order: (epoch share, points lost, seconds share, wall s, order)
    for k in range(orders):
        order = random.Random(k).sample(lrs, n)
        asha, asha_s = _sweep(f"asha_asha{k}", root, order, epochs,
                              {"type": "asha", "grace_period": GRACE, "reduction_factor": RF})
        real.append((asha["epochs"].sum() / (n * epochs), 100 * (fifo_best - asha["val_acc"].max()),
                     asha["wall_s"].sum() / fifo["wall_s"].sum(), asha_s))
    share = statistics.mean(r[0] for r in real)
    worst_gap = max(r[1] for r in real)
    replays = replay_orders(_curves(fifo, lrs), epochs, GRACE, RF, SLOTS)
    return [{
        "benchmark": "asha",
        "baseline": f"FIFO: {n * epochs} epochs, {fifo_s:.0f} s, best val acc {fifo_best:.3f}",
        "candidate": (f"ASHA: {share * n * epochs:.0f} epochs on average over {orders} real sweep(s) in shuffled "
                      f"orders, best val acc lost at most {worst_gap:.1f} points"),
        "ratio": share, "target": "≤ 0.35× of the epochs, ≤ 1 point lost",
        "met": share <= 0.35 and worst_gap <= 1.0,
        "notes": (f"{n} resnet18 configs × {epochs} epochs (grace {GRACE}, reduction {RF}, {SLOTS} trials at a "
                  f"time), {classes} shape-only classes, {len_val} val images (one = {100 / len_val:.2f} points); "
                  f"real ASHA sweeps (epoch share, points lost, training-seconds share, wall s): "
                  + "; ".join(f"{s:.2f}×, {g:.1f}, {t:.2f}×, {w:.0f}" for s, g, t, w in real) +
                  f"; Ray's ASHA rule replayed on FIFO's curves over {len(replays)} random orders: mean "
                  f"{statistics.mean(s for s, _ in replays):.2f}× (median {statistics.median(s for s, _ in replays):.2f}, "
                  f"≤ 0.35 in {100 * np.mean([s <= 0.35 for s, _ in replays]):.0f}% of orders, at most "
                  f"{max(g for _, g in replays):.1f} points lost)"),
    }]
