"""Calibration: expected calibration error, reliability-diagram bins and temperature scaling (Guo et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin (equal width on [0, 1]): images, mean confidence, accuracy; and the ECE over them."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray  # NaN for empty bins
    accuracy: np.ndarray
    ece: float


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Bins of the top-class confidence; ECE = Σ_b n_b/n · |acc_b − conf_b| (Guo et al.'s 15 equal bins)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # bins are (lo, hi]
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, bins) / counts
        acc = np.bincount(which, correct.astype(float), bins) / counts
    gaps = np.where(counts > 0, np.abs(np.nan_to_num(acc) - np.nan_to_num(mean_conf)), 0.0)
    ece = float((counts * gaps).sum() / max(len(labels), 1))
    return Reliability(edges, counts, mean_conf, acc, ece)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    return reliability(probs, labels, bins).ece


def fit_temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature minimising the validation NLL of ``softmax(logits / T)`` (bounded search on log T);
    1.0 without images."""
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if not len(labels):
        return 1.0
    res = minimize_scalar(lambda t: nll(logits, labels, float(np.exp(t))), bounds=(np.log(low), np.log(high)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
