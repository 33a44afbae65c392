"""Resuming interrupted sweeps. ``Tuner.restore`` brings back trials and the searcher (our ``GroupedSearcher``
pickles its Optuna studies) but not the scheduler: Ray pickles the ASHA object as it was before ``fit`` and
its rungs start empty again (ray-project/ray#30838). ``SchedulerState`` is a stateful Tune callback that
checkpoints the rungs with the experiment state and puts them back on restore; it also writes them as
``scheduler_state.yaml`` next to the experiment state for people and tests (not ``.json``: on restore Tune
copies every ``*.json``/``*.pkl`` of the storage into its staging folder and syncs them back up later,
which would overwrite the fresh file with the stale one)."""

from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path

import yaml

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler

from ..config import ConfigError, SweepPlan
from ..results import SPEC_FILE, is_uri
from .ray_internals import asha_state, set_asha_state

STATE_FILE = "scheduler_state.yaml"
UNFINISHED = {"PENDING", "RUNNING", "PAUSED"}
log = logging.getLogger(__name__)


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs (milestone → {trial id: recorded metric}) can be read and set as plain data."""

    def get_state(self) -> dict:
        return asha_state(self)

    def set_state(self, state: dict) -> None:
        set_asha_state(self, state)


class SchedulerState(Callback):
    """Checkpoints a scheduler's ``get_state()`` with Tune's experiment state and restores it on resume."""

    def __init__(self, scheduler, storage: str | None = None):
        self.scheduler = scheduler
        self.storage = storage if storage and not is_uri(storage) else None

    def get_state(self) -> dict | None:
        state = self.scheduler.get_state()
        if self.storage and os.path.isdir(self.storage):
            tmp = Path(self.storage) / f".{STATE_FILE}.tmp"
            tmp.write_text(yaml.safe_dump(state, sort_keys=False))
            tmp.replace(Path(self.storage) / STATE_FILE)
        return {"scheduler": state}

    def set_state(self, state: dict) -> None:
        self.scheduler.set_state(state["scheduler"])
        counts = [len(rec) for b in state["scheduler"]["brackets"] for _, rec in b]
        log.info("restored scheduler state: %d recorded results in rungs", sum(counts))


def _trial_statuses(state_file: str) -> list[str]:
    data = json.loads(Path(state_file).read_text())
    return [json.loads(t[0] if isinstance(t, list) else t).get("status") for t in data.get("trial_data", [])]


def sweep_state(storage: str, expected_trials: int | None = None) -> str:
    """``none`` (no experiment state), ``finished`` (every trial created and ended, errored ones included) or
    ``unfinished``. Local storage only; a URI reads as ``none`` (resume those with ``--resume``)."""
    if is_uri(storage):
        return "none"
    files = sorted(glob.glob(os.path.join(storage, "experiment_state-*.json")))
    if not files or not (Path(storage) / "tuner.pkl").is_file():
        return "none"
    try:
        statuses = _trial_statuses(files[-1])
    except (OSError, ValueError, KeyError, IndexError):
        return "unfinished"
    if not statuses or UNFINISHED & set(statuses) or (expected_trials and len(statuses) < expected_trials):
        return "unfinished"
    return "finished"


RESUME_KEYS = ("models_table", "search", "epochs", "scheduler", "searcher", "data")


def changed_since(storage: str, plan: SweepPlan) -> list[str]:
    """Sections of the sweep that differ from the ones the stored sweep ran with (none if nothing stored)."""
    path = Path(storage) / SPEC_FILE
    if is_uri(storage) or not path.is_file():
        return []
    try:
        stored = SweepPlan.from_dict(json.loads(path.read_text())).to_dict()
    except (OSError, ValueError, TypeError, ConfigError):
        return []
    fresh = plan.to_dict()
    for d in (stored, fresh):
        d["data"].pop("skip_files")  # found by preflight on each run
    return [k for k in RESUME_KEYS if stored[k] != fresh[k]]
