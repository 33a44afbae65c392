"""The Ray Tune function trainable: a thin wrapper over ``tlsweep.train.Trial``."""

from __future__ import annotations

import os
import tempfile

import ray
import ray.tune as tune
import torch

from ..train import Trial
from .checkpointing import checkpoint_epochs
from .cluster import trial_resources
from .space import trial_config


def train_trial(config: dict, spec: dict) -> None:
    """Restore from the trial's last checkpoint if Tune hands one over, then report every epoch."""
    cpus = trial_resources(spec).demand(config["model"])["CPU"]
    torch.set_num_threads(max(1, int(os.environ.get("TLSWEEP_TORCH_THREADS", cpus))))
    trial = Trial(trial_config(spec, config))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trial.restore(directory)
    info = {"model_label": config["model"], "total_params": trial.total_params,
            "trainable_params": trial.trainable_params, "node_ip": _node_ip(),
            "node_id": ray.get_runtime_context().get_node_id(), "start_epoch": trial.epoch}
    due = checkpoint_epochs(spec, trial.max_epochs)
    for metrics in trial.run():
        info["train_seconds_total"] = sum(m.get("epoch_seconds", 0.0) for m in trial.history)
        if not due(trial.epoch):
            tune.report({**metrics, **info})
            continue
        with tempfile.TemporaryDirectory() as directory:
            trial.save(directory)
            tune.report({**metrics, **info}, checkpoint=tune.Checkpoint.from_directory(directory))


def _node_ip() -> str:
    import ray.util

    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"
