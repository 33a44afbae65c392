"""Test-set statistics: exact intervals for accuracy, a bootstrap interval for macro-F1, and paired McNemar tests
of the best model against the others (Holm-corrected)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
ALPHA = 0.05
INTERVAL_METHOD = "exact"  # Clopper–Pearson: coverage at least LEVEL for every n and k, also at 0% and 100%


def accuracy_interval(correct: int, total: int, level: float = LEVEL) -> tuple[float, float]:
    """Clopper–Pearson interval of a proportion ``correct / total`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    if total == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(correct), int(total)).proportion_ci(confidence_level=level, method=INTERVAL_METHOD)
    return float(ci.low), float(ci.high)


def macro_f1_batch(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 along the last axis (sklearn's ``average="macro", zero_division=0`` over ``num_classes``
    labels), vectorized over leading axes so a bootstrap scores all resamples at once."""
    scores = []
    for c in range(num_classes):
        t, p = labels == c, preds == c
        tp = (t & p).sum(-1)
        denom = t.sum(-1) + p.sum(-1)
        scores.append(np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0))
    return np.mean(scores, axis=0)


def macro_f1_interval(labels: np.ndarray, preds: np.ndarray, num_classes: int, level: float = LEVEL,
                      n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of macro-F1 over test images (``scipy.stats.bootstrap``, paired labels/preds)."""
    from scipy.stats import bootstrap

    if len(labels) < 2:
        return float("nan"), float("nan")
    res = bootstrap((np.asarray(labels), np.asarray(preds)), lambda y, p, axis=-1: macro_f1_batch(y, p, num_classes),
                    paired=True, vectorized=True, n_resamples=n_resamples, confidence_level=level,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test on paired 0/1 outcomes: ``(only a right, only b right, two-sided p)``, the p-value
    of ``binomtest`` on the discordant pairs (1.0 when there are none)."""
    from scipy.stats import binomtest

    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order."""
    p = np.asarray(pvalues, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class Comparison:
    """One model against the best: discordant pairs, raw and Holm-adjusted p, and the verdict."""

    model: str
    best_only: int  # test images only the best model got right
    other_only: int  # test images only this model got right
    p: float
    p_holm: float
    group: str


def compare_to_best(correct: dict[str, np.ndarray], best: str, alpha: float = ALPHA) -> dict[str, Comparison]:
    """McNemar's exact test of ``best`` against every other model on the same test images, Holm-corrected over
    the comparisons. Groups: ``best``, ``tied`` (not distinguishable from the best at ``alpha``), ``worse`` or
    ``better`` (on test; the best was picked on validation)."""
    others = [m for m in correct if m != best]
    tests = [mcnemar_exact(correct[best], correct[m]) for m in others]
    adjusted = holm([p for *_, p in tests]) if tests else []
    out = {best: Comparison(best, 0, 0, float("nan"), float("nan"), "best")}
    for m, (b_only, o_only, p), p_adj in zip(others, tests, adjusted):
        group = "tied" if p_adj >= alpha else ("better" if o_only > b_only else "worse")
        out[m] = Comparison(m, b_only, o_only, p, float(p_adj), group)
    return out


def comparison_frame(comparisons: dict[str, Comparison]) -> pd.DataFrame:
    return pd.DataFrame([vars(c) for c in comparisons.values()])
