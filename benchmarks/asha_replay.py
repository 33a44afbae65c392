"""Replay Ray's ASHA rule (``ray.tune.schedulers.async_hyperband._Bracket``) on learning curves recorded by a FIFO
sweep: which epochs ASHA would have run for a given trial order and number of concurrent trials. Averaging over
many orders shows ASHA's typical saving without one order's luck (the first trial at each rung always goes on).
``bracket`` replays another rule with Ray's bracket interface, e.g. tlsweep's ``NoiseBracket`` (``noise_bracket``)."""

from __future__ import annotations

import heapq
import random
from types import SimpleNamespace


def noise_bracket(val_images: int, band="binomial", z: float | None = None, rejudge: bool = True):
    """A ``bracket`` factory for ``replay``: tlsweep's noise-aware rule for a val set of ``val_images`` (``z``:
    default tlsweep's)."""
    from tlsweep.sweep.noise_asha import NOISE_Z, NoiseBracket

    z = NOISE_Z if z is None else z

    def make(grace, max_t, rf):
        bracket = NoiseBracket(grace, max_t, rf, 0, band=band, z=z, rejudge=rejudge)
        bracket.val_images = val_images
        return bracket

    return make


def replay(curves: list[list[tuple[float, float]]], order: list[int], max_t: int, grace: int, rf: float,
           slots: int, mode: str = "max", bracket=None) -> dict[int, int]:
    """Epochs each trial runs under ASHA. ``curves[i]``: per epoch (metric, seconds) of config ``i``;
    ``bracket(grace, max_t, rf)`` makes the rule (default Ray's ``_Bracket``)."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    bracket = (bracket or (lambda g, m, r: _Bracket(min_t=g, max_t=m, reduction_factor=r, s=0)))(grace, max_t, rf)
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
                  mode: str = "max", bracket=None) -> list[tuple[float, float]]:
    """(share of the FIFO epochs, points of best metric lost) for ``orders`` random trial orders."""
    n, out = len(curves), []
    best = max(max(m for m, _ in c) for c in curves)
    for k in range(orders):
        order = random.Random(seed + k).sample(range(n), n)
        epochs = replay(curves, order, max_t, grace, rf, slots, mode, bracket)
        got = max(max(m for m, _ in curves[i][:e]) for i, e in epochs.items())
        out.append((sum(epochs.values()) / (n * max_t), 100 * (best - got)))
    return out
