"""The searchable hyperparameters, declared once: ``Hyperparameters`` holds one trial's resolved values, and
``SearchSpace`` (the sweep file's ``search``) is derived from it, each field a constant or a distribution.

Adding a hyperparameter is one field here (type, trial default, ``Domain``, docstring) plus the code that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import Field, create_model, field_validator

from .distributions import Distribution, candidate_values
from .sections import Frozen, Param

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Domain:
    """What a hyperparameter may be: ``check(value)`` → a message or None; ``search_default``: the sweep file's
    default where that is a distribution rather than the trial default."""

    check: Callable[[Any], str | None]
    search_default: Any = _NO_DEFAULT


def _number(low=None, high=None, low_open=False, integer=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "must be a number"
        if integer and v != int(v):
            return "must be a whole number"
        if low is not None and (v <= low if low_open else v < low):
            return f"must be {'>' if low_open else '>='} {low}"
        if high is not None and v > high:
            return f"must be <= {high}"
        return None

    return check


def _optional(check):
    return lambda v: None if v is None else check(v)


def _registered(registry_name: str):
    """A check against a ``tlsweep.trial.optim`` registry read at validation time (later entries are allowed too)."""
    def check(v):
        from ..trial import optim

        registry = getattr(optim, registry_name)
        return None if v in registry else f"allowed values: {', '.join(map(str, registry.names()))}"

    return check


def _freeze(v):
    if v in ("all", "none") or (not isinstance(v, bool) and isinstance(v, int) and v >= 2):
        return None
    return _number(0, 1)(v) and ("must be a fraction in [0, 1] (0 = fine-tune all, 1 or 'all' = linear probe) "
                                 "or a whole number >= 2 of stages to freeze")


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _head(v):
    return None if v is None or isinstance(v, str) else "must be a head name from `heads` or 'linear'"


def _precise_bn(v):
    return None if v == "auto" else (_number(0, integer=True)(v) and "must be auto or a whole number of images >= 0")


def _decay(v):
    return _number(0, 1, low_open=True)(v) and "must be a decay in (0, 1] (1 = one LR for all stages)"


class Hyperparameters(Frozen):
    """The searchable values of one trial, resolved. Each field is also a field of the sweep file's ``search``."""

    lr: Annotated[float, Domain(_number(0, low_open=True), {"loguniform": [1e-4, 1e-2]})] = 1e-3
    """Learning rate (of the head; stages get lr × lr_decay^k)."""
    batch_size: Annotated[int, Domain(_number(1, integer=True))] = 32
    """Images per training step."""
    freeze_depth: Annotated[float | int | str, Domain(_freeze)] = 0.0
    """Frozen part of the backbone: a fraction of its stages (0 = fine-tune all, 1 or 'all' = linear probe), or a
    whole number >= 2 of stages."""
    optimizer: Annotated[str, Domain(_registered("OPTIMIZERS"))] = "adam"
    """An optimizer of ``tlsweep.trial.optim.OPTIMIZERS``: adam, adamw, sgd, ..."""
    momentum: Annotated[float, Domain(_number(0, 1))] = 0.9
    """SGD momentum."""
    weight_decay: Annotated[float, Domain(_number(0))] = 0.0
    """L2 penalty (decoupled for adamw)."""
    label_smoothing: Annotated[float, Domain(_number(0, 0.99))] = 0.0
    """Cross-entropy label smoothing."""
    lr_scheduler: Annotated[str, Domain(_registered("LR_SCHEDULERS"))] = "plateau"
    """An LR scheduler of ``tlsweep.trial.optim.LR_SCHEDULERS``: plateau, step, cosine, onecycle, none."""
    plateau_factor: Annotated[float, Domain(_number(0, 1, low_open=True))] = 0.1
    """plateau: LR multiplier when val loss stalls."""
    plateau_patience: Annotated[int, Domain(_number(0, integer=True))] = 2
    """plateau: epochs without improvement before the LR drops."""
    step_size: Annotated[int, Domain(_number(1, integer=True))] = 5
    """step: epochs between LR drops."""
    step_gamma: Annotated[float, Domain(_number(0, 1, low_open=True))] = 0.1
    """step: LR multiplier at each drop."""
    cosine_eta_min: Annotated[float, Domain(_number(0))] = 0.0
    """cosine: the final LR."""
    onecycle_pct_start: Annotated[float, Domain(_number(0, 1, low_open=True))] = 0.3
    """onecycle: the warm-up part of training."""
    class_weighted_loss: Annotated[bool, Domain(_bool)] = False
    """Weight the loss by inverse class frequency."""
    head: Annotated[str | None, Domain(_head)] = None
    """A head from the sweep's ``heads``, or linear; unset: the model's own head."""
    head_dropout: Annotated[float | None, Domain(_optional(_number(0, 0.99)))] = None
    """One dropout rate replacing every rate of the head."""
    augment_strength: Annotated[float, Domain(_number(0, 5))] = 1.0
    """Scales the magnitudes of a list augment policy's ops."""
    lr_decay: Annotated[float, Domain(_decay)] = 1.0
    """A stage k stages before the head trains at lr × lr_decay^k (1 = one LR for all)."""
    head_lr_mult: Annotated[float, Domain(_number(0, low_open=True))] = 1.0
    """The head trains at lr × head_lr_mult."""
    unfreeze_every: Annotated[int | None, Domain(_optional(_number(1, integer=True)))] = None
    """Thaw one more frozen stage every this many epochs; unset: never."""
    precise_bn: Annotated[int | str, Domain(_precise_bn)] = "auto"
    """Training images that recompute BatchNorm statistics before each evaluation (``tlsweep.trial.loop``): auto =
    256 for backbones whose BatchNorm momentum is below 0.1 (registry ``bn_momentum``), 0 = never."""

    def hyperparameters(self) -> dict[str, Any]:
        """Name → value of every searchable field."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}


def _domain(name: str) -> Domain:
    return next(m for m in Hyperparameters.model_fields[name].metadata if isinstance(m, Domain))


HYPERPARAMETERS = tuple(Hyperparameters.model_fields)
SEARCH_CHECKS = {name: _domain(name).check for name in HYPERPARAMETERS}


def _search_default(name: str):
    default = _domain(name).search_default
    return Hyperparameters.model_fields[name].default if default is _NO_DEFAULT else default


class _SearchFields(Frozen):
    """Each field is a constant or a distribution: loguniform, uniform, int, choice, grid."""

    @field_validator("*", mode="after")
    @classmethod
    def _domain(cls, param, info):
        check = SEARCH_CHECKS[info.field_name]
        bounds = param.bounds() if isinstance(param, Distribution) else None
        for v in (list(bounds) if bounds else candidate_values(param)):
            message = check(v)
            if message:
                raise ValueError(f"{message} (got {v!r})")
        return param

    def params(self) -> dict[str, Any]:
        """Field → constant or ``Distribution``."""
        return {name: getattr(self, name) for name in type(self).model_fields}

    def values_of(self, name: str) -> list:
        """Every value a field can take; both bounds of a continuous range."""
        param = getattr(self, name)
        if isinstance(param, Distribution) and param.values() is None:
            return list(param.bounds())
        return list(candidate_values(param))


SearchSpace = create_model(
    "SearchSpace", __base__=_SearchFields, __module__=__name__, __doc__=_SearchFields.__doc__,
    **{name: (Param, Field(_search_default(name), description=Hyperparameters.model_fields[name].description))
       for name in HYPERPARAMETERS})
