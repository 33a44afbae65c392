"""Pick the best checkpoint per model by the validation metric, evaluate each once on test, tabulate."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..results.layout import USABLE
from ..trial.objectives import constraints, is_feasible, values_of
from .collect import Sweep, TrialRecord
from .evaluate import Evaluation
from .stats import ALPHA, Comparison, compare_to_best

CONFIG_COLUMNS = ("lr", "batch_size", "freeze_depth", "optimizer", "lr_scheduler", "lr_decay", "head_lr_mult",
                  "unfreeze_every", "preprocess")

RECIPE_DEFAULTS = {"lr_decay": 1.0, "head_lr_mult": 1.0, "unfreeze_every": None, "preprocess": None}


@dataclass
class Pick:
    """The chosen checkpoint of one model: its trial, epoch and validation row."""

    model: str
    trial: TrialRecord
    epoch: int
    val: pd.Series

    @property
    def checkpoint(self):
        return self.trial.checkpoints[self.epoch]


def pick_best(sweep: Sweep) -> dict[str, Pick]:
    """Per model, the kept checkpoint with the best validation metric (never test), best model first."""
    best: dict[str, Pick] = {}
    sign = -1 if sweep.mode == "max" else 1
    bounds = constraints(sweep.plan)
    for trial in sweep.trials:
        if trial.status not in USABLE:
            continue
        row = trial.best_row(sweep.metric, sweep.mode)
        if row is None or (bounds and not is_feasible(values_of(row, list(bounds)), bounds)):
            continue  # a trial breaking the sweep's constraints is never the best
        pick = Pick(trial.model, trial, int(row["training_iteration"]), row)
        old = best.get(trial.model)
        if old is None or sign * row[sweep.metric] < sign * old.val[sweep.metric]:
            best[trial.model] = pick
    return dict(sorted(best.items(), key=lambda kv: sign * kv[1].val[sweep.metric]))


GROUP_TEXT = {"best": "best (by val)", "tied": "≈ best", "worse": "worse", "better": "better on test"}


def leaderboard(sweep: Sweep, picks: dict[str, Pick], evals: dict[str, Evaluation],
                comparisons: dict[str, Comparison] | None = None) -> pd.DataFrame:
    """One row per model/ensemble, in pick order (best validation metric first: the test split ranks nothing),
    with McNemar's test against the best (Holm-adjusted p, group; computed here unless given)."""
    if comparisons is None:
        comparisons = compare_to_best({m: e.correct for m, e in evals.items()}, next(iter(picks)))
    rows = []
    for model, pick in picks.items():
        ev, cmp = evals[model], comparisons[model]
        config = sweep.plan.trial_config(pick.trial.config)  # sampled values and what the sweep resolved
        trials = [t for t in sweep.trials if t.model == model]
        h = pick.trial.history
        rows.append({
            "model": model,
            "test_acc": ev.accuracy, "test_acc_ci_low": ev.ci_low, "test_acc_ci_high": ev.ci_high,
            "p_vs_best": cmp.p_holm, "group": cmp.group, "best_only": cmp.best_only, "other_only": cmp.other_only,
            "val_acc": float(pick.val.get("val_acc", float("nan"))),
            "macro_f1": ev.macro_f1, "macro_f1_ci_low": ev.f1_low, "macro_f1_ci_high": ev.f1_high,
            **{c: getattr(config, c) for c in CONFIG_COLUMNS},
            "epoch": pick.epoch, "epochs_trained": pick.trial.epochs,
            "trials_run": len(trials), "trials_stopped": sum(t.status == "stopped" for t in trials),
            "trials_failed": sum(t.status in ("error", "diverged") for t in trials),
            "train_s": float(h["train_seconds"].sum()) if "train_seconds" in h else float("nan"),
            "wall_s": float(sum(t.history["epoch_seconds"].sum() for t in trials if "epoch_seconds" in t.history)),
            "total_params": ev.total_params, "trainable_params": ev.trainable_params,
            "train_images_per_s": float(h["images_per_s"].mean()) if "images_per_s" in h else None,
            "latency_ms": ev.latency_ms,
            "trial_id": pick.trial.trial_id, "checkpoint": str(pick.checkpoint),
        })
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-style table without extra dependencies (pandas' to_markdown needs tabulate)."""
    shown = display_frame(frame)
    head = "| " + " | ".join(shown.columns) + " |"
    sep = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Rounded, human columns for Markdown/HTML/terminal."""
    out = pd.DataFrame({"model": frame["model"]})
    out["test acc (95% CI)"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                                zip(frame["test_acc"], frame["test_acc_ci_low"], frame["test_acc_ci_high"])]
    out["p vs best (McNemar, Holm)"] = frame["p_vs_best"].map(lambda p: "-" if p != p else f"{p:.3g}")
    out[f"vs best at α={ALPHA:g}"] = frame["group"].map(GROUP_TEXT)
    out["val acc"] = frame["val_acc"].map("{:.3f}".format)
    out["macro F1 (95% CI)"] = [f"{f:.3f} [{lo:.3f}, {hi:.3f}]" for f, lo, hi in
                                zip(frame["macro_f1"], frame["macro_f1_ci_low"], frame["macro_f1_ci_high"])]
    out["lr"] = frame["lr"].map(lambda v: f"{v:.2e}" if isinstance(v, (int, float)) else str(v))
    for c in ("batch_size", "freeze_depth", "optimizer", "lr_scheduler"):
        out[c.replace("_", " ")] = frame[c].astype(str)
    for c, default in RECIPE_DEFAULTS.items():  # fine-tuning recipe columns, where a sweep used them
        if c in frame and any(v is not None and v == v and v != default for v in frame[c]):
            out[c.replace("_", " ")] = frame[c].map(lambda v: "-" if v is None or v != v else f"{v:g}"
                                                    if isinstance(v, float) else str(v))
    out["epochs"] = [f"{e}/{n}" for e, n in zip(frame["epoch"], frame["epochs_trained"])]
    out["trials (stopped)"] = [f"{r} ({s})" for r, s in zip(frame["trials_run"], frame["trials_stopped"])]
    out["train s"] = frame["train_s"].map("{:.1f}".format)  # the chosen trial's training time
    out["wall s"] = frame["wall_s"].map("{:.1f}".format)  # all of the model's trials, train + validation
    out["params (trainable)"] = [f"{human_count(t)} ({human_count(tr)})" for t, tr in
                                 zip(frame["total_params"], frame["trainable_params"])]
    out["train img/s"] = frame["train_images_per_s"].map(lambda v: f"{v:.0f}" if v == v and v is not None else "-")
    out["latency ms"] = frame["latency_ms"].map("{:.1f}".format)
    return out


def human_count(n: int) -> str:
    """``2562`` → ``2.6K``, ``11689512`` → ``11.7M`` (never ``0.00M``)."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))
