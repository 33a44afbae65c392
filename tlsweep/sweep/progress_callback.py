"""The Ray Tune callback that feeds a Ray-free ``tlsweep.results.progress.Progress`` and its view.

Tune pickles its callbacks into the experiment (``tuner.pkl``) and brings them back on ``--resume``, so the
callback carries no state: it feeds whatever ``showing(progress, view)`` installed in this process.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from ray.tune import Callback

from ..config.plan import model_label
from ..results.progress import ERROR_FILE, Progress, View, error_line

_ACTIVE: list = []  # [(Progress, View)] of the sweep running in this process


@contextmanager
def showing(progress: Progress, view: View):
    """Feed ``progress`` and draw ``view`` while the block runs a sweep with a ``ProgressCallback``."""
    _ACTIVE.append((progress, view))
    try:
        with view:
            yield progress
    finally:
        _ACTIVE.remove((progress, view))


class ProgressCallback(Callback):
    """Trial start / epoch result / end → ``Progress`` → ``View``."""

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        pass

    def _emit(self, kind: str, feed) -> None:
        if _ACTIVE:
            progress, view = _ACTIVE[-1]
            view.event(kind, feed(progress))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._emit("start", lambda p: p.start(trial.trial_id, _model(trial)))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("restore_warning") and _ACTIVE:
            _ACTIVE[-1][1].warning(f"trial {trial.trial_id}: {result['restore_warning']}")
        self._emit("result", lambda p: p.result(trial.trial_id, _model(trial), result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        diverged = bool((trial.last_result or {}).get("diverged"))
        self._emit("end", lambda p: p.end(trial.trial_id, _model(trial), diverged=diverged))

    def on_trial_error(self, iteration, trials, trial, **info):
        text = Path(trial.error_file).read_text() if trial.error_file and Path(trial.error_file).is_file() else ""
        folder = Path(trial.local_path or trial.path or trial.trial_id).name
        self._emit("end", lambda p: p.end(trial.trial_id, _model(trial), error=error_line(text),
                                          error_file=f"{p.storage.rstrip('/')}/{folder}/{ERROR_FILE}"))


class TrialLaunches(Callback):
    """When Tune started each trial (its actor is up; wall clock), for ``start_s`` in summary.csv."""

    def __init__(self):
        self.at: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.at.setdefault(trial.trial_id, time.time())


ProgressPrinter = ProgressCallback  # the name sweeps started before 0.2 pickled into tuner.pkl


def _model(trial) -> str:
    return str(model_label(trial.config) or "?")
