"""Warm start: seed each group's Optuna study with earlier sweeps' trials, and queue their best configs first.

An earlier trial joins a group's study only where it fits this sweep: same model config, the group's fixed
values (model, grid point, constants), and a value inside every current distribution for each sampled
parameter; it was finished or stopped by ASHA and recorded every objective. Its values are read at its best
epoch by this sweep's ranking metric, as this sweep's own trials are told. What is dropped is counted by reason
in one message per earlier sweep (logged, and kept in ``warm_start.yaml`` in the new sweep's storage).

A source may also be an Optuna storage (a database URL or a journal file, ``tlsweep.results.studies``): every
study's complete trials join with the values they were told, their params completed by a tlsweep study's fixed
values (its ``tlsweep_fixed`` user attribute) and their ``model`` user attribute.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..config.distributions import Choice, Distribution, IntRange, _Range
from ..config.plan import MODEL_KEY, SweepPlan, model_label
from ..config.space import Group
from ..results.layout import USABLE
from ..results.storage import is_uri
from ..results.studies import redacted
from ..trial.objectives import (
    constraints,
    objectives,
    pareto_mask,
    ranking_metric,
    values_of,
    violations,
)
from .cluster import StorageError

NOTES_FILE = "warm_start.yaml"
FIXED_ATTR = "tlsweep_fixed"  # a tlsweep study's user attribute: its group's fixed values
log = logging.getLogger(__name__)


@dataclass
class WarmStart:
    """Per group: earlier trials for its study (Optuna ``FrozenTrial``s) and params to run first."""

    history: list[list] = field(default_factory=list)
    first: list[list[dict]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(map(len, self.history))


class WarmStartError(StorageError):
    """A ``warm_start`` folder cannot be read as a sweep."""


def _contains(dist: Distribution, value) -> bool:
    if isinstance(dist, Choice):
        return any(value == v and (type(value) is type(v) or (_num(value) and _num(v))) for v in dist.values())
    if not _num(value):
        return False
    if isinstance(dist, IntRange) and value != int(value):
        return False
    return isinstance(dist, _Range) and dist.low <= value <= dist.high


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(dist: Distribution) -> str:
    return f"{dist.kind} {list(dist.bounds()) if dist.bounds() else dist.values()}"


def _match(config: dict, groups: list[Group]) -> tuple[int | None, str | None]:
    """The group an earlier trial's config belongs to, or why none takes it."""
    reason = None
    for i, g in enumerate(groups):
        wrong = next((k for k, v in g.fixed.items() if config.get(k, _MISSING) != v), None)
        if wrong is not None:
            if reason is None or model_label(config) == model_label(g.fixed):
                reason = (f"{wrong}={config.get(wrong, '(none)')!r}, here {g.fixed[wrong]!r}" if wrong != "model"
                          else f"model {config.get('model')!r} is not in this sweep")
            continue
        for name, dist in g.sampled.items():
            if name not in config:
                return None, f"no value for {name}"
            if not _contains(dist, config[name]):
                return None, f"{name} outside {_describe(dist)}|{config[name]!r}"
        return i, None
    return None, reason or "no group"


_MISSING = object()


def _frozen(params: dict, dists: dict, values: list[float], cons: dict[str, float], source: str, trial_id: str):
    import optuna

    kw = {"values": values} if len(values) > 1 else {"value": values[0]}
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, params=params, distributions=dists, **kw,
        user_attrs={"warm_start": source, "warm_start_trial": trial_id},
        constraints={k: (math.inf if math.isnan(v) else v) for k, v in cons.items()} or None)


def _order(entries: list[dict], modes: list[str]) -> list[dict]:
    """Feasible first, then by Pareto rank (non-dominated sorting), then by the first objective."""
    def first_key(e):
        return -e["values"][0] if modes[0] == "max" else e["values"][0]

    rank = {}
    rest = list(range(len(entries)))
    level = 0
    while rest:
        mask = pareto_mask(np.array([entries[i]["values"] for i in rest]), modes)
        for i, on in zip(rest, mask):
            if on:
                rank[i] = level
        rest = [i for i, on in zip(rest, mask) if not on]
        level += 1
    order = sorted(range(len(entries)), key=lambda i: (not entries[i]["feasible"], rank[i], first_key(entries[i])))
    return [entries[i] for i in order]


def plan(sweep: SweepPlan, groups: list[Group]) -> WarmStart:
    """The warm start of a sweep's ``warm_start`` folders for ``groups`` (empty without one)."""
    warm = WarmStart([[] for _ in groups], [[] for _ in groups])
    sources = sweep.warm_start
    if not sources:
        return warm
    objs = objectives(sweep)
    rank_key, rank_mode = ranking_metric(sweep)
    keys = [m.result_key for m, _ in objs] if objs else [rank_key]
    modes = [mode for _, mode in objs] if objs else [rank_mode]
    bounds = constraints(sweep)
    use_history = sweep.warm_start_history
    top_k = sweep.warm_start_top_k
    candidates: list[list[dict]] = [[] for _ in groups]
    for source in sources:
        earlier = list(_from_studies(source, keys, list(bounds)) if is_study_storage(source)
                       else _from_folder(source, sweep, keys, rank_key, rank_mode, bounds))
        dropped: Counter[str] = Counter()
        examples: dict[str, list[str]] = {}
        taken = 0
        for t in earlier:
            if t.dropped:
                dropped[t.dropped] += 1
                continue
            values, cons = t.values, t.cons
            index, why = _match(t.config, groups)
            if index is not None and not t.same_model:
                index, why = None, f"model {model_label(t.config)!r} is configured differently"
            if index is None:
                why, _, example = why.partition("|")  # values outside a range are counted together
                dropped[why] += 1
                if example:
                    examples.setdefault(why, []).append(example)
                continue
            group = groups[index]
            params = {k: t.config[k] for k in group.sampled}
            feasible = all(c <= 0 for c in cons.values())
            candidates[index].append({"params": params, "values": values, "feasible": feasible,
                                      "trial": _frozen(params, {k: d.to_optuna() for k, d in group.sampled.items()},
                                                       values, cons, str(source), t.trial_id)})
            taken += 1
        note = f"warm start from {redacted(source)}: {len(earlier)} earlier trials, {taken} fit this sweep's search space"
        if dropped:
            note += "; dropped " + "; ".join(
                f"{n} × {why}" + (f" (got {', '.join(examples[why][:3])}{', …' if n > 3 else ''})"
                                  if why in examples else "") for why, n in dropped.most_common(6))
            if len(dropped) > 6:
                note += f"; {sum(dropped.values()) - sum(n for _, n in dropped.most_common(6))} × other reasons"
        warm.notes.append(note)
    for i, entries in enumerate(candidates):
        if not groups[i].sampled:
            continue
        if use_history:
            warm.history[i] = [e["trial"] for e in entries]
        if top_k and entries:
            seen = []
            for e in _order(entries, modes):
                if e["params"] not in seen:
                    seen.append(e["params"])
                if len(seen) == top_k:
                    break
            warm.first[i] = seen
    summary = (f"warm start: {warm.added} earlier trials added to the studies of {sum(1 for h in warm.history if h)} "
               f"group(s), {sum(map(len, warm.first))} earlier configs run first")
    if not warm.added and not any(warm.first):
        summary = "warm start: no earlier trial fits this sweep; it starts cold"
    warm.notes.append(summary)
    return warm


@dataclass
class Earlier:
    """An earlier trial as a warm start reads it: its config, values (this sweep's objectives) and constraint
    violations, or why it is dropped."""

    trial_id: str
    config: dict = field(default_factory=dict)
    values: list[float] = field(default_factory=list)
    cons: dict[str, float] = field(default_factory=dict)
    same_model: bool = True
    dropped: str | None = None


def is_study_storage(source: str) -> bool:
    """A database URL or a journal file (else: a sweep's results folder)."""
    from ..results.studies import RDB_SCHEMES, scheme

    return scheme(source) in RDB_SCHEMES or (not is_uri(source) and Path(source).is_file())


def _from_folder(source: str, sweep: SweepPlan, keys, rank_key, rank_mode, bounds):
    """Trials of a results folder, their values at the best epoch by this sweep's ranking metric."""
    from ..report.collect import ReportError, collect

    try:
        past = collect(source)
    except ReportError as err:
        raise WarmStartError(f"warm_start: {err}") from None
    for t in past.trials:
        if t.status not in USABLE:
            yield Earlier(t.trial_id, dropped=f"status {t.status}")
            continue
        best = t.best_row(rank_key, rank_mode, with_checkpoint=False)
        if best is None:
            yield Earlier(t.trial_id, dropped=f"no {rank_key} recorded")
            continue
        row = best.to_dict()
        values = [_value(row, k) for k in keys]
        missing = [k for k, v in zip(keys, values) if math.isnan(v)]
        if missing:
            yield Earlier(t.trial_id, dropped=f"no {', '.join(missing)} recorded")
            continue
        label = model_label(t.config)
        yield Earlier(t.trial_id, t.config, values, violations(values_of(row, list(bounds)), bounds),
                      _json(sweep.models_table.get(label)) == _json(past.plan.models_table.get(label)))


def _from_studies(source: str, keys: list[str], bounds: list[str]):
    """Complete trials of every study in an Optuna storage, with the values they were told; a tlsweep study adds
    its group's fixed values (model, grid point, constants) to each trial's params."""
    from ..results.studies import StudyStorageError, load_studies, probe

    try:
        if not Path(source).is_file():
            probe(source)
        studies = load_studies(source)
    except StudyStorageError as err:
        raise WarmStartError(f"warm_start: {err}") from None
    for study in studies:
        fixed = study.user_attrs.get(FIXED_ATTR) or {}
        for t in study.get_trials(deepcopy=False):
            trial_id = t.user_attrs.get("ray_trial_id") or f"{study.study_name}#{t.number}"
            if t.state.name != "COMPLETE":
                yield Earlier(trial_id, dropped=f"state {t.state.name}")
                continue
            if len(t.values) != len(keys):
                yield Earlier(trial_id, dropped=f"{len(t.values)} objective value(s), here {len(keys)}")
                continue
            told = t.system_attrs.get("constraints") or []
            if bounds and len(told) != len(bounds):
                yield Earlier(trial_id, dropped="no constraint values")
                continue
            model = {MODEL_KEY: t.user_attrs["model"]} if "model" in t.user_attrs else {}
            yield Earlier(trial_id, {**model, **fixed, **t.params}, [float(v) for v in t.values],
                          dict(zip(bounds, map(float, told))))


def _json(value):
    """A model config as stored in ``tlsweep_spec.json``."""
    return None if value is None else value.to_dict()


def _value(row: dict, key: str) -> float:
    v = row.get(key)
    return float(v) if _num(v) and math.isfinite(float(v)) else math.nan


def report(warm: WarmStart, storage: str) -> None:
    """Log the warm start's notes (a warning when trials were dropped) and keep them in ``warm_start.yaml``."""
    for note in warm.notes:
        (log.warning if "dropped" in note or "starts cold" in note else log.info)(note)
    if "://" not in storage:
        path = Path(storage)
        path.mkdir(parents=True, exist_ok=True)
        (path / NOTES_FILE).write_text(yaml.safe_dump(
            {"notes": warm.notes, "added": [len(h) for h in warm.history], "first": warm.first}, sort_keys=False))

