"""ASHA vs FIFO on the same fixed configs (one model, learning rates spread log-evenly over 1e-4..1e-1, in a
fixed shuffled order): share of the epoch budget and of the seconds ASHA uses, and how much best val accuracy
it gives up. Both sweeps on the same local Ray, two one-thread trials at a time."""

from __future__ import annotations

import random
import time

import numpy as np

from ._common import shapes, start_ray, sweep_spec


def _sweep(name: str, root, lrs: list[float], epochs: int, scheduler: dict):
    from tlsweep.sweep.runner import run_sweep

    spec = sweep_spec(name, root, models=["resnet18"], epochs=epochs, scheduler=scheduler,
                      search={"lr": {"grid": lrs}, "batch_size": 16, "lr_scheduler": "none"},
                      searcher={"type": "grid"}, max_concurrent=2, resources={"cpu": 1})
    start = time.perf_counter()
    result = run_sweep(spec)
    return result.trials, time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    n, epochs = (6, 3) if quick else (8, 9)
    lrs = [float(f"{x:.3g}") for x in np.logspace(-4, -1, n)]
    random.Random(0).shuffle(lrs)
    root = shapes("asha", 3, train=16, val=20)  # 60 val images
    start_ray()
    fifo, fifo_s = _sweep("asha_fifo", root, lrs, epochs, {"type": "fifo"})
    asha, asha_s = _sweep("asha_asha", root, lrs, epochs,
                          {"type": "asha", "grace_period": 1, "reduction_factor": 3})
    assert fifo["epochs"].sum() == n * epochs, fifo[["status", "epochs", "error"]]
    share = asha["epochs"].sum() / (n * epochs)
    seconds_share = asha["seconds"].sum() / fifo["seconds"].sum()
    gap = 100 * (fifo["val_acc"].max() - asha["val_acc"].max())
    len_val = 3 * 20
    stopped_best = fifo.loc[fifo["val_acc"].idxmax(), "config/lr"]
    best_epochs = int(asha.loc[asha["config/lr"] == stopped_best, "epochs"].iloc[0])
    return [{
        "benchmark": "asha",
        "baseline": f"FIFO: {n * epochs} epochs, {fifo_s:.0f} s, best val acc {fifo['val_acc'].max():.3f}",
        "candidate": f"ASHA: {int(asha['epochs'].sum())} epochs, {asha_s:.0f} s, best val acc {asha['val_acc'].max():.3f}",
        "ratio": share, "target": "≤ 0.35× of the epochs, ≤ 1 point lost", "met": share <= 0.35 and gap <= 1.0,
        "notes": (f"{n} resnet18 configs × {epochs} epochs (grace 1, reduction 3), lr order {lrs}; FIFO's best lr {stopped_best:g} got {best_epochs} epoch(s) under ASHA; "
                  f"gap {gap:.1f} points (one val image = {100 / len_val:.1f}); training seconds {seconds_share:.2f}×, sweep wall {asha_s / fifo_s:.2f}×"),
    }]
