"""The spec's search section as groups: every (model, grid point) pair gets its own study of the
remaining distributions and its own ``num_samples`` trials, like ``tune.grid_search`` × ``num_samples``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..distributions import Choice, Distribution, Grid, IntRange, parse_param


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


def build_groups(plain_spec: dict) -> list[Group]:
    search = {k: parse_param(v) for k, v in plain_spec["search"].items()}
    searcher = plain_spec["searcher"]["type"]
    labels = list(plain_spec["models_table"])
    constants = {k: v for k, v in search.items() if not isinstance(v, Distribution)}
    grid = {k: v.values() for k, v in search.items() if isinstance(v, Distribution) and _enumerated(v, searcher)}
    sampled = {k: v for k, v in search.items() if isinstance(v, Distribution) and k not in grid}
    if plain_spec["searcher"].get("per_model", True) or len(labels) == 1:
        model_axis = [{"model": label} for label in labels]
    elif searcher == "grid":
        model_axis = [{}]
        grid = {"model": labels, **grid}
    else:
        model_axis = [{}]
        sampled = {"model": Choice(tuple(labels)), **sampled}
    groups = []
    for model in model_axis:
        for point in itertools.product(*grid.values()):
            groups.append(Group({**model, **dict(zip(grid, point)), **constants}, dict(sampled)))
    return groups


def samples_per_group(plain_spec: dict) -> int:
    n = plain_spec.get("num_samples")
    if n:
        return int(n)
    return 1 if plain_spec["searcher"]["type"] == "grid" else 4


def total_trials(plain_spec: dict) -> int:
    return len(build_groups(plain_spec)) * samples_per_group(plain_spec)


def trial_config(plain_spec: dict, sampled: dict) -> dict:
    """Everything ``tlsweep.train.Trial`` needs, from the spec and one trial's sampled values."""
    from ..models.ensemble import FEATURE_HEAD
    from ..models.heads import resolve_head

    label = sampled["model"]
    model = plain_spec["models_table"][label]
    default = FEATURE_HEAD if model.get("fusion") == "features" else None
    return {
        **sampled,
        "model_label": label,
        "model": resolve_head(model, sampled.get("head"), sampled.get("head_dropout"), plain_spec.get("heads"),
                              default),
        "data": plain_spec["data"],
        "epochs": plain_spec["epochs"],
        "seed": plain_spec["seed"],
        "performance": plain_spec.get("performance") or {},
    }

