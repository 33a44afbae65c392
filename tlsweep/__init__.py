"""tlsweep: distributed hyperparameter sweeps for transfer learning on image classification.

    import tlsweep
    spec = tlsweep.load_spec("sweeps/demo.yaml")
    result = tlsweep.run_sweep(spec)                  # Ray Tune + Optuna + ASHA
    html = tlsweep.make_report(result.storage)        # leaderboard, plots, Grad-CAM
    predictor = tlsweep.load_predictor(result.storage)

Names load on first use, so ``import tlsweep`` imports neither torch nor Ray.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tlsweep")
except PackageNotFoundError:  # a source checkout that is not installed
    __version__ = "0+unknown"

# public name → the module that defines it
_EXPORTS = {
    "load_spec": "spec", "parse_spec": "spec", "Spec": "spec", "SpecError": "spec",
    "TrialConfig": "config", "SweepPlan": "config", "ModelConfig": "config", "DataConfig": "config",
    "ConfigError": "config",
    "run_sweep": "sweep.runner", "SweepResult": "sweep.runner", "SweepInterrupted": "sweep.runner",
    "Trial": "train", "fit": "train", "load_checkpoint": "train",
    "make_report": "report.build", "ReportError": "report.collect",
    "load_predictor": "predict", "Predictor": "predict", "Prediction": "predict",
    "export_checkpoint": "export", "resolve_checkpoint": "checkpoints",
    "list_backbones": "models.registry", "get_backbone": "models.registry", "register_backbone": "models.registry",
    "Backbone": "models.registry",
    "OPTIMIZERS": "optim", "LR_SCHEDULERS": "optim",
    "Status": "results", "read_plan": "results",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tlsweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
