"""Collect a sweep's trials straight from its storage folder (finished, still running, or copied).

Each trial folder holds Tune's ``params.json`` (sampled config), ``progress.csv``/``result.json`` (one row per
epoch) and ``checkpoint_*/checkpoint.pt``; ``tlsweep_spec.json`` holds the plain spec. Reading the files
directly needs no Ray and works wherever the folder was copied to.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..sweep.cluster import trial_nodes
from ..sweep.runner import SPEC_FILE

STATUSES = ("finished", "stopped", "diverged", "error", "pending")


class ReportError(ValueError):
    """The results folder cannot be reported on (missing, no spec, no usable trial)."""


@dataclass
class TrialRecord:
    trial_id: str
    model: str
    path: Path
    config: dict
    history: pd.DataFrame
    status: str
    checkpoints: dict[int, Path] = field(default_factory=dict)  # training_iteration → checkpoint.pt
    error: str | None = None

    @property
    def epochs(self) -> int:
        return int(self.history["training_iteration"].max()) if len(self.history) else 0

    def best_row(self, metric: str, mode: str, with_checkpoint: bool = True) -> pd.Series | None:
        """The epoch with the best validation metric (among epochs whose checkpoint is kept)."""
        h = self.history
        if h.empty or metric not in h:
            return None
        if with_checkpoint:
            h = h[h["training_iteration"].isin(self.checkpoints)]
        h = h[h[metric].map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
        if h.empty:
            return None
        return h.loc[h[metric].idxmin() if mode == "min" else h[metric].idxmax()]


@dataclass
class Sweep:
    storage: Path
    plain: dict
    trials: list[TrialRecord]

    @property
    def metric(self) -> str:
        return self.plain["scheduler"]["metric"]

    @property
    def mode(self) -> str:
        mode = self.plain["scheduler"].get("mode") or "auto"
        if mode == "auto":
            return "min" if "loss" in self.metric else "max"
        return mode


def _read_history(trial_dir: Path) -> pd.DataFrame:
    """Per-epoch rows: ``result.json`` (JSON lines, survives copying) else ``progress.csv``."""
    rows = []
    result = trial_dir / "result.json"
    if result.is_file():
        for line in result.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                continue
    if not rows and (trial_dir / "progress.csv").is_file():
        try:
            return pd.read_csv(trial_dir / "progress.csv")
        except pd.errors.EmptyDataError:
            pass
    frame = pd.DataFrame(rows)
    if "training_iteration" not in frame:
        frame["training_iteration"] = pd.Series(dtype=int)
    # a trial restored from an older checkpoint reports some epochs again: the latest report of each counts
    frame = frame.sort_values("training_iteration", kind="stable")
    return frame.drop_duplicates("training_iteration", keep="last").reset_index(drop=True)


def _status(history: pd.DataFrame, error: str | None, max_epochs: int) -> str:
    if "diverged" in history and history["diverged"].fillna(False).astype(bool).any():
        return "diverged"
    if error:
        return "error"
    if history.empty:
        return "pending"
    return "finished" if int(history["training_iteration"].max()) >= max_epochs else "stopped"


def _checkpoints(trial_dir: Path, history: pd.DataFrame) -> dict[int, Path]:
    """Kept checkpoints by epoch, matched through the ``checkpoint_dir_name`` Tune records per row."""
    found = {}
    if "checkpoint_dir_name" in history:
        for it, name in zip(history["training_iteration"], history["checkpoint_dir_name"]):
            path = trial_dir / str(name) / "checkpoint.pt"
            if isinstance(name, str) and path.is_file():
                found[int(it)] = path
    return found


def read_trial(trial_dir: Path, max_epochs: int) -> TrialRecord:
    config = json.loads((trial_dir / "params.json").read_text())
    history = _read_history(trial_dir)
    error_file = trial_dir / "error.txt"
    error = error_file.read_text().strip().splitlines()[-1][:300] if error_file.is_file() else None
    if error is None and "error" in history and history["error"].notna().any():
        error = str(history["error"].dropna().iloc[-1])
    trial_id = str(history["trial_id"].iloc[-1]) if "trial_id" in history and len(history) else \
        trial_dir.name.split("_")[0]
    return TrialRecord(trial_id, str(config.get("model")), trial_dir, config, history,
                       _status(history, error, max_epochs), _checkpoints(trial_dir, history), error)


def collect(results_dir: str | Path) -> Sweep:
    """Every trial under ``results_dir`` (a sweep's storage folder)."""
    storage = Path(results_dir)
    spec_file = storage / SPEC_FILE
    if not spec_file.is_file():
        raise ReportError(f"{storage}: no {SPEC_FILE} here; give the sweep's storage folder "
                          f"(the `storage` of the sweep file)")
    plain = json.loads(spec_file.read_text())
    trials = [read_trial(p.parent, int(plain["epochs"])) for p in sorted(storage.glob("*/params.json"))]
    if not trials:
        raise ReportError(f"{storage}: no trial folders (*/params.json) yet")
    return Sweep(storage, plain, trials)


def trials_table(sweep: Sweep) -> pd.DataFrame:
    """One row per trial: model, status, epochs, best val metric, config, wall time."""
    rows = []
    for t in sweep.trials:
        best = t.best_row(sweep.metric, sweep.mode, with_checkpoint=False)
        h = t.history
        rows.append({
            "trial_id": t.trial_id, "model": t.model, "status": t.status, "epochs": t.epochs,
            "best_epoch": int(best["training_iteration"]) if best is not None else None,
            "val_acc": float(best["val_acc"]) if best is not None and "val_acc" in best else None,
            "val_loss": float(best["val_loss"]) if best is not None and "val_loss" in best else None,
            **{k: v for k, v in t.config.items() if k != "model"},
            "wall_s": float(h["epoch_seconds"].sum()) if "epoch_seconds" in h else None,
            "nodes": trial_nodes(h),
            "error": t.error,
        })
    return pd.DataFrame(rows)
