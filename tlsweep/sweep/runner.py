"""Run a sweep on Ray Tune: attach to (or start) Ray, build the Tuner, fit or resume, summarize."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..spec import Spec
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


class ResourceError(RuntimeError):
    """The cluster cannot host one trial of the sweep."""


def check_resources(resources: dict) -> None:
    """Fail early when no node could ever run a trial (e.g. GPUs asked on a cluster without any)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    need = {"CPU": resources["cpu"], "GPU": resources["gpu"]}
    if any(all(node.get(k, 0) >= v for k, v in need.items() if v) for node in nodes):
        return
    have = ray.cluster_resources()
    raise ResourceError(
        f"each trial asks for {need['CPU']:g} CPU and {need['GPU']:g} GPU, but no node of the Ray cluster has that "
        f"(cluster: {have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU in all). Lower `resources` in the sweep "
        f"file or attach to a cluster with GPUs (--address)."
    )


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

    from .schedulers import build_scheduler
    from .searcher import GroupedSearcher
    from .trainable import train_trial

    sched_cfg = plain["scheduler"]
    metric, mode = sched_cfg["metric"], sched_cfg["mode"]
    scheduler = build_scheduler(plain)
    searcher = GroupedSearcher(build_groups(plain), samples_per_group(plain), metric, mode,
                               plain["searcher"]["type"],
                               plain["searcher"]["seed"] if plain["searcher"]["seed"] is not None else plain["seed"])
    res = plain["resources"]
    trainable = tune.with_resources(tune.with_parameters(train_trial, spec=plain),
                                    {"cpu": res["cpu"], "gpu": res["gpu"]})
    storage_path, name = split_storage(plain["storage"])
    return tune.Tuner(
        trainable,
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


def run_sweep(spec: Spec, address: str | None = None, num_samples: int | None = None, resume: bool = False,
              callbacks: list | None = None) -> SweepResult:
    """Validate the data, start or attach to Ray, and run (or resume) the sweep to the end."""
    from ..data import load_splits

    if num_samples is not None:
        spec = spec.model_copy(update={"num_samples": num_samples})
    plain = spec.to_plain()
    plain["scheduler"]["mode"] = spec.scheduler.resolved_mode
    load_splits(plain["data"], plain["seed"])  # dataset problems surface before Ray starts
    from ..weights import ensure_weights

    ensure_weights(plain)  # fetch each weights file once here, not in every trial at once
    init_ray(address)
    check_resources(plain["resources"])
    from ray import tune

    start = time.perf_counter()
    storage = plain["storage"]
    _write_spec(plain, storage)
    if resume and tune.Tuner.can_restore(storage):
        from .trainable import train_trial

        res = plain["resources"]
        trainable = tune.with_resources(tune.with_parameters(train_trial, spec=plain),
                                        {"cpu": res["cpu"], "gpu": res["gpu"]})
        tuner = tune.Tuner.restore(storage, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = build_tuner(plain, callbacks)
    grid = tuner.fit()
    trials = trials_frame(grid, plain)
    if "://" not in storage:
        trials.to_csv(Path(storage) / SUMMARY_FILE, index=False)
    return SweepResult(storage, trials, time.perf_counter() - start)


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
        row = {"trial_id": (result.metrics or {}).get("trial_id"), "model": config.get("model"),
               "status": trial_status(result, plain["epochs"]), "path": result.path}
        if history is not None and not history.empty and metric in history:
            best = history.loc[history[metric].idxmin() if mode == "min" else history[metric].idxmax()]
            row.update({k: best.get(k) for k in ("val_acc", "val_loss", "train_acc", "train_loss")})
            row["best_epoch"] = int(best.get("training_iteration", 0))
            row["epochs"] = int(history["training_iteration"].max())
            row["seconds"] = float(history["epoch_seconds"].sum()) if "epoch_seconds" in history else None
        row["error"] = str(result.error).splitlines()[0][:300] if result.error else (result.metrics or {}).get("error")
        row.update({f"config/{k}": v for k, v in config.items() if k != "model"})
        rows.append(row)
    return pd.DataFrame(rows)
