"""The answer first: the winner (picked on validation), its test accuracy with interval, the models it cannot be
told apart from, what mattered most, and what the sweep cost. Written to ``summary.json`` and atop the page."""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass

import pandas as pd

from .cost import TOTAL, duration_text
from .importance import Importance
from .stats import ALPHA, LEVEL, Comparison


@dataclass(frozen=True)
class Summary:
    winner: str
    metric: str
    val_value: float  # the winner's validation metric at the picked epoch
    test_correct: int
    test_total: int
    test_acc: float
    test_acc_low: float
    test_acc_high: float
    tied: list[str]  # not distinguishable from the winner on test (McNemar exact, Holm, ALPHA)
    better: list[str]  # significantly better than the winner on test (the winner was picked on val)
    worse: list[str]
    top_param: str | None  # the winner's most important hyperparameter (fANOVA), or None with a note
    top_importance: float | None
    importance_note: str
    trials: int
    cpu_hours: float
    gpu_hours: float
    wall_seconds: float

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def summarize(metric: str, best: str, val_value: float, correct, ci: tuple[float, float],
              comparisons: dict[str, Comparison], importance: Importance | None, costs: pd.DataFrame,
              wall_seconds: float) -> Summary:
    """``correct``: the winner's 0/1 outcome per test image."""
    groups = {g: [m for m, c in comparisons.items() if c.group == g] for g in ("tied", "better", "worse")}
    top = importance.top if importance is not None else None
    total = costs[costs["model"] == TOTAL].iloc[0]
    n = len(correct)
    return Summary(best, metric, float(val_value), int(sum(correct)), n, float(sum(correct)) / n if n else math.nan,
                   ci[0], ci[1], groups["tied"], groups["better"], groups["worse"],
                   top[0] if top else None, float(top[1]) if top else None,
                   importance.note if importance is not None else "no searched hyperparameters",
                   int(total["trials"]), float(total["cpu_hours"]), float(total["gpu_hours"]), float(wall_seconds))


def _names(models: list[str]) -> str:
    return ", ".join(f"<b>{html.escape(m)}</b>" for m in models)


def to_html(s: Summary) -> str:
    e = html.escape
    items = [f"Winner (best {e(s.metric)} on validation: {s.val_value:.4g}): <b id='winner'>{e(s.winner)}</b>",
             f"Test accuracy <b id='test-acc'>{s.test_acc:.3f}</b> ({s.test_correct}/{s.test_total} images), "
             f"{LEVEL:.0%} interval <span id='test-ci'>[{s.test_acc_low:.3f}, {s.test_acc_high:.3f}]</span> "
             f"(Clopper–Pearson)"]
    if s.tied:
        items.append(f"Not distinguishable from the winner on test at α = {ALPHA:g} (McNemar exact, Holm): "
                     f"<span id='tied'>{_names(s.tied)}</span>")
    elif s.better or s.worse:
        items.append(f"Every other model differs from the winner on test at α = {ALPHA:g} (McNemar exact, Holm)")
    else:
        items.append("The only model with a usable checkpoint")
    if s.better:
        items.append(f"Better than the winner on test (picked on validation, so the test split did not choose): "
                     f"<span id='better'>{_names(s.better)}</span>")
    if s.worse:
        items.append(f"Worse than the winner on test: {_names(s.worse)}")
    if s.top_param is not None:
        items.append(f"What mattered most for {e(s.winner)}: <b id='top-param'>{e(s.top_param)}</b> "
                     f"(<span id='top-importance'>{s.top_importance:.0%}</span> of the fANOVA importance)")
    else:
        items.append(f"What mattered: not measurable for {e(s.winner)} ({e(s.importance_note)})")
    items.append(f"Cost: <span id='cpu-hours'>{s.cpu_hours:.3g}</span> CPU-hours, "
                 f"<span id='gpu-hours'>{s.gpu_hours:.3g}</span> GPU-hours over {s.trials} trials; "
                 f"{duration_text(s.wall_seconds)} wall-clock")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
