"""A Ray Tune searcher that spreads trials evenly over groups (models × grid points), each group with its
own Optuna study, so every model gets its budget and TPE learns per model.

With ``objectives`` each study is multi-objective (Ray's ``OptunaSearch`` takes lists of metrics and modes) and
is told the trial's values at its best epoch by the ranking metric (the one ASHA stops on), as the trials'
tables show them; with ``constraints`` the told trial carries Optuna constraint values (``Trial.set_constraint``,
read by TPE and NSGA-II). A warm start adds earlier sweeps' trials to the studies and queues their best configs
first (``tlsweep.sweep.warmstart``); that happens once, when the searcher is built.

The studies live in an Optuna storage (``tlsweep.results.studies``: a journal file by default, or a database), named
``<sweep>/<model>[/<grid point>]``; each trial carries its Ray trial id, model label and tlsweep status (finished,
stopped, diverged, failed) as user attributes, and its per-epoch metric as intermediate values (a multi-objective
study, which Optuna does not give those, as the user attribute ``intermediate_<metric>``). What the sampler is told
is the same as in memory: a trial ASHA stopped is complete with its last value. A resumed sweep reads its studies
back from the storage (the checkpoint keeps only the searcher's bookkeeping and samplers); a trial the storage has
running that the checkpoint does not know (the driver died between the two) is failed as ``lost``. With
``searcher.storage: memory`` the checkpoint pickles the studies, as before.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections import Counter

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..config.space import Group
from ..results.studies import study_name
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
    """Ray's ``OptunaSearch`` over one group's distributions, plus constraints, user attributes and a seeded
    history; results of a trial the study has already ended (told before a driver kill) are ignored."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._completed_trials:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)

    def set_attrs(self, trial_id: str, **attrs) -> None:
        """User attributes of a trial not yet told."""
        trial = self._ot_trials.get(trial_id)
        if trial is not None and trial_id not in self._completed_trials:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)

    def reattach(self) -> None:
        """After a resume: map Ray trial ids to the storage's trials; those it has ended are not told again."""
        import optuna

        for frozen in self._ot_study.get_trials(deepcopy=False):
            trial_id = frozen.user_attrs.get(TRIAL_ID_ATTR)
            if trial_id is not None:
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, frozen._trial_id)
                if frozen.state.is_finished():
                    self._completed_trials.add(trial_id)

    def fail_lost(self, known: set[str]) -> None:
        """Fail the running trials that Tune does not know (created after the checkpoint a resume started from)."""
        import optuna

        for trial_id, trial in list(self._ot_trials.items()):
            if trial_id not in known and trial_id not in self._completed_trials:
                trial.set_user_attr(STATUS_ATTR, "lost")
                self._ot_study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self._completed_trials.add(trial_id)

    def constrain(self, trial_id: str, values: dict[str, float]) -> None:
        """Optuna constraint values of a trial about to be told (> 0 violates; unmeasured counts as violated)."""
        trial = self._ot_trials.get(trial_id)
        if trial is not None:
            for key, value in values.items():
                trial.set_constraint(key, math.inf if math.isnan(value) else value)

    @property
    def study(self):
        return self._ot_study


TRIAL_ID_ATTR, MODEL_ATTR, STATUS_ATTR = "ray_trial_id", "model", "tlsweep_status"


def study_names(sweep: str, groups: list[Group], search: dict) -> list[str]:
    """One study name per group: sweep, model and grid point (``tlsweep.results.studies.study_name``)."""
    from ..config.distributions import Distribution

    grid = tuple(k for k, v in search.items() if isinstance(v, Distribution))
    names = [study_name(sweep, g.fixed, grid) for g in groups]
    seen = Counter(names)
    return [f"{n}#{i}" if seen[n] > 1 else n for i, n in enumerate(names)]  # values that print alike


class GroupedSearcher(Searcher):
    objectives: list = []  # class defaults for searchers pickled before these existed (read, never mutated)
    constraints: dict = {}
    seeded: list = []
    storage_url: str | None = None
    names: list = []
    epochs: int | None = None
    curves: dict = {}
    steps: dict = {}
    lost_checked: bool = True

    def __init__(self, groups: list[Group], samples_per_group: int, metric: str, mode: str,
                 sampler: str = "optuna", seed: int | None = 0, *,
                 objectives: list[tuple[Metric, str]] | None = None, constraints: dict | None = None,
                 population_size: int | None = None, warm=None, storage_url: str | None = None,
                 names: list[str] | None = None, epochs: int | None = None):
        """``metric``/``mode``: the ranking metric (a result key); ``objectives``: what the studies optimise
        (default: the ranking metric); ``warm``: a ``warmstart.WarmStart`` for these groups; ``storage_url``: the
        studies' Optuna storage (``tlsweep.results.studies.open_storage``; None: in memory), ``names`` their
        names; ``epochs``: a trial's full length (a shorter one that completes was stopped)."""
        super().__init__(metric=metric, mode=mode)
        _quiet_optuna()
        self.groups = groups
        self.samples_per_group = samples_per_group
        self.objectives = list(objectives or [])
        self.constraints = dict(constraints or {})
        if self.objectives:
            keys, modes = [m.result_key for m, _ in self.objectives], [md for _, md in self.objectives]
            self.study_metric, self.study_mode = (keys, modes) if len(keys) > 1 else (keys[0], modes[0])
        else:
            self.study_metric, self.study_mode = metric, mode
        self.storage_url = storage_url
        self.names = list(names) if names else [f"group-{i}" for i in range(len(groups))]
        self.epochs = epochs
        self.curves = {}  # multi-objective: trial id → {epoch: ranking metric}
        self.steps = {}  # trial id → its last epoch told
        samplers = [SAMPLERS[sampler](None if seed is None else seed + i, population_size) if g.sampled else None
                    for i, g in enumerate(groups)]
        self.studies = self._open(samplers)
        if storage_url is not None:
            from .warmstart import FIXED_ATTR

            metrics = self.study_metric if isinstance(self.study_metric, list) else [self.study_metric]
            for study, g in zip(self.studies, groups):
                if study is not None:
                    study.study.set_user_attr(FIXED_ATTR, g.fixed)
                    with warnings.catch_warnings():  # experimental in Optuna 5; the dashboard labels axes with it
                        warnings.simplefilter("ignore")
                        study.study.set_metric_names(metrics)
        self.assigned: Counter[int] = Counter()
        self.trial_group: dict[str, int] = {}
        self.best: dict[str, dict] = {}  # trial id → its best result row so far (by the ranking metric)
        self.seeded: list[int] = [0] * len(groups)  # earlier trials added to each study (warm start)
        if warm is not None:
            self._seed(warm)

    def _open(self, samplers: list) -> list[GroupStudy | None]:
        storage = None
        if self.storage_url is not None:
            from ..results.studies import open_storage

            storage = open_storage(self.storage_url)
        return [GroupStudy({k: d.to_optuna() for k, d in g.sampled.items()}, metric=self.study_metric,
                           mode=self.study_mode, sampler=sampler, study_name=name if storage else None,
                           storage=storage) if g.sampled else None
                for g, sampler, name in zip(self.groups, samplers, self.names)]

    def _seed(self, warm) -> None:
        for i, study in enumerate(self.studies):
            if study is None:
                continue
            study.study.add_trials(warm.history[i])
            self.seeded[i] = len(warm.history[i])
            for params in warm.first[i]:
                study.study.enqueue_trial(params)  # not skip_if_exists: the same params are in the history

    def suggest(self, trial_id: str):
        studies = self.studies
        if not self.lost_checked:  # the first call of a resumed run (reading a checkpoint changes nothing)
            for study in studies:
                if study is not None:
                    study.fail_lost(set(self.trial_group))
            self.lost_checked = True
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
        if study is None:
            return dict(self.groups[index].fixed)
        new = trial_id not in study._ot_trials
        config = {**self.groups[index].fixed, **study.suggest(trial_id)}
        if new and self.storage_url is not None:
            study.set_attrs(trial_id, **{TRIAL_ID_ATTR: trial_id, MODEL_ATTR: str(config.get("model"))})
        return config

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
        if self.storage_url is not None and isinstance(step := result.get("training_iteration"), int):
            self.steps[trial_id] = step
        if isinstance(study.metric, str) and study.metric in result:
            study.on_trial_result(trial_id, result)
        elif self.storage_url is not None and self.metric in result and "training_iteration" in result:
            self.curves.setdefault(trial_id, {})[int(result["training_iteration"])] = result[self.metric]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study = self._study(trial_id)
        if study is None:
            return
        status = self._status(result, error)
        last = self.steps.get(trial_id, 0)
        if self.storage_url is not None and result and result.get("training_iteration", 0) > last:
            self.on_trial_result(trial_id, result)  # a trial's last epoch may come only here
        self.steps.pop(trial_id, None)
        if result and result.get("diverged"):
            result = None
            error = True
        if result is not None and (self.objectives or self.constraints):
            best = self.best.pop(trial_id, None)  # the last result may come only here (a trial stopped at max_t)
            if best is not None and not self._better(result, best):
                result = {**result, **best}  # values at the best epoch, as the tables show
            if self.constraints:
                study.constrain(trial_id, violations(values_of(result, list(self.constraints)), self.constraints))
        if self.storage_url is not None:
            curve = self.curves.pop(trial_id, None)
            attrs = {STATUS_ATTR: status, **({f"intermediate_{self.metric}": [curve[k] for k in sorted(curve)]}
                                             if curve else {})}
            study.set_attrs(trial_id, **attrs)
        study.on_trial_complete(trial_id, result, error)

    def _status(self, result: dict | None, error: bool) -> str:
        if result and result.get("diverged"):
            return "diverged"
        if error or not result:
            return "failed" if error else "stopped"
        epochs = result.get("training_iteration")
        return "stopped" if self.epochs and isinstance(epochs, int) and epochs < self.epochs else "finished"

    @property
    def studies(self) -> list[GroupStudy | None]:
        """The groups' studies; after an unpickle with a storage, read back from it on first use."""
        if self.__dict__.get("_studies") is None:
            self._studies = self._open(self.__dict__.pop("_samplers", None) or [None] * len(self.groups))
            for study in self._studies:
                if study is not None:
                    study.reattach()
            self.lost_checked = False
        return self._studies

    @studies.setter
    def studies(self, value) -> None:
        self._studies = value

    def __getstate__(self) -> dict:
        """With a storage, the studies stay there: the state keeps the samplers (their random state) only."""
        state = self.__dict__.copy()
        if "studies" in state:  # pickled by a tlsweep from before the storage
            state["_studies"] = state.pop("studies")
        if self.storage_url is not None and state.get("_studies") is not None:
            state["_samplers"] = [s._sampler if s is not None else None for s in state.pop("_studies")]
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if "studies" in state:
            state["_studies"] = state.pop("studies")
        self.__dict__.update({"_studies": None, **state})

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))
