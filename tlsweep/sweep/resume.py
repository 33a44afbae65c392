"""Resuming interrupted sweeps. ``Tuner.restore`` brings back trials and the searcher (our ``GroupedSearcher``
reads its Optuna studies back from their storage, or unpickles them with ``searcher.storage: memory``) but not the
scheduler: Ray pickles the ASHA object as it was before ``fit`` and
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

from ray.tune import Callback

from ..config.plan import SweepPlan
from ..config.sections import ConfigError
from ..results.layout import SPEC_FILE, is_uri

UNFINISHED = {"PENDING", "RUNNING", "PAUSED"}
log = logging.getLogger(__name__)


def _trial_statuses(state_file: str) -> dict[str, str]:
    """Trial id → Tune status in one experiment state file."""
    data = json.loads(Path(state_file).read_text())
    trials = (json.loads(t[0] if isinstance(t, list) else t) for t in data.get("trial_data", []))
    return {str(t.get("trial_id")): t.get("status") for t in trials}


def unfinished_trials(storage: str) -> set[str]:
    """Ids of the trials the newest saved experiment state has pending, running or paused (e.g. after Ctrl-C)."""
    storage = _top_level(storage)
    files = sorted(glob.glob(os.path.join(storage, "experiment_state-*.json"))) if storage else []
    try:
        return {t for t, status in _trial_statuses(files[-1]).items() if status in UNFINISHED} if files else set()
    except (OSError, ValueError, KeyError, IndexError):
        return set()


def sweep_state(storage: str, expected_trials: int | None = None) -> str:
    """``none`` (no experiment state), ``finished`` (every trial created and ended, errored ones included) or
    ``unfinished``. A URI is read through its local mirror (top-level files only)."""
    storage = _top_level(storage)
    if storage is None:
        return "none"
    files = sorted(glob.glob(os.path.join(storage, "experiment_state-*.json")))
    if not files or not (Path(storage) / "tuner.pkl").is_file():
        return "none"
    try:
        statuses = list(_trial_statuses(files[-1]).values())
    except (OSError, ValueError, KeyError, IndexError):
        return "unfinished"
    if not statuses or UNFINISHED & set(statuses) or (expected_trials and len(statuses) < expected_trials):
        return "unfinished"
    return "finished"


def _top_level(storage: str) -> str | None:
    """The folder to read the experiment state from: ``storage`` itself, or a URI's mirror (None if absent)."""
    from ..results.storage import mirror, top_level

    if not is_uri(storage):
        return storage
    try:
        return str(mirror(storage, top_level))
    except (OSError, ValueError):  # nothing there, or unreachable (the preflight says which)
        return None


RESUME_KEYS = ("models_table", "search", "epochs", "scheduler", "searcher", "data", "objectives", "constraints",
               "warm_start")


def changed_since(storage: str, plan: SweepPlan) -> list[str]:
    """Sections of the sweep that differ from the ones the stored sweep ran with (none if nothing stored)."""
    local = _top_level(storage)
    path = Path(local or storage) / SPEC_FILE
    if local is None or not path.is_file():
        return []
    try:
        stored = SweepPlan.from_dict(json.loads(path.read_text())).to_dict()
    except (OSError, ValueError, TypeError, ConfigError):
        return []
    fresh = plan.to_dict()
    for d in (stored, fresh):
        d["data"].pop("skip_files")  # found by preflight on each run
    return [k for k in RESUME_KEYS if stored[k] != fresh[k]]


BACKUP_SUFFIX = ".last_good"  # not .json/.pkl: on restore Tune copies those into its staging folder
STATE_PATTERNS = ("experiment_state-*.json", "searcher-state-*.pkl")


def _readable(path: Path, kind: str | None = None) -> bool:
    """Whether a state file parses (``kind`` json, default by the name) or unpickles (Tune's and the searcher's
    state: trusted input)."""
    import pickle

    try:
        if (kind or ("json" if ".json" in path.name else "pickle")) == "json":
            json.loads(path.read_text())
        else:
            with open(path, "rb") as f:
                pickle.load(f)
    except Exception:  # noqa: BLE001 - truncated, corrupt, unreadable: all mean "not this one"
        return False
    return True


def _newest(storage: str) -> list[Path]:
    return [Path(files[-1]) for pattern in STATE_PATTERNS
            if (files := sorted(glob.glob(os.path.join(storage, pattern))))]


class StateBackup(Callback):
    """At each experiment checkpoint, copies the stored experiment and searcher state, when readable, to
    ``<file>.last_good``: a storage that fills up can leave them truncated, and Tune cannot resume from those
    (``repair_state`` puts the copies back)."""

    def __init__(self, storage: str | None):
        self.storage = storage if storage and "://" not in storage else None

    def get_state(self) -> None:
        if not self.storage:
            return None
        for path in _newest(self.storage):
            backup = path.with_name(path.name + BACKUP_SUFFIX)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                data = path.read_bytes()
                tmp.write_bytes(data)
                if _readable(tmp, "json" if path.suffix == ".json" else "pickle"):
                    tmp.replace(backup)
                else:
                    tmp.unlink()
            except OSError:  # e.g. the storage is full: keep the previous copy
                tmp.unlink(missing_ok=True)
        return None

    def set_state(self, state) -> None:
        pass


def repair_state(storage: str) -> list[str]:
    """Before a resume: replace an unreadable newest experiment/searcher state file by its last good copy.
    Returns a warning per file replaced (or found unreadable without a copy)."""
    if "://" in storage:
        return []
    warnings = []
    for path in _newest(storage):
        if _readable(path):
            continue
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if backup.is_file() and _readable(backup):
            path.write_bytes(backup.read_bytes())
            warnings.append(f"{path} was unreadable (truncated when the storage filled up?); resuming from its "
                            f"last good copy, a checkpoint period older")
        else:
            warnings.append(f"{path} is unreadable and has no good copy; the resume may not find every trial")
    return warnings
