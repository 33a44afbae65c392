"""The Ray Tune function trainable: a thin wrapper over ``tlsweep.train.Trial``."""

from __future__ import annotations

import os
import tempfile

import ray
import ray.tune as tune
import torch

from ..config import SweepPlan
from ..train import Trial
from .checkpointing import checkpoint_epochs
from .cluster import trial_resources


def train_trial(config: dict, spec: dict) -> None:
    """``config``: the values the searcher drew (model label, hyperparameters); ``spec``: ``SweepPlan.to_dict()``.
    Restore from the trial's last checkpoint if Tune hands one over, then report every epoch."""
    plan = SweepPlan.from_dict(spec)
    cpus = plan.resources_of(config["model"]).cpu
    torch.set_num_threads(max(1, int(os.environ.get("TLSWEEP_TORCH_THREADS", cpus))))
    trial = Trial(plan.trial_config(config))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trial.restore(directory)
    info = {"model_label": config["model"], "total_params": trial.total_params,
            "trainable_params": trial.trainable_params, "node_ip": _node_ip(),
            "node_id": ray.get_runtime_context().get_node_id(), "start_epoch": trial.epoch}
    due = checkpoint_epochs(plan, trial.max_epochs)
    for metrics in trial.run():
        info["train_seconds_total"] = sum(m["epoch_seconds"] for m in trial.history)
        if not due(trial.epoch):
            tune.report({**metrics, **info})
            continue
        with tempfile.TemporaryDirectory() as directory:
            trial.save(directory)
            tune.report({**metrics, **info}, checkpoint=tune.Checkpoint.from_directory(directory))


def make_trainable(plan: SweepPlan):
    """The Tune trainable of a sweep: ``train_trial`` with the plan bound (as JSON data) and per-model resources."""
    return tune.with_resources(tune.with_parameters(train_trial, spec=plan.to_dict()), trial_resources(plan))


def _node_ip() -> str:
    import ray.util

    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"
