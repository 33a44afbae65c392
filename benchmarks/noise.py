"""What early stopping decides on, measured on FIFO learning curves (``curves[seed][config]``: per epoch
(val_acc, seconds)): the spread of one config's score across seeds against the gaps between configs, the rank
correlation of the first rung with the end, and how often an ASHA rule stops a config that would have finished
in the top quarter (replayed over random orders, ``asha_replay``)."""

from __future__ import annotations

import random
import statistics

import numpy as np

from .asha_replay import replay


def seed_spread(curves: list[list[list[tuple[float, float]]]], epoch: int) -> tuple[float, float]:
    """(median over configs of the std across seeds, median gap between neighbouring configs' seed means) at
    ``epoch`` (1-based)."""
    values = np.array([[c[epoch - 1][0] for c in seed] for seed in curves])  # seeds × configs
    spread = float(np.median(values.std(axis=0, ddof=1))) if len(curves) > 1 else float("nan")
    means = np.sort(values.mean(axis=0))
    return spread, float(np.median(np.diff(means)))


def rank_correlation(curves: list[list[list[tuple[float, float]]]], first: int) -> float:
    """Spearman correlation of val acc at epoch ``first`` with the final epoch's, averaged over seeds."""
    from scipy.stats import spearmanr

    rhos = [spearmanr([c[first - 1][0] for c in seed], [c[-1][0] for c in seed]).statistic for seed in curves]
    return float(np.nanmean(rhos))


def top_quarter_stopped(curves: list[list[tuple[float, float]]], max_t: int, grace: int, rf: float, slots: int,
                        orders: int = 200, bracket=None) -> tuple[float, float, float]:
    """(share of epochs, share of top-quarter configs stopped early, mean points of best val lost) under an ASHA
    rule over ``orders`` random orders of one seed's curves."""
    n = len(curves)
    final = [c[-1][0] for c in curves]
    top = set(sorted(range(n), key=lambda i: -final[i])[:max(1, n // 4)])
    best = max(max(m for m, _ in c) for c in curves)
    shares, stopped, lost = [], [], []
    for k in range(orders):
        order = random.Random(k).sample(range(n), n)
        epochs = replay(curves, order, max_t, grace, rf, slots, bracket=bracket)
        shares.append(sum(epochs.values()) / (n * max_t))
        stopped.append(sum(epochs[i] < max_t for i in top) / len(top))
        lost.append(100 * (best - max(max(m for m, _ in curves[i][:e]) for i, e in epochs.items())))
    return statistics.mean(shares), statistics.mean(stopped), statistics.mean(lost)
