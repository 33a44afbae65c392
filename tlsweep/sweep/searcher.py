"""A Ray Tune searcher that spreads trials evenly over groups (models × grid points), each group with its
own Optuna study, so every model gets its budget and TPE learns per model.

With ``objectives`` each study is multi-objective (Ray's ``OptunaSearch`` takes lists of metrics and modes) and
is told the trial's values at its best epoch by the ranking metric (the one ASHA stops on), as the trials'
tables show them; with ``constraints`` the told trial carries Optuna constraint values (``Trial.set_constraint``,
read by TPE and NSGA-II). A warm start adds earlier sweeps' trials to the studies and queues their best configs
first (``tlsweep.sweep.warmstart``); that happens once, when the searcher is built, and a resumed sweep gets
the studies back from the searcher's checkpoint.
"""

from __future__ import annotations

import math
import pickle
from collections import Counter

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..config.space import Group
from ..trial.objectives import Metric, values_of, violations


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tpe(seed, population_size=None):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)  # multi-objective too (MOTPE)


def _nsga2(seed, population_size=None):
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, **({"population_size": population_size} if population_size
                                                        else {}))


def _random(seed, population_size=None):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS = {"optuna": _tpe, "tpe": _tpe, "nsga2": _nsga2, "random": _random, "grid": _random}


class GroupStudy(OptunaSearch):
    """Ray's ``OptunaSearch`` over one group's distributions, plus constraints and a seeded history."""

    def constrain(self, trial_id: str, values: dict[str, float]) -> None:
        """Optuna constraint values of a trial about to be told (> 0 violates; unmeasured counts as violated)."""
        trial = self._ot_trials.get(trial_id)
        if trial is not None:
            for key, value in values.items():
                trial.set_constraint(key, math.inf if math.isnan(value) else value)

    @property
    def study(self):
        return self._ot_study


class GroupedSearcher(Searcher):
    objectives: list = []  # class defaults for searchers pickled before these existed (read, never mutated)
    constraints: dict = {}
    seeded: list = []

    def __init__(self, groups: list[Group], samples_per_group: int, metric: str, mode: str,
                 sampler: str = "optuna", seed: int | None = 0, *,
                 objectives: list[tuple[Metric, str]] | None = None, constraints: dict | None = None,
                 population_size: int | None = None, warm=None):
        """``metric``/``mode``: the ranking metric (a result key); ``objectives``: what the studies optimise
        (default: the ranking metric); ``warm``: a ``warmstart.WarmStart`` for these groups."""
        super().__init__(metric=metric, mode=mode)
        _quiet_optuna()
        self.groups = groups
        self.samples_per_group = samples_per_group
        self.objectives = list(objectives or [])
        self.constraints = dict(constraints or {})
        if self.objectives:
            keys, modes = [m.result_key for m, _ in self.objectives], [md for _, md in self.objectives]
            study_metric, study_mode = (keys, modes) if len(keys) > 1 else (keys[0], modes[0])
        else:
            study_metric, study_mode = metric, mode
        self.studies: list[GroupStudy | None] = [
            GroupStudy({k: d.to_optuna() for k, d in g.sampled.items()}, metric=study_metric, mode=study_mode,
                       sampler=SAMPLERS[sampler](None if seed is None else seed + i, population_size))
            if g.sampled else None
            for i, g in enumerate(groups)
        ]
        self.assigned: Counter[int] = Counter()
        self.trial_group: dict[str, int] = {}
        self.best: dict[str, dict] = {}  # trial id → its best result row so far (by the ranking metric)
        self.seeded: list[int] = [0] * len(groups)  # earlier trials added to each study (warm start)
        if warm is not None:
            self._seed(warm)

    def _seed(self, warm) -> None:
        for i, study in enumerate(self.studies):
            if study is None:
                continue
            study.study.add_trials(warm.history[i])
            self.seeded[i] = len(warm.history[i])
            for params in warm.first[i]:
                study.study.enqueue_trial(params)  # not skip_if_exists: the same params are in the history

    def suggest(self, trial_id: str):
        if trial_id in self.trial_group:  # asked again for the same trial
            index = self.trial_group[trial_id]
        else:
            open_groups = [i for i in range(len(self.groups)) if self.assigned[i] < self.samples_per_group]
            if not open_groups:
                return Searcher.FINISHED
            index = min(open_groups, key=lambda i: (self.assigned[i], i))
            self.assigned[index] += 1
            self.trial_group[trial_id] = index
        study = self.studies[index]
        sampled = study.suggest(trial_id) if study is not None else {}
        return {**self.groups[index].fixed, **sampled}

    def _study(self, trial_id: str):
        index = self.trial_group.get(trial_id)
        return None if index is None else self.studies[index]

    def _keys(self) -> list[str]:
        metrics = [m.name for m, _ in self.objectives] + list(self.constraints)
        from ..trial.objectives import METRICS

        return [self.metric, "training_iteration", *{METRICS[n].result_key for n in metrics}]

    def _better(self, new: dict, old: dict | None) -> bool:
        if old is None:
            return True
        a, b = new.get(self.metric), old.get(self.metric)
        if not isinstance(a, (int, float)) or math.isnan(a):
            return False
        if not isinstance(b, (int, float)) or math.isnan(b):
            return True
        return a > b if self.mode == "max" else a < b

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        study = self._study(trial_id)
        if study is None:
            return
        if self.objectives or self.constraints:
            if self._better(result, self.best.get(trial_id)):
                self.best[trial_id] = {k: result[k] for k in self._keys() if k in result}
        if isinstance(study.metric, str) and study.metric in result:
            study.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study = self._study(trial_id)
        if study is None:
            return
        if result and result.get("diverged"):
            result = None
            error = True
        if result is not None and (self.objectives or self.constraints):
            best = self.best.pop(trial_id, None)  # the last result may come only here (a trial stopped at max_t)
            if best is not None and not self._better(result, best):
                result = {**result, **best}  # values at the best epoch, as the tables show
            if self.constraints:
                study.constrain(trial_id, violations(values_of(result, list(self.constraints)), self.constraints))
        study.on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
