"""Replay Ray's ASHA rule (``ray.tune.schedulers.async_hyperband._Bracket``) on learning curves recorded by a FIFO
sweep: which epochs ASHA would have run for a given trial order and number of concurrent trials. Averaging over
many orders shows ASHA's typical saving without one order's luck (the first trial at each rung always goes on)."""

from __future__ import annotations

import heapq
import random
from types import SimpleNamespace


def replay(curves: list[list[tuple[float, float]]], order: list[int], max_t: int, grace: int, rf: float,
           slots: int, mode: str = "max") -> dict[int, int]:
    """Epochs each trial runs under ASHA. ``curves[i]``: per epoch (metric, seconds) of config ``i``."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = _Bracket(min_t=grace, max_t=max_t, reduction_factor=rf, s=0)
    sign = 1.0 if mode == "max" else -1.0
    queue, events, epochs = list(order), [], {}

    def start(i: int, now: float) -> None:
        epochs[i] = 0
        heapq.heappush(events, (now + curves[i][0][1], i))

    for _ in range(slots):
        if queue:
            start(queue.pop(0), 0.0)
    while events:
        now, i = heapq.heappop(events)
        epochs[i] += 1
        action = bracket.on_result(SimpleNamespace(trial_id=str(i)), epochs[i], sign * curves[i][epochs[i] - 1][0])
        if action == "STOP" or epochs[i] >= max_t:
            if queue:
                start(queue.pop(0), now)
        else:
            heapq.heappush(events, (now + curves[i][epochs[i]][1], i))
    return epochs


def replay_orders(curves, max_t: int, grace: int, rf: float, slots: int, orders: int = 200, seed: int = 0,
                  mode: str = "max") -> list[tuple[float, float]]:
    """(share of the FIFO epochs, points of best metric lost) for ``orders`` random trial orders."""
    n, out = len(curves), []
    best = max(max(m for m, _ in c) for c in curves)
    for k in range(orders):
        order = random.Random(seed + k).sample(range(n), n)
        epochs = replay(curves, order, max_t, grace, rf, slots, mode)
        got = max(max(m for m, _ in curves[i][:e]) for i, e in epochs.items())
        out.append((sum(epochs.values()) / (n * max_t), 100 * (best - got)))
    return out
