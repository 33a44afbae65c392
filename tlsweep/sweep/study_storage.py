"""The driver's side of a sweep's study storage (``tlsweep.results.studies``): make it ready before a run; fsync the
journal at each experiment checkpoint and upload a remote sweep's journal with the other driver files."""

from __future__ import annotations

import logging
import time

from ray.tune import Callback

from ..config.plan import SweepPlan
from ..results import studies
from ..results.storage import is_uri
from .cluster import StorageError

log = logging.getLogger(__name__)


def prepare(plan: SweepPlan, resume: bool) -> str | None:
    """The storage URL of the plan's studies, ready for this run (None: in memory). A fresh run moves an earlier
    run's journal aside and refuses a database that already has this sweep's studies; a remote sweep that resumes
    gets its stored journal first."""
    url = studies.storage_url(plan.searcher.storage, plan.storage)
    if url is None:
        return None
    if plan.searcher.storage != studies.FILE:
        if not resume:
            _refuse_existing(url, plan.name)
        return url
    if resume:
        if is_uri(plan.storage):
            studies.pull(plan.storage)
        return url
    path = studies.journal_path(plan.storage)
    if path.is_file():
        aside = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        log.warning("a fresh run: the earlier run's studies were moved to %s", aside)
    return url


def _refuse_existing(url: str, sweep: str) -> None:
    storage = studies.open_storage(url)
    taken = [s.study_name for s in storage.get_all_studies()
             if s.study_name.startswith(f"{sweep}/") and storage.get_n_trials(s._study_id)]
    if taken:
        raise StorageError(f"the study storage {studies.redacted(url)} already holds trials of a sweep named "
                           f"{sweep!r} ({', '.join(taken[:3])}{', …' if len(taken) > 3 else ''}); give this sweep "
                           f"another `name`, resume it (--resume), or warm-start from it (warm_start: [URL])")


class JournalCheckpoint(Callback):
    """At each experiment checkpoint and at the end: fsyncs the journal (its appends are not fsynced one by one)
    and uploads a remote sweep's journal next to its results."""

    def __init__(self, storage: str):
        self.storage = storage

    def _save(self) -> None:
        studies.fsync_journal(studies.journal_path(self.storage))
        if not is_uri(self.storage):
            return
        try:
            studies.push(self.storage)
        except OSError as err:  # the next checkpoint tries again
            log.warning("could not upload the study journal to %s: %s", self.storage, err)

    def get_state(self) -> None:
        self._save()
        return None

    def set_state(self, state) -> None:
        pass

    def on_experiment_end(self, trials, **info) -> None:
        self._save()
