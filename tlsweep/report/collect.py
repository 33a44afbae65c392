"""Collect a sweep's trials straight from its storage folder (finished, still running, or copied).

The folder layout, trial status and best-epoch rules live in ``tlsweep.results.layout``; reading the files directly
needs no Ray and works wherever the folder was copied to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config.plan import SweepPlan, model_label
from ..results.layout import (
    PARAMS_FILE,
    ResultsError,
    Status,
    best_row,
    kept_checkpoints,
    parse_trial_id,
    read_error,
    read_history,
    read_plan,
    trial_row,
    trial_status,
    trials_frame,
)
from ..trial import objectives

STATUSES = tuple(s.value for s in Status)


class ReportError(ResultsError):
    """The results folder cannot be reported on (missing, no spec, no usable trial)."""


@dataclass
class TrialRecord:
    trial_id: str
    model: str
    path: Path
    config: dict  # the sampled values (params.json): model label and hyperparameters
    history: pd.DataFrame
    status: str
    checkpoints: dict[int, Path] = field(default_factory=dict)  # training_iteration → checkpoint.pt
    error: str | None = None

    @property
    def epochs(self) -> int:
        return int(self.history["training_iteration"].max()) if len(self.history) else 0

    def best_row(self, metric: str, mode: str, with_checkpoint: bool = True) -> pd.Series | None:
        """The epoch with the best validation metric (among epochs whose checkpoint is kept)."""
        return best_row(self.history, metric, mode, self.checkpoints if with_checkpoint else None)


@dataclass
class Sweep:
    storage: Path
    plan: SweepPlan
    trials: list[TrialRecord]

    @property
    def metric(self) -> str:
        return self.plan.scheduler.metric

    @property
    def mode(self) -> str:
        return self.plan.scheduler.mode


def read_trial(trial_dir: Path, max_epochs: int) -> TrialRecord:
    config = json.loads((trial_dir / PARAMS_FILE).read_text())
    history = read_history(trial_dir)
    error = read_error(trial_dir, history)
    trial_id = str(history["trial_id"].iloc[-1]) if "trial_id" in history and len(history) else \
        parse_trial_id(trial_dir.name, model_label(config))
    return TrialRecord(trial_id, str(model_label(config)), trial_dir, config, history,
                       trial_status(history, error, max_epochs).value, kept_checkpoints(trial_dir, history), error)


def collect(results_dir: str | Path) -> Sweep:
    """Every trial under ``results_dir`` (a sweep's storage folder)."""
    storage = Path(results_dir)
    try:
        plan = read_plan(storage)
    except ResultsError as err:
        raise ReportError(str(err)) from None
    trials = [read_trial(p.parent, plan.epochs) for p in sorted(storage.glob(f"*/{PARAMS_FILE}"))]
    if not trials:
        raise ReportError(f"{storage}: no trial folders (*/{PARAMS_FILE}) yet")
    return Sweep(storage, plan, trials)


def trials_table(sweep: Sweep) -> pd.DataFrame:
    """One row per trial (``tlsweep.results.layout.TRIAL_COLUMNS`` and the sampled hyperparameters)."""
    tracked = tuple(objectives.tracked(sweep.plan))
    return trials_frame([trial_row(t.trial_id, t.config, t.status, t.history, sweep.metric, sweep.mode, t.error,
                                   t.path, tracked) for t in sweep.trials], sweep.plan)
