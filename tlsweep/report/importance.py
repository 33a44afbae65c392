"""What mattered: the sweep's trials as an Optuna study (``create_trial`` + ``add_trials``), scored by Optuna's
own importance evaluator (fANOVA, seeded) per model.

A trial's value is its best validation metric; trials ASHA stopped count with the best value they reached (they
were stopped for being behind); diverged and failed trials are left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..config.distributions import Distribution, Grid
from ..config.plan import SweepPlan
from .collect import Sweep, TrialRecord

DONE = ("finished", "stopped")
MIN_TRIALS = 3  # fewer trials than this tell nothing about importance
_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Importance:
    """Normalized importances (sum 1, most important first) of one model's searched parameters, or why none."""

    model: str
    importances: dict[str, float]
    trials: int
    note: str = ""

    @property
    def top(self) -> tuple[str, float] | None:
        return next(iter(self.importances.items()), None)


def search_distributions(plan: SweepPlan) -> dict:
    """Optuna distributions of the searched parameters of the sweep (grid values as categorical), bar ``model``."""
    import optuna

    out = {}
    for key, dist in plan.search.params().items():
        if key == "model" or not isinstance(dist, Distribution):
            continue
        if isinstance(dist, Grid) or any(not isinstance(v, _PLAIN) for v in dist.values() or ()):
            out[key] = optuna.distributions.CategoricalDistribution([_categorical(v) for v in dist.values()])
        else:
            out[key] = dist.to_optuna()
    return out


def _categorical(value):
    return value if isinstance(value, _PLAIN) else json.dumps(value, sort_keys=True)


def trial_value(trial: TrialRecord, sweep: Sweep) -> float | None:
    """The trial's best validation metric, or None when it has none or did not end cleanly."""
    if trial.status not in DONE:
        return None
    row = trial.best_row(sweep.metric, sweep.mode, with_checkpoint=False)
    return None if row is None else float(row[sweep.metric])


def build_study(sweep: Sweep, trials: list[TrialRecord], distributions: dict):
    """An in-memory Optuna study holding ``trials`` (params from their configs) with their values."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if sweep.mode == "max" else "minimize"
    study = optuna.create_study(direction=direction)
    frozen = []
    for t in trials:
        value = trial_value(t, sweep)
        if value is None or not math.isfinite(value):
            continue
        params = {k: (_categorical(t.config[k]) if isinstance(d, optuna.distributions.CategoricalDistribution)
                      else t.config[k]) for k, d in distributions.items()}
        try:
            frozen.append(optuna.trial.create_trial(params=params, distributions=distributions, value=value,
                                                    user_attrs={"trial_id": t.trial_id, "model": t.model}))
        except ValueError:  # a value outside today's search space (the sweep file changed since): left out
            continue
    study.add_trials(frozen)
    return study


def model_importance(sweep: Sweep, model: str, seed: int = 0) -> Importance:
    """fANOVA importances of the parameters searched for ``model`` over its done trials."""
    import optuna

    trials = [t for t in sweep.trials if t.model == model]
    wanted = {k: d for k, d in search_distributions(sweep.plan).items() if all(k in t.config for t in trials)}
    study = build_study(sweep, trials, wanted)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = [k for k in wanted if len({repr(t.params[k]) for t in done}) > 1]
    if len(done) < MIN_TRIALS:
        return Importance(model, {}, len(done), f"{len(done)} done trial(s); importance needs {MIN_TRIALS}+")
    if not varying:
        return Importance(model, {}, len(done), "no searched parameter varied across its trials")
    if len({t.value for t in done}) == 1:
        return Importance(model, {}, len(done), f"every trial reached the same {sweep.metric}")
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying)
    constant = [k for k in wanted if k not in varying]
    note = f"constant in these trials: {', '.join(constant)}" if constant else ""
    return Importance(model, {k: float(v) for k, v in scores.items()}, len(done), note)


def sweep_study(sweep: Sweep):
    """Every done trial of the sweep in one study, the model label as a categorical parameter (for plots)."""
    import optuna

    common = {k: d for k, d in search_distributions(sweep.plan).items() if all(k in t.config for t in sweep.trials)}
    models = list(dict.fromkeys(t.model for t in sweep.trials))
    return build_study(sweep, sweep.trials, {"model": optuna.distributions.CategoricalDistribution(models), **common})
