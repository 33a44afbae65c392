"""Run a sweep on Ray Tune: attach to (or start) Ray, build the Tuner, fit or resume, summarize."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.plan import SweepPlan, model_label
from ..config.space import build_groups, total_trials
from ..config.spec import Spec
from ..results.layout import (  # noqa: F401
    SPEC_FILE,
    SUMMARY_FILE,
    USABLE,
    dedupe_history,
    is_uri,
    parse_trial_id,
    reported_error,
    trial_row,
    trial_status,
    trials_frame,
    write_plan,
)
from ..results.layout import trial_dirname as _dirname
from ..results.progress import Progress, View
from ..results.storage import locate, mirror, split_uri, without_checkpoints, write_text
from ..trial.objectives import FEASIBLE, constraints, objectives, tracked
from .cluster import (  # noqa: F401
    ClusterError,
    ResourceError,
    StorageError,
    alive_nodes,
    check_cluster,
    probe_cluster,
)
from .hooks import TrialHooks
from .progress_callback import ProgressCallback, TrialLaunches, showing

os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# a trial's first epoch's: device, fixed costs before training (sweep/trainable.py, Trial.setup_seconds)
SETUP_COLUMNS = ("device", "gpu_name", "setup_s", "setup_data_s", "setup_model_s", "setup_loaders_s", "import_s",
                 "started_at")
log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What ``run_sweep`` returns: where the sweep's results live, one row per trial, and its wall time."""

    storage: str
    trials: pd.DataFrame  # one row per trial: tlsweep.results.layout.TRIAL_COLUMNS and the hyperparameters
    seconds: float

    def best_per_model(self, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
        """Each model's best finished or stopped trial that meets the constraints (models with none left out).

        Args:
            metric: A column of ``trials`` to rank by.
            mode: ``max`` or ``min``.

        Returns:
            One row per model, indexed by model label.
        """
        ok = self.trials[self.trials["status"].isin(USABLE)]
        if FEASIBLE in ok:
            ok = ok[ok[FEASIBLE].astype(bool)]
        if ok.empty:
            return ok
        ordered = ok.sort_values(metric, ascending=(mode == "min"))
        return ordered.groupby("model", sort=False).head(1).set_index("model")

    @property
    def all_failed(self) -> bool:
        return not self.trials["status"].isin(USABLE).any()


def split_storage(storage: str) -> tuple[str, str]:
    """``results/name`` → (absolute ``results``, ``name``); URIs keep their scheme and query."""
    if is_uri(storage):
        return split_uri(storage)
    storage = storage.rstrip("/")
    parent, _, name = storage.rpartition("/")
    return str(Path(parent).resolve()), name


def tune_storage(storage: str) -> dict:
    """``RunConfig`` arguments for a local folder or URI (the filesystem built by ``tlsweep.results.storage``)."""
    parent, name = split_storage(storage)
    if not is_uri(storage):
        return {"storage_path": parent, "name": name}
    loc = locate(parent)
    return {"storage_path": loc.path, "name": name, "storage_filesystem": loc.fs}


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Attach to the cluster at ``address`` (or RAY_ADDRESS); otherwise (or ``local``) start a local Ray explicitly."""
    import ray

    if ray.is_initialized():
        return
    from ..trial.gpus import hidden_gpus_env

    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":  # workers of a running cluster get the environment through the job's runtime_env
        probe_cluster(address)
        try:
            ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": hidden_gpus_env()})
        except ConnectionError as err:
            raise ClusterError(f"could not attach to the Ray cluster at {address}: {err}") from None
    else:  # a local Ray's workers inherit this process's environment
        os.environ.update(hidden_gpus_env())
        with private_local_ray():
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")


@contextlib.contextmanager
def private_local_ray():
    """Around ``ray.init(address="local", _node_ip_address="127.0.0.1")``: keep the local Ray to this machine.
    Token authentication on (a fresh token unless one is set), and the loopback node IP kept as given, so that
    every server of the Ray listens on 127.0.0.1 (Ray turns a loopback node IP into the machine's address unless
    it runs single-node, its setting for Windows and macOS)."""
    import secrets

    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    if not os.environ.get("RAY_AUTH_MODE"):
        os.environ["RAY_AUTH_MODE"] = "token"
    if os.environ["RAY_AUTH_MODE"] == "token" and not (os.environ.get("RAY_AUTH_TOKEN")
                                                       or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    Config.initialize("")  # this process read the auth settings when it imported Ray: read them again
    AuthenticationTokenLoader.instance().reset_cache()
    saved, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def trial_dirname(trial) -> str:
    """Short trial folder names: ``<trial id>_<model>`` instead of Tune's config dump."""
    return _dirname(trial.trial_id, model_label(trial.config))


def build_tuner(plan: SweepPlan, callbacks: list | None = None, study_url: str | None = None,
                hooks: TrialHooks | None = None):
    """The Ray Tune ``Tuner`` of a sweep plan; ``study_url``: its studies' Optuna storage (None: in memory);
    ``hooks``: code run beside every trial (``tlsweep.sweep.hooks``)."""
    from ray import tune

    from .loggers import logger_callbacks
    from .resume import StateBackup
    from .schedulers import SCHEDULERS
    from .searcher import GroupedSearcher, study_names
    from .trainable import make_trainable

    metric, mode = plan.scheduler.metric, plan.scheduler.mode
    entry = SCHEDULERS[plan.scheduler.type]
    scheduler = entry.build(plan)
    callbacks = [*(callbacks or []), StateBackup(plan.storage), *logger_callbacks(plan)]
    if study_url is not None and plan.searcher.storage == "file":
        from .study_storage import JournalCheckpoint

        callbacks.append(JournalCheckpoint(plan.storage))
    if entry.state is not None:
        callbacks.append(entry.state(scheduler, plan))
    groups = build_groups(plan)
    warm = None
    if plan.warm_start:  # once, here: a resumed sweep gets its seeded studies back from the checkpoint
        from . import warmstart

        warm = warmstart.plan(plan, groups)
        warmstart.report(warm, plan.storage)
    searcher = GroupedSearcher(groups, plan.num_samples, metric, mode, plan.searcher.type, plan.searcher_seed,
                               objectives=objectives(plan), constraints=constraints(plan),
                               population_size=plan.searcher.population_size, warm=warm, storage_url=study_url,
                               names=study_names(plan.name, groups, plan.search.params()), epochs=plan.epochs)
    return tune.Tuner(
        make_trainable(plan, hooks),
        tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=searcher, scheduler=scheduler,
                                    num_samples=total_trials(plan), max_concurrent_trials=plan.max_concurrent,
                                    trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            **tune_storage(plan.storage), verbose=0, callbacks=callbacks or [],
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=plan.checkpoints.num_to_keep,
                                                    checkpoint_score_attribute=metric,
                                                    checkpoint_score_order=mode),
        ),
    )


class SweepInterrupted(KeyboardInterrupt):
    """Ray Tune caught Ctrl-C, saved the experiment and returned early; ``--resume`` continues it."""

    def __init__(self, result: "SweepResult"):
        super().__init__("sweep interrupted")
        self.result = result


def run_sweep(spec: Spec, address: str | None = None, num_samples: int | None = None, resume: bool = False,
              callbacks: list | None = None, checked=None, progress="auto",
              hooks: TrialHooks | None = None) -> SweepResult:
    """Check a sweep against its data and machine, start or attach to Ray, and run (or resume) it to the end.

    Args:
        spec: The validated sweep file (``tlsweep.load_spec``).
        address: A Ray cluster to attach to (``HOST:PORT`` or ``auto``); None starts a local Ray.
        num_samples: Overrides the sweep file's ``num_samples`` (trials per model and grid point).
        resume: Continue the sweep in the same storage (an unfinished one is resumed anyway).
        callbacks: Extra Ray Tune callbacks.
        checked: A ``tlsweep.sweep.preflight.Preflight`` already made; None runs the checks here.
        progress: ``auto`` (a live view in a terminal or notebook, else a line per trial event), ``live``,
            ``plain``, ``none``, or a ``tlsweep.results.progress.View``.
        hooks: Code run beside every trial (``tlsweep.sweep.hooks``): tests inject faults through it.

    Returns:
        The storage folder, one row per trial (status, best metrics, hyperparameters) and the wall time.

    Raises:
        SpecError: The sweep does not fit its dataset or machine (preflight), each problem with its YAML line.
        SweepInterrupted: Ctrl-C or SIGTERM stopped the sweep early; its ``result`` holds what finished.
        StorageError: The storage holds a sweep of another sweep file, or it filled up.
        ClusterError: No Ray cluster answers at ``address``, or it refuses the driver.
        WeightsError: A pretrained weights file is missing and cannot be fetched.
    """
    from .preflight import check_or_raise

    if num_samples is not None:
        spec = spec.model_copy(update={"num_samples": num_samples})
    plan = spec.plan()
    if checked is None:  # dataset and machine problems surface before Ray starts
        checked = check_or_raise(spec, address=address)
        for warning in checked.warnings:
            log.warning(warning)
    if checked.skip_files:
        plan = plan.replace(data=plan.data.replace(skip_files=tuple(checked.skip_files)))
    from ..models.weights import ensure_weights

    ensure_weights(plan)  # fetch each weights file once here, not in every trial at once
    init_ray(address)
    from ..trial.gpus import resolve_resources
    from .cluster import cluster_gpu_memory_gb, cluster_gpus

    nodes = alive_nodes()
    gpus_here = cluster_gpus(nodes)
    cluster_gb = cluster_gpu_memory_gb(nodes) if gpus_here and not plan.resources.gpu_memory_gb else None
    run_plan = resolve_resources(plan, gpus_here, cluster_gb=cluster_gb)  # `gpu: auto` → a number for this cluster
    check_cluster(run_plan, hooks)
    from ray import tune

    from .resume import changed_since, repair_state, sweep_state, unfinished_trials
    from .trainable import make_trainable

    start = time.perf_counter()
    storage = plan.storage
    if not resume and sweep_state(storage, total_trials(plan)) == "unfinished":
        log.warning("%s holds an unfinished sweep: resuming it", storage)
        resume = True
    if resume and (changed := changed_since(storage, plan)):
        raise StorageError(f"{storage} holds a sweep run from a different sweep file (changed: {', '.join(changed)}); "
                           f"resuming would mix the two. Give this sweep another `name` or `storage`, or delete "
                           f"{storage} to start over.")
    write_plan(plan, storage)
    if resume:
        for warning in repair_state(storage):
            log.warning(warning)
    from .prebuild import prebuild_caches

    prebuild_caches(run_plan, nodes)  # decoded images and frozen features, once per node, before any trial
    launches = TrialLaunches()
    loc = locate(storage)
    restoring = resume and tune.Tuner.can_restore(loc.path, storage_filesystem=loc.fs)
    from .study_storage import prepare

    study_url = prepare(plan, restoring)
    if restoring:
        tuner = tune.Tuner.restore(loc.path, make_trainable(run_plan, hooks), resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=loc.fs)
    else:
        tuner = build_tuner(run_plan, [*(callbacks or []), ProgressCallback(), launches], study_url, hooks)
    previous = _stop_on_sigterm()
    try:
        with showing(*_progress_view(progress, plan, resume)):
            grid = tuner.fit()
        total = total_trials(plan)
        stopped_early = interrupted(grid, total) or sweep_state(storage, total) == "unfinished"
        trials = summary_frame(grid, plan, unfinished_trials(storage) | unended(grid) if stopped_early else set())
        add_start_seconds(trials, launches.at)
        write_text(loc, SUMMARY_FILE, trials.to_csv(index=False))
    except Exception as err:
        check_space(storage, err)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    check_space(storage, None, trials.get("error"))
    result = SweepResult(storage, trials, time.perf_counter() - start)
    if stopped_early:
        raise SweepInterrupted(result)  # the state Tune saved on Ctrl-C/SIGTERM still has trials running
    return result


MIN_FREE_BYTES = 1 << 20


def check_space(storage: str, error: BaseException | None = None, trial_errors=None) -> None:
    """``StorageError`` when the sweep failed because its (local) storage filled up: a trial's error or the
    driver's ``error`` says ``No space left on device`` (errno 28), or the driver failed (``error``) while the file
    system holding the storage has under ``MIN_FREE_BYTES`` free."""
    if is_uri(storage):
        return
    folder = next((p for p in (Path(storage), *Path(storage).parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    causes = [str(e) for e in _chain(error)] + [str(e) for e in (trial_errors if trial_errors is not None else [])]
    full = any("No space left on device" in c or "[Errno 28]" in c for c in causes)
    if not full and not (error is not None and free < MIN_FREE_BYTES):
        return
    raise StorageError(f"no space left on the storage {storage} ({free / 2**20:.1f} MiB free): trials could not "
                       f"write their results or checkpoints there. What finished is kept; free some space, then "
                       f"run the same command with --resume to continue.") from error


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def add_start_seconds(trials: pd.DataFrame, launched: dict[str, float]) -> None:
    """``start_s``: Tune's ``on_trial_start`` (the trial's actor is up) → the trial's code running (its
    reported ``started_at``). The worker's own start shows in ``import_s``."""
    if "started_at" not in trials:
        return
    trials["start_s"] = [round(max(0.0, s - launched[t]), 3) if t in launched and s == s else None
                         for t, s in zip(trials["trial_id"], trials["started_at"])]


def _stop_on_sigterm():
    """SIGTERM (what a job scheduler sends) stops the sweep as Ctrl-C does: Tune saves it, running again resumes.
    Set after ``ray.init``, whose own SIGTERM handler would abort the driver; main thread only. Returns the
    handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))


def _progress_view(progress, plan: SweepPlan, resume: bool) -> tuple[Progress, View]:
    if isinstance(progress, View):
        return progress.progress, progress
    state = Progress(plan.name, plan.scheduler.metric, plan.scheduler.mode, total_trials(plan), plan.epochs,
                     plan.storage)
    if resume:
        try:  # trials restored as finished are not reported again
            state = Progress.from_storage(plan.storage, str(mirror(plan.storage, without_checkpoints)))
            for t in state.trials.values():
                t.status = "pending" if t.status == "running" else t.status
        except (OSError, ValueError, KeyError):
            pass
    return state, View(state, progress or "none")


def unended(grid) -> set[str]:
    """Ids of the trials of a ResultGrid that Tune had not ended (terminated or errored) when ``fit`` returned."""
    from .ray_internals import grid_trials

    return {t.trial_id for t in grid_trials(grid) if t.status not in ("TERMINATED", "ERROR")}


def interrupted(grid, expected: int) -> bool:
    """Tune swallows the first SIGINT and returns a partial grid: some trials unfinished or never started."""
    from .ray_internals import grid_trials

    return len(grid_trials(grid)) < expected or bool(unended(grid))


def summary_frame(grid, plan: SweepPlan, running: set[str] = frozenset()) -> pd.DataFrame:
    """One row per trial of a ResultGrid, the same table the report writes (``tlsweep.results.layout.trial_row``);
    ``running``: ids of trials Tune had not ended when the sweep was interrupted."""
    rows = []
    for result in grid:
        config = dict(result.config or {})
        history = result.metrics_dataframe
        history = dedupe_history(history) if history is not None else pd.DataFrame()
        error = error_message(result.error) if result.error else reported_error(history)
        trial_id = (result.metrics or {}).get("trial_id") or (
            parse_trial_id(result.path, model_label(config)) if result.path else None)
        status = trial_status(history, error, plan.epochs, running=trial_id in running)
        row = trial_row(trial_id, config, status, history, plan.scheduler.metric, plan.scheduler.mode, error,
                        result.path, tuple(tracked(plan)))
        if len(history):  # the trial's device and fixed costs (first epoch), peak GPU memory
            row.update({k: history.iloc[0][k] for k in SETUP_COLUMNS if k in history})
            for peak in ("peak_gpu_mem_gb", "peak_gpu_reserved_gb"):
                if peak in history:
                    row[peak] = history[peak].max()
        rows.append(row)
    return trials_frame(rows, plan)


def error_message(error: BaseException | str) -> str:
    """The failing exception's own ``Type: message`` on one line, not Ray's wrapper header or traceback (a
    ``Result`` read back from storage carries the error as text)."""
    cause = getattr(error, "cause", None) or getattr(error, "__cause__", None) or error
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    if cause is not error:
        return f"{type(cause).__name__}: {' '.join(lines)}"[:300]
    if "Traceback" not in str(error) and not isinstance(error, str):
        return f"{type(error).__name__}: {' '.join(lines)}"[:300]
    start = max((i for i, ln in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception)\b", ln)), default=0)
    return " ".join(lines[start:])[:300] or type(error).__name__
