"""Run a sweep on Ray Tune: attach to (or start) Ray, build the Tuner, fit or resume, summarize."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..spec import Spec
from .cluster import ResourceError, StorageError, check_cluster, make_trainable, trial_nodes  # noqa: F401 (re-exported)
from .space import build_groups, samples_per_group, total_trials

os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
SPEC_FILE = "tlsweep_spec.json"
SUMMARY_FILE = "summary.csv"
log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    storage: str
    trials: pd.DataFrame  # one row per trial: model, status, best metric, epochs, config
    seconds: float

    def best_per_model(self, metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
        ok = self.trials[self.trials["status"].isin(["finished", "stopped"])]
        if ok.empty:
            return ok
        ordered = ok.sort_values(metric, ascending=(mode == "min"))
        return ordered.groupby("model", sort=False).head(1).set_index("model")

    @property
    def all_failed(self) -> bool:
        return not self.trials["status"].isin(["finished", "stopped"]).any()


def split_storage(storage: str) -> tuple[str, str]:
    """``results/name`` → (absolute ``results``, ``name``); URIs keep their scheme."""
    storage = storage.rstrip("/")
    parent, _, name = storage.rpartition("/")
    return (parent if "://" in storage else str(Path(parent).resolve())), name


def init_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Attach to the cluster at ``address`` (or RAY_ADDRESS); otherwise start a local Ray explicitly."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)


def _write_spec(plain: dict, storage: str) -> None:
    if "://" in storage:
        return
    path = Path(storage)
    path.mkdir(parents=True, exist_ok=True)
    (path / SPEC_FILE).write_text(json.dumps(plain, indent=2, default=str))


def trial_dirname(trial) -> str:
    """Short trial folder names: ``<trial id>_<model>`` instead of Tune's config dump."""
    model = str((trial.config or {}).get("model", "trial")).replace("/", "_")
    return f"{trial.trial_id}_{model}"


def build_tuner(plain: dict, callbacks: list | None = None):
    """The Ray Tune ``Tuner`` for a plain spec (see ``Spec.to_plain``)."""
    from ray import tune

    from .resume import ResumableASHA, SchedulerState
    from .schedulers import build_scheduler
    from .searcher import GroupedSearcher

    sched_cfg = plain["scheduler"]
    metric, mode = sched_cfg["metric"], sched_cfg["mode"]
    scheduler = build_scheduler(plain)
    if isinstance(scheduler, ResumableASHA):
        callbacks = [*(callbacks or []), SchedulerState(scheduler, plain["storage"])]
    searcher = GroupedSearcher(build_groups(plain), samples_per_group(plain), metric, mode,
                               plain["searcher"]["type"],
                               plain["searcher"]["seed"] if plain["searcher"]["seed"] is not None else plain["seed"])
    storage_path, name = split_storage(plain["storage"])
    return tune.Tuner(
        make_trainable(plain),
        tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=searcher, scheduler=scheduler,
                                    num_samples=total_trials(plain),
                                    max_concurrent_trials=plain.get("max_concurrent"),
                                    trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, verbose=0, callbacks=callbacks or [],
            failure_config=tune.FailureConfig(max_failures=plain["max_failures"]),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=plain["checkpoints"]["num_to_keep"],
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
              callbacks: list | None = None, checked=None) -> SweepResult:
    """Check the sweep against its data and machine (``checked``: a ``tlsweep.preflight.Preflight`` already
    made), start or attach to Ray, and run (or resume) the sweep to the end. Raises ``SpecError`` for
    preflight problems and ``SweepInterrupted`` when Ctrl-C stopped it early."""
    from ..preflight import check_or_raise

    if num_samples is not None:
        spec = spec.model_copy(update={"num_samples": num_samples})
    plain = spec.to_plain()
    plain["scheduler"]["mode"] = spec.scheduler.resolved_mode
    if checked is None:  # dataset and machine problems surface before Ray starts
        checked = check_or_raise(spec, address=address)
        for warning in checked.warnings:
            log.warning(warning)
    if checked.skip_files:
        plain["data"]["skip_files"] = checked.skip_files
    from ..weights import ensure_weights

    ensure_weights(plain)  # fetch each weights file once here, not in every trial at once
    init_ray(address)
    check_cluster(plain)
    from ray import tune

    from .resume import changed_since, sweep_state

    start = time.perf_counter()
    storage = plain["storage"]
    if not resume and sweep_state(storage, total_trials(plain)) == "unfinished":
        log.warning("%s holds an unfinished sweep: resuming it", storage)
        resume = True
    if resume and (changed := changed_since(storage, plain, SPEC_FILE)):
        raise StorageError(f"{storage} holds a sweep run from a different sweep file (changed: {', '.join(changed)}); "
                           f"resuming would mix the two. Give this sweep another `name` or `storage`, or delete "
                           f"{storage} to start over.")
    _write_spec(plain, storage)
    if resume and tune.Tuner.can_restore(storage):
        tuner = tune.Tuner.restore(storage, make_trainable(plain), resume_unfinished=True, resume_errored=True)
    else:
        tuner = build_tuner(plain, callbacks)
    grid = tuner.fit()
    trials = trials_frame(grid, plain)
    if "://" not in storage:
        trials.to_csv(Path(storage) / SUMMARY_FILE, index=False)
    result = SweepResult(storage, trials, time.perf_counter() - start)
    if interrupted(grid, total_trials(plain)):
        raise SweepInterrupted(result)
    return result


def interrupted(grid, expected: int) -> bool:
    """Tune swallows the first SIGINT and returns a partial grid: some trials unfinished or never started."""
    trials = grid._experiment_analysis.trials
    return len(trials) < expected or any(t.status not in ("TERMINATED", "ERROR") for t in trials)


def trial_status(result, max_epochs: int) -> str:
    metrics = result.metrics or {}
    if metrics.get("diverged"):
        return "diverged"
    if result.error is not None:
        return "error"
    if not metrics:
        return "pending"
    return "finished" if metrics.get("training_iteration", 0) >= max_epochs else "stopped"


def trials_frame(grid, plain: dict) -> pd.DataFrame:
    """One row per trial of a ResultGrid: model, status, best epoch's metrics, epochs run, config, path."""
    metric, mode = plain["scheduler"]["metric"], plain["scheduler"]["mode"]
    rows = []
    for result in grid:
        config = dict(result.config or {})
        history = result.metrics_dataframe
        if history is not None and "training_iteration" in history:  # epochs reported again after a restore
            history = history.drop_duplicates("training_iteration", keep="last")
        row = {"trial_id": (result.metrics or {}).get("trial_id") or _trial_id(result.path, config),
               "model": config.get("model"),
               "status": trial_status(result, plain["epochs"]), "path": result.path}
        if history is not None and not history.empty and metric in history:
            best = history.loc[history[metric].idxmin() if mode == "min" else history[metric].idxmax()]
            row.update({k: best.get(k) for k in ("val_acc", "val_loss", "train_acc", "train_loss")})
            row["best_epoch"] = int(best.get("training_iteration", 0))
            row["epochs"] = int(history["training_iteration"].max())
            row["seconds"] = float(history["epoch_seconds"].sum()) if "epoch_seconds" in history else None
            row["nodes"] = trial_nodes(history)
        row["error"] = error_message(result.error) if result.error else (result.metrics or {}).get("error")
        row.update({f"config/{k}": v for k, v in config.items() if k != "model"})
        rows.append(row)
    return pd.DataFrame(rows)


def _trial_id(path: str | None, config: dict) -> str | None:
    """The trial id from its folder name ``<trial id>_<model>`` (see ``trial_dirname``)."""
    if not path:
        return None
    name = Path(path).name
    return name.removesuffix("_" + str(config.get("model", "trial")).replace("/", "_"))


def error_message(error: BaseException) -> str:
    """The failing exception's own ``Type: message`` on one line, not Ray's wrapper header or traceback."""
    cause = getattr(error, "cause", None) or error.__cause__ or error
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    if cause is not error:
        return f"{type(cause).__name__}: {' '.join(lines)}"[:300]
    if "Traceback" not in str(error):
        return f"{type(error).__name__}: {' '.join(lines)}"[:300]
    start = max((i for i, ln in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception)\b", ln)), default=0)
    return " ".join(lines[start:])[:300] or type(error).__name__
