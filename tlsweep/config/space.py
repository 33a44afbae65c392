"""The spec's search section as groups: every (model, grid point) pair gets its own study of the
remaining distributions and its own ``num_samples`` trials, like ``tune.grid_search`` × ``num_samples``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from .distributions import Choice, Distribution, Grid, IntRange
from .plan import MODEL_KEY, SweepPlan


@dataclass(frozen=True)
class Group:
    """Fixed values shared by a group's trials (model label, grid point, constants) and what is sampled."""

    fixed: dict[str, Any]
    sampled: dict[str, Distribution] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.fixed.items() if k != "_constants")


def _enumerated(dist: Distribution, searcher: str) -> bool:
    return isinstance(dist, Grid) or (searcher == "grid" and isinstance(dist, (Choice, IntRange)))


def build_groups(plan: SweepPlan) -> list[Group]:
    search = plan.search.params()
    searcher = plan.searcher.type
    labels = list(plan.models_table)
    constants = {k: v for k, v in search.items() if not isinstance(v, Distribution)}
    grid = {k: v.values() for k, v in search.items() if isinstance(v, Distribution) and _enumerated(v, searcher)}
    sampled = {k: v for k, v in search.items() if isinstance(v, Distribution) and k not in grid}
    if plan.searcher.per_model or len(labels) == 1:
        model_axis = [{MODEL_KEY: label} for label in labels]
    elif searcher == "grid":
        model_axis = [{}]
        grid = {MODEL_KEY: labels, **grid}
    else:
        model_axis = [{}]
        sampled = {MODEL_KEY: Choice(tuple(labels)), **sampled}
    groups = []
    for model in model_axis:
        for point in itertools.product(*grid.values()):
            groups.append(Group({**model, **dict(zip(grid, point)), **constants}, dict(sampled)))
    return groups


def total_trials(plan: SweepPlan) -> int:
    return len(build_groups(plan)) * plan.num_samples
