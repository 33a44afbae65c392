"""ASHA whose rungs survive a resume: ``ResumableASHA`` exposes its rungs as plain data and ``SchedulerState``
saves them with Tune's experiment state (and as ``scheduler_state.yaml`` in a local storage)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler

from ..results.storage import is_uri
from .ray_internals import asha_state, set_asha_state

STATE_FILE = "scheduler_state.yaml"
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
