"""Post-hoc ensemble selection (Caruana et al., 2004): greedy forward selection with replacement of the models
whose averaged validation probabilities give the best validation accuracy. Not the trained two-backbone
ensembles of ``tlsweep.models.ensemble``: these combine finished checkpoints and train nothing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Selection:
    members: tuple[int, ...]  # indices into the candidates, in order of first pick
    weights: tuple[float, ...]  # per member, summing to 1 (pick counts / steps)
    val_acc: float
    val_nll: float
    steps: int  # picks in the kept prefix (with repeats)
    trace: tuple[float, ...]  # val accuracy after each step


def _score(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    acc = float((probs.argmax(axis=1) == labels).mean())
    nll = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return acc, nll


def greedy_selection(val_probs: list[np.ndarray], labels: np.ndarray, max_steps: int) -> Selection:
    """``val_probs``: each candidate's (n, classes) validation probabilities, best candidate first. Each step
    adds the candidate (repeats allowed) that maximises the accuracy of the average, ties broken by lower NLL and
    then by candidate order. Of the ``max_steps`` picks, the shortest prefix whose accuracy is within one
    validation image of the best is kept: a one-image gain is noise, and each member costs a forward pass."""
    if not val_probs:
        raise ValueError("ensemble selection needs at least one candidate")
    labels = np.asarray(labels)
    stacked = np.stack([np.asarray(p, np.float64) for p in val_probs])
    total = np.zeros_like(stacked[0])
    picks: list[int] = []
    trace: list[tuple[float, float]] = []
    for step in range(1, max_steps + 1):
        scores = [_score((total + p) / step, labels) for p in stacked]
        i = min(range(len(scores)), key=lambda j: (-scores[j][0], scores[j][1], j))
        total += stacked[i]
        picks.append(i)
        trace.append(scores[i])
    enough = max(acc for acc, _ in trace) - 1.0 / len(labels) - 1e-12
    steps = next(k for k, (acc, _) in enumerate(trace, 1) if acc >= enough)
    acc, nll = trace[steps - 1]
    kept = picks[:steps]
    members = tuple(dict.fromkeys(kept))
    weights = tuple(kept.count(m) / steps for m in members)
    return Selection(members, weights, acc, nll, steps, tuple(a for a, _ in trace))


def combine(probs: list[np.ndarray], weights) -> np.ndarray:
    """The weighted mean of the members' probabilities."""
    return sum(w * np.asarray(p, np.float64) for w, p in zip(weights, probs))
