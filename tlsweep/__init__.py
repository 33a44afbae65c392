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
    "TLSweepError": "errors",
    "load_spec": "config.spec", "parse_spec": "config.spec", "Spec": "config.spec", "SpecError": "config.spec",
    "TrialConfig": "config.plan", "SweepPlan": "config.plan", "ModelConfig": "config.plan", "DataConfig": "config.plan",
    "ConfigError": "config.plan",
    "run_sweep": "sweep.runner", "SweepResult": "sweep.runner", "SweepInterrupted": "sweep.runner",
    "Trial": "trial.loop", "fit": "trial.loop", "load_checkpoint": "trial.loop",
    "make_report": "report.build", "ReportError": "report.collect", "build_posthoc": "posthoc.combine",
    "load_predictor": "deploy.predict", "Predictor": "deploy.predict", "Prediction": "deploy.predict",
    "export_checkpoint": "deploy.export", "resolve_checkpoint": "results.checkpoints",
    "list_backbones": "models.backbones", "get_backbone": "models.backbones", "register_backbone": "models.backbones",
    "Backbone": "models.backbones",
    "OPTIMIZERS": "trial.optim", "LR_SCHEDULERS": "trial.optim",
    "Status": "results.layout", "read_plan": "results.layout",
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
