"""Search-space distributions as they appear in a sweep file, e.g. ``lr: {loguniform: [1e-4, 1e-1]}``.

A search parameter is either a constant or a one-key mapping naming a distribution. Each distribution
knows how to become an Optuna distribution; ``grid`` values are enumerated by Optuna's GridSampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Distribution:
    kind: ClassVar[str]

    def values(self) -> list[Any] | None:
        """The finite set of values, or None for a continuous range."""
        return None

    def bounds(self) -> tuple[float, float] | None:
        return None

    def to_optuna(self):
        raise NotImplementedError

    def to_yaml(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class _Range(Distribution):
    low: float
    high: float

    def bounds(self):
        return (self.low, self.high)

    def to_yaml(self):
        return {self.kind: [self.low, self.high]}


@dataclass(frozen=True)
class Uniform(_Range):
    kind = "uniform"

    def to_optuna(self):
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high)


@dataclass(frozen=True)
class LogUniform(_Range):
    kind = "loguniform"

    def to_optuna(self):
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=True)


@dataclass(frozen=True)
class IntRange(_Range):
    kind = "int"

    def values(self):
        return list(range(int(self.low), int(self.high) + 1))

    def to_optuna(self):
        import optuna

        return optuna.distributions.IntDistribution(int(self.low), int(self.high))


@dataclass(frozen=True)
class Choice(Distribution):
    options: tuple
    kind = "choice"

    def values(self):
        return list(self.options)

    def to_optuna(self):
        import optuna

        return optuna.distributions.CategoricalDistribution(list(self.options))

    def to_yaml(self):
        return {self.kind: list(self.options)}


@dataclass(frozen=True)
class Grid(Choice):
    """Every value is tried (per model, crossed with the other grid parameters)."""

    kind = "grid"


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.kind: cls for cls in (Uniform, LogUniform, IntRange, Choice, Grid)
}


def parse_param(value: Any) -> Any:
    """A constant stays as it is; a one-key mapping becomes a Distribution (ValueError if malformed)."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(
            f"a distribution is a mapping with exactly one key out of {sorted(DISTRIBUTIONS)}, got keys {sorted(value)}"
        )
    (kind, arg), = value.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {kind!r}; allowed: {', '.join(sorted(DISTRIBUTIONS))}")
    cls = DISTRIBUTIONS[kind]
    if not isinstance(arg, (list, tuple)) or not arg:
        raise ValueError(f"{kind} takes a non-empty list, e.g. {kind}: {_example(kind)}")
    if issubclass(cls, Choice):
        if len(set(map(repr, arg))) != len(arg):
            raise ValueError(f"{kind} lists a value twice: {list(arg)}")
        return cls(tuple(arg))
    if len(arg) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in arg):
        raise ValueError(f"{kind} takes [low, high] numbers, e.g. {kind}: {_example(kind)}")
    low, high = float(arg[0]), float(arg[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{kind} bounds must be finite, got [{low}, {high}]")
    if low > high:
        raise ValueError(f"{kind} range is inverted: low {arg[0]} > high {arg[1]}")
    if cls is LogUniform and low <= 0:
        raise ValueError(f"loguniform needs low > 0, got {arg[0]}")
    if cls is IntRange and (low != int(low) or high != int(high)):
        raise ValueError(f"int takes whole-number bounds, got {list(arg)}")
    return cls(low, high)


def _example(kind: str) -> str:
    return {"loguniform": "[1e-4, 1e-1]", "uniform": "[0.0, 0.3]", "int": "[1, 4]"}.get(kind, "[a, b]")


def candidate_values(param: Any) -> list[Any]:
    """The values a parameter may take (a constant, or a finite distribution's values)."""
    if isinstance(param, Distribution):
        return param.values() or []
    return [param]
