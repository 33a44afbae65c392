"""Experiment trackers for the sweep file's ``loggers:``: one Ray Tune logger callback per tracker.

TensorBoard event files (with Tune's CSV/JSON) are always written by Tune itself; ``mlflow`` and ``wandb`` use
Ray's ``MLflowLoggerCallback`` / ``WandbLoggerCallback`` and need their extras installed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TLSweepError

if TYPE_CHECKING:
    from ..config.plan import SweepPlan
    from ..config.sections import LoggersConfig, MLflowLogger, WandbLogger


class LoggerError(TLSweepError, RuntimeError):
    """A logger listed in the sweep file cannot be used here (its package is missing)."""


@dataclass(frozen=True)
class Tracker:
    module: str  # the package the callback imports
    extra: str  # tlsweep's extra that installs it
    build: Callable  # (the logger's options model, plan) → Tune callback


def _mlflow(options: MLflowLogger, plan: SweepPlan):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(tracking_uri=options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"),
                                experiment_name=options.experiment_name or plan.name,
                                tags=options.tags or None, save_artifact=options.save_artifact)


def _wandb(options: WandbLogger, plan: SweepPlan):
    from .ray_internals import flushing_wandb_callback

    if options.mode in ("offline", "disabled"):  # Ray asks for an API key unless WANDB_MODE says otherwise
        os.environ["WANDB_MODE"] = options.mode
    kwargs = {k: v for k, v in {"entity": options.entity, "mode": options.mode, "tags": list(options.tags) or None,
                                "dir": options.dir or _local_dir(plan.storage, "wandb")}.items() if v}
    if kwargs.get("dir"):
        os.makedirs(kwargs["dir"], exist_ok=True)
    return flushing_wandb_callback(project=options.project or os.environ.get("WANDB_PROJECT") or plan.name,
                                   group=options.group or plan.name, **kwargs)


def _local_dir(storage: str, name: str) -> str | None:
    return None if "://" in storage else os.path.join(storage, name)


TRACKERS: dict[str, Tracker] = {
    "mlflow": Tracker("mlflow", "mlflow", _mlflow),
    "wandb": Tracker("wandb", "wandb", _wandb),
}


def missing(loggers: LoggersConfig) -> dict[str, str]:
    """Logger name → the message for each enabled tracker whose package is missing."""
    out = {}
    for name in loggers.enabled():
        tracker = TRACKERS.get(name)
        if tracker and importlib.util.find_spec(tracker.module) is None:
            out[name] = (f"the {name} logger needs the {tracker.module} package: "
                         f"pip install 'tlsweep[{tracker.extra}]'")
    return out


def logger_callbacks(plan: SweepPlan) -> list:
    """The Tune callbacks for the sweep's trackers; ``LoggerError`` naming the ``pip install`` if one is missing."""
    problems = missing(plan.loggers)
    if problems:
        raise LoggerError("; ".join(problems.values()))
    return [TRACKERS[name].build(options, plan) for name, options in plan.loggers.enabled().items()
            if name in TRACKERS]
