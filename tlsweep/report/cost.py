"""What the sweep cost: CPU- and GPU-hours per model and in all, from each trial's resources (the spec's
per-model ``resources``) × its running time (Tune's ``time_total_s``: training, validation and checkpoints of
every epoch, summed over restores; worker start-up is not counted)."""

from __future__ import annotations

import pandas as pd

from .collect import Sweep, TrialRecord

TOTAL = "all models"


def trial_seconds(trial: TrialRecord) -> float:
    h = trial.history
    if "time_total_s" in h and h["time_total_s"].notna().any():
        return float(h["time_total_s"].dropna().iloc[-1])
    if "epoch_seconds" in h:
        return float(h["epoch_seconds"].sum())
    return 0.0


def trial_demand(sweep: Sweep, trial: TrialRecord) -> dict[str, float]:
    """CPUs and GPUs the trial ran with: as it recorded them (``cpus``/``gpus``: ``gpu: auto`` resolved for its
    cluster), else the plan's numbers (``auto`` in a sweep without the record: no GPU)."""
    h = trial.history
    if {"cpus", "gpus"} <= set(h) and h["cpus"].notna().any():
        last = h[h["cpus"].notna()].iloc[-1]
        return {"CPU": float(last["cpus"]), "GPU": float(last["gpus"] or 0.0)}
    resources = sweep.plan.resources_of(trial.model)
    return resources.replace(gpu=0.0).demand() if resources.gpu == "auto" else resources.demand()


def cost_table(sweep: Sweep) -> pd.DataFrame:
    """One row per model (in order of first appearance) and a last ``all models`` row: trials, trial-hours,
    CPUs and GPUs per trial, CPU-hours, GPU-hours."""
    rows: dict[str, dict] = {}
    for t in sweep.trials:
        demand = trial_demand(sweep, t)
        hours = trial_seconds(t) / 3600
        row = rows.setdefault(t.model, {"model": t.model, "trials": 0, "trial_hours": 0.0,
                                        "cpu_per_trial": demand["CPU"], "gpu_per_trial": demand.get("GPU", 0.0),
                                        "cpu_hours": 0.0, "gpu_hours": 0.0})
        row["trials"] += 1
        row["trial_hours"] += hours
        row["cpu_hours"] += demand["CPU"] * hours
        row["gpu_hours"] += demand.get("GPU", 0.0) * hours
    frame = pd.DataFrame(list(rows.values()))
    total = {"model": TOTAL, "trials": int(frame["trials"].sum()), "trial_hours": frame["trial_hours"].sum(),
             "cpu_per_trial": float("nan"), "gpu_per_trial": float("nan"),
             "cpu_hours": frame["cpu_hours"].sum(), "gpu_hours": frame["gpu_hours"].sum()}
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)


def _timed(trial: TrialRecord) -> bool:
    return {"timestamp", "time_total_s"} <= set(trial.history) and len(trial.history) > 0


def sweep_start(sweep: Sweep) -> float:
    """Unix time the first trial started (its first result's ``timestamp`` minus ``time_total_s``)."""
    starts = [float((t.history["timestamp"] - t.history["time_total_s"]).min()) for t in sweep.trials if _timed(t)]
    return min(starts) if starts else float("nan")


def sweep_wall_seconds(sweep: Sweep) -> float:
    """From the first trial's start to the last result reported."""
    ends = [float(t.history["timestamp"].max()) for t in sweep.trials if _timed(t)]
    return max(ends) - sweep_start(sweep) if ends else float("nan")


def timeline(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every reported epoch as (``seconds`` since the sweep started, ``model``, trial, metric), and every done
    trial's end (``seconds``, its best metric, ``stopped`` early or not)."""
    start = sweep_start(sweep)
    metric = sweep.metric
    rows, ends = [], []
    for t in sweep.trials:
        if not _timed(t) or metric not in t.history:
            continue
        h = t.history
        rows.append(pd.DataFrame({"seconds": h["timestamp"] - start, "model": t.model, "trial_id": t.trial_id,
                                  metric: pd.to_numeric(h[metric], errors="coerce")}))
        best = t.best_row(metric, sweep.mode, with_checkpoint=False)
        if t.status in ("finished", "stopped") and best is not None:
            ends.append({"seconds": float(h["timestamp"].max()) - start, "model": t.model,
                         metric: float(best[metric]), "stopped": t.status == "stopped"})
    columns = ["seconds", "model", "trial_id", metric]
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns),
            pd.DataFrame(ends, columns=["seconds", "model", metric, "stopped"]))


def duration_text(seconds: float) -> str:
    """``2.1 h`` / ``12.5 min`` / ``35 s``."""
    if seconds != seconds:
        return "unknown"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"
