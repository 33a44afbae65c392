"""A Ray Tune searcher that spreads trials evenly over groups (models × grid points), each group with its
own Optuna study, so every model gets its budget and TPE learns per model."""

from __future__ import annotations

import pickle
from collections import Counter

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from .space import Group


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tpe(seed):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _random(seed):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS = {"optuna": _tpe, "tpe": _tpe, "random": _random, "grid": _random}


class GroupedSearcher(Searcher):
    def __init__(self, groups: list[Group], samples_per_group: int, metric: str, mode: str,
                 sampler: str = "optuna", seed: int | None = 0):
        super().__init__(metric=metric, mode=mode)
        _quiet_optuna()
        self.groups = groups
        self.samples_per_group = samples_per_group
        self.studies: list[OptunaSearch | None] = [
            OptunaSearch({k: d.to_optuna() for k, d in g.sampled.items()}, metric=metric, mode=mode,
                         sampler=SAMPLERS[sampler](None if seed is None else seed + i)) if g.sampled else None
            for i, g in enumerate(groups)
        ]
        self.assigned: Counter[int] = Counter()
        self.trial_group: dict[str, int] = {}

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

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        study = self._study(trial_id)
        if study is not None and self.metric in result:
            study.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study = self._study(trial_id)
        if study is not None:
            if result and result.get("diverged"):
                result = None
                error = True
            study.on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
