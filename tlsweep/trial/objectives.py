"""What a sweep optimises: objectives (a metric and a direction) and constraints, by metric name.

A metric comes from the trial (per epoch: ``val_acc``, ``val_loss``, ``macro_f1``; ``train_s``, the training
seconds up to that epoch) or from the model (``params``; ``latency_ms``, measured once per model config on the
trial's device, see ``tlsweep.trial.latency``). A trial's values are read from its best epoch by the first per-epoch
objective, the epoch ASHA and the tables also rank it by. Ray-free; a ``SweepPlan`` in, plain numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ..config.plan import SweepPlan



@dataclass(frozen=True)
class Metric:
    name: str  # in the sweep file and as the column of the trials' tables
    result_key: str  # in a trial's reported results (Tune's result rows)
    mode: str  # default direction
    per_epoch: bool  # a learning-curve value ASHA can stop on
    help: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("val_acc", "val_acc", "max", True, "validation accuracy"),
    Metric("val_loss", "val_loss", "min", True, "validation loss"),
    Metric("macro_f1", "val_macro_f1", "max", True, "validation macro-F1 (mean F1 over classes)"),
    Metric("train_s", "train_s", "min", False, "training seconds up to the best epoch"),
    Metric("params", "total_params", "min", False, "the model's parameters"),
    Metric("latency_ms", "latency_ms", "min", False,
           "batch-1 forward time on the trial's device (ms, best of N, measured once per model config)"),
)}
FEASIBLE, PARETO = "feasible", "pareto"


def objectives(plan: SweepPlan) -> list[tuple[Metric, str]]:
    """The sweep's objectives as (metric, mode), in order; empty for a classic single-metric sweep."""
    return [(METRICS[o.metric], o.mode or METRICS[o.metric].mode) for o in plan.objectives]


def constraints(plan: SweepPlan) -> dict[str, dict]:
    """``{metric: {"min": …, "max": …}}`` with unset bounds left out."""
    return {name: {k: float(v) for k, v in (("min", b.min), ("max", b.max)) if v is not None}
            for name, b in plan.constraints.items()}


def tracked(plan: SweepPlan) -> list[str]:
    """Metric names the trials' tables carry: objectives first, then constraint metrics."""
    names = [m.name for m, _ in objectives(plan)]
    return names + [n for n in constraints(plan) if n not in names]


def needs(plan: SweepPlan, name: str) -> bool:
    return name in tracked(plan)


def values_of(row: Mapping, names: list[str]) -> dict[str, float]:
    """Metric values from one result row (keys as reported by the trial); NaN where missing."""
    out = {}
    for name in names:
        value = row.get(METRICS[name].result_key)
        out[name] = float(value) if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
            else math.nan
    return out


def violations(values: Mapping[str, float], bounds: Mapping[str, dict]) -> dict[str, float]:
    """Optuna-style constraint values, one per bound (``latency_ms.max``): > 0 violates, NaN when unmeasured."""
    out = {}
    for name, bound in bounds.items():
        v = values.get(name, math.nan)
        if "max" in bound:
            out[f"{name}.max"] = v - bound["max"]
        if "min" in bound:
            out[f"{name}.min"] = bound["min"] - v
    return out


def is_feasible(values: Mapping[str, float], bounds: Mapping[str, dict]) -> bool:
    """Every bound met (an unmeasured value meets none)."""
    return all(c <= 0 for c in violations(values, bounds).values())  # NaN <= 0 is False


def pareto_mask(points: np.ndarray, modes: list[str]) -> np.ndarray:
    """Which rows of ``points`` (n × k) no other row dominates (at least as good everywhere, better somewhere)."""
    points = np.asarray(points, dtype=float).reshape(len(points), len(modes))
    signed = points * np.array([-1.0 if m == "max" else 1.0 for m in modes])  # all minimised
    mask = np.ones(len(signed), dtype=bool)
    for i, p in enumerate(signed):
        dominated_by = np.all(signed <= p, axis=1) & np.any(signed < p, axis=1)
        mask[i] = not dominated_by.any()
    return mask


def ranking_metric(plan: SweepPlan) -> tuple[str, str]:
    """The result key and mode that pick a trial's best epoch (the scheduler's metric)."""
    return plan.scheduler.metric, plan.scheduler.mode


def annotate(frame: pd.DataFrame, plan: SweepPlan, usable: tuple[str, ...]) -> pd.DataFrame:
    """Add ``feasible`` (with constraints) and ``pareto`` (with ≥ 2 objectives) to a trials' table whose
    metric columns are named as in ``METRICS``: the Pareto front is taken over ``usable`` (finished or stopped),
    feasible trials with every objective measured."""
    bounds, objs = constraints(plan), objectives(plan)
    if frame.empty:
        return frame
    ok = frame["status"].isin(usable) if "status" in frame else pd.Series(True, index=frame.index)
    if bounds:
        frame[FEASIBLE] = [is_feasible({n: _num(r.get(n)) for n in bounds}, bounds) for r in frame.to_dict("records")]
        ok &= frame[FEASIBLE]
    if len(objs) >= 2:
        names = [m.name for m, _ in objs]
        values = frame.reindex(columns=names).apply(pd.to_numeric, errors="coerce").to_numpy(float)
        ok &= np.isfinite(values).all(axis=1)
        front = np.zeros(len(frame), dtype=bool)
        idx = np.flatnonzero(ok.to_numpy())
        if len(idx):
            front[idx] = pareto_mask(values[idx], [mode for _, mode in objs])
        frame[PARETO] = front
    return frame


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
