"""The sweep file: pydantic models validated once, at the edge.

``load_spec(path)`` reads YAML and returns a ``Spec``; every problem is reported at once as a ``SpecError``
naming the YAML path, the line and the allowed values. Inside tlsweep only the typed, frozen
``Spec.plan()`` (``tlsweep.config.plan.SweepPlan``) and the ``TrialConfig`` it makes travel. Allowed option values come
from the registries that build them (optimizers, LR schedulers, augment policies, Tune schedulers, backbones).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      create_model, field_validator, model_validator)

from . import plan as C
from .distributions import Distribution, candidate_values, parse_param
from ..models.backbones import get_backbone, is_backbone, list_backbones
from .registry import unknown_value
from ..results.layout import is_uri

WEIGHTS_HELP = "imagenet, none, a torchvision weights name (e.g. IMAGENET1K_V2) or a path to a .pt/.pth file"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, validate_default=True)


Param = Annotated[Any, BeforeValidator(parse_param)]


class SplitSpec(Strict):
    """Fractions used when the data root has no train/val/test folders (stratified, seeded)."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self):
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1, got {self.train + self.val + self.test:g}")
        return self


class SubsetSpec(Strict):
    """At most this many images per split (stratified, seeded); unset = all."""

    train: int | None = Field(None, ge=1)
    val: int | None = Field(None, ge=1)
    test: int | None = Field(None, ge=1)


class CacheSpec(Strict):
    """Node-local caches (see ``tlsweep.data.cache``): ``auto`` uses them where they are exact and worthwhile."""

    images: Literal["auto", "on", "off"] = "auto"
    features: Literal["auto", "on", "off"] = "auto"


class SizePhase(Strict):
    """Train at ``size`` for ``epochs`` epochs (omitted on the last phase: to the end)."""

    size: int = Field(ge=16, le=1024)
    epochs: int | None = Field(None, ge=1)


def _augment(value):
    from ..data.augment import POLICIES, check_policy

    if isinstance(value, str) and value in POLICIES:
        return value
    check_policy(value)  # list policies build here once at strength 1 (imports torchvision)
    return value


_D = C.DataConfig  # defaults live in tlsweep.config.plan


class DataSpec(Strict):
    root: Path
    source: str = _D.source
    split: SplitSpec = SplitSpec()
    val_fraction: float | None = Field(None, gt=0, lt=1)
    subset: SubsetSpec | None = None
    image_size: int = Field(_D.image_size, ge=16, le=1024)
    num_workers: int = Field(_D.num_workers, ge=0, le=64)
    augment: Annotated[Any, AfterValidator(_augment)] = _D.augment
    # weights: the pretrained weights' resize → centre crop; squash: S×S; both with the weights' mean/std and
    # interpolation; unset: weights for pretrained backbones, squash from scratch (tlsweep.data.preprocess)
    preprocess: Literal["weights", "squash"] | None = None
    image_size_schedule: tuple[SizePhase, ...] | None = None
    # unreadable/truncated images: stop before any trial, or leave out
    on_bad_image: Literal["error", "skip"] = _D.on_bad_image
    max_image_side: int = Field(_D.max_image_side, ge=16)  # larger images are downscaled when loaded
    cache: CacheSpec = CacheSpec()
    cache_dir: str | None = None  # default $TLSWEEP_CACHE or ~/.cache/tlsweep

    @model_validator(mode="after")
    def _sides(self):
        if self.max_image_side < self.image_size:
            raise ValueError(f"max_image_side ({self.max_image_side}) is smaller than image_size ({self.image_size})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _final_size(cls, value):
        """A last schedule phase without ``epochs`` is the final size: it sets ``image_size`` when unset."""
        phases = value.get("image_size_schedule") if isinstance(value, dict) else None
        if phases and isinstance(phases, list) and isinstance(phases[-1], dict) and phases[-1].get("epochs") is None:
            last = phases[-1].get("size")
            if "image_size" not in value:
                value = {**value, "image_size": last}
            elif value["image_size"] != last:
                raise ValueError(f"image_size_schedule ends at size {last} but image_size is {value['image_size']} "
                                 "(validation and test use image_size; make them equal or drop one)")
        return value

    @field_validator("image_size_schedule")
    @classmethod
    def _open_phase_last(cls, phases):
        if phases and any(ph.epochs is None for ph in phases[:-1]):
            raise ValueError("only the last image_size_schedule phase may omit epochs (it lasts to the end)")
        return phases


class HeadSpec(Strict):
    hidden: tuple[int, ...] = ()
    dropout: float | tuple[float, ...] = 0.0
    norm: Literal["none", "layernorm", "batchnorm"] = "none"

    @model_validator(mode="after")
    def _rates(self):
        from ..models.heads import dropout_problem

        single = isinstance(self.dropout, (int, float))
        message = dropout_problem([] if single else self.hidden, [self.dropout] if single else self.dropout)
        if message:
            raise ValueError(message)
        return self


class ModelSpec(Strict):
    """One backbone (``name``) or a two-backbone ensemble (``ensemble`` + ``fusion``)."""

    name: str | None = None
    ensemble: tuple[str, str] | None = None
    fusion: Literal["logits", "features", "mean"] = "logits"
    weights: str | None = None
    head: HeadSpec | None = None
    preprocess: Literal["weights", "squash"] | None = None  # per-model override of data.preprocess
    resources: ResourcesOverride | None = None
    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self):
        if (self.name is None) == (self.ensemble is None):
            raise ValueError("a model needs exactly one of 'name' (a backbone) or 'ensemble' (two backbones)")
        for backbone in ([self.name] if self.name is not None else list(self.ensemble)):
            if not is_backbone(backbone):
                if backbone.startswith("timm/"):
                    from ..models.timm_models import unknown_message

                    raise ValueError(unknown_message(backbone))
                raise ValueError(unknown_value("backbone", backbone, list_backbones()) +
                                 " or timm/<any timm model>")
        return self

    @property
    def label(self) -> str:
        if self.id:
            return self.id
        if self.name:
            return self.name
        return f"{'+'.join(self.ensemble)}-{self.fusion}"


class _SearchFields(Strict):
    """Each field is a constant or a distribution: loguniform, uniform, int, choice, grid."""

    @field_validator("*", mode="after")
    @classmethod
    def _domain(cls, param, info):
        check = C.SEARCH_CHECKS[info.field_name]
        bounds = param.bounds() if isinstance(param, Distribution) else None
        for v in (list(bounds) if bounds else candidate_values(param)):
            message = check(v)
            if message:
                raise ValueError(f"{message} (got {v!r})")
        return param

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}


# One field per ``tlsweep.config.plan.Hyperparameters`` field, with its default and domain check from there.
SearchSpec = create_model("SearchSpec", __base__=_SearchFields, __module__=__name__, __doc__=_SearchFields.__doc__,
                          **{name: (Param, default) for name, default in C.SEARCH_DEFAULTS.items()})


class SchedulerSpec(Strict):
    """Trial scheduler: ``asha`` stops weak trials early; ``fifo`` runs every trial to ``epochs``.

    ``budget: seconds`` makes ASHA count training seconds (rungs at ``grace_seconds`` × ``reduction_factor``^k,
    stop at ``max_seconds``) instead of epochs (``grace_period``, stop at ``epochs``); trials still end at
    ``epochs``, so set ``epochs`` high enough for the fastest model to use ``max_seconds``."""

    type: str = "asha"  # a name in tlsweep.sweep.schedulers.SCHEDULERS
    budget: Literal["epochs", "seconds"] = "epochs"
    grace_period: int = Field(1, ge=1)
    grace_seconds: float = Field(10.0, gt=0)
    max_seconds: float | None = Field(None, gt=0)
    reduction_factor: float = Field(3, gt=1)
    metric: Literal["val_acc", "val_loss", "val_macro_f1", "train_acc", "train_loss"] = "val_acc"
    mode: Literal["max", "min"] | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value):
        from ..sweep.schedulers import SCHEDULERS

        message = SCHEDULERS.check(value)
        if message:
            raise ValueError(message)
        return value

    @model_validator(mode="after")
    def _seconds_budget(self):
        if self.budget == "seconds":
            if self.max_seconds is None:
                raise ValueError("budget: seconds needs max_seconds (the most training seconds one trial may use)")
            if self.grace_seconds > self.max_seconds:
                raise ValueError(f"grace_seconds ({self.grace_seconds:g}) exceeds max_seconds ({self.max_seconds:g})")
        return self

    @property
    def resolved_mode(self) -> str:
        return self.mode or C.SchedulerConfig.default_mode(self.metric)


class SearcherSpec(Strict):
    """``optuna``/``tpe`` (TPE, multi-objective too), ``nsga2`` (NSGA-II), ``random`` or ``grid``, all through
    Optuna samplers. ``per_model`` gives each model its
    own study and ``num_samples`` trials; otherwise the model is one more categorical dimension."""

    type: Literal["optuna", "tpe", "nsga2", "random", "grid"] = "optuna"
    seed: int | None = None
    per_model: bool = True
    population_size: int | None = Field(None, ge=2)  # nsga2's generation size (default: Optuna's 50)


def _gpu_fraction(v):
    if v != "auto" and v is not None and v > 1:
        raise ValueError("more than one GPU per trial: tlsweep trains each trial on one GPU (no data-parallel "
                         "trials); use gpu: 1 and let more trials run at once, or a fraction (e.g. 0.25) for small "
                         "backbones")
    return v


GPUs = Annotated[Literal["auto"] | float, Field(union_mode="left_to_right"), AfterValidator(_gpu_fraction)]


def _non_negative(v):
    if v != "auto" and v is not None and v < 0:
        raise ValueError("Input should be greater than or equal to 0")
    return v


class ResourcesSpec(Strict):
    """CPUs and GPUs per trial. ``gpu: auto`` (default): a GPU share on a cluster with GPUs (the backbone's
    default share, raised until its estimated memory fits), none without; or a number: 0, a fraction that
    lets small backbones share one GPU (e.g. 0.25), or 1. ``gpu_memory_gb``: the cluster GPUs' memory for the
    memory check when this machine has none (see ``tlsweep.trial.gpus``)."""

    cpu: float = Field(1, gt=0)
    gpu: Annotated[GPUs, AfterValidator(_non_negative)] = "auto"
    gpu_memory_gb: float | None = Field(None, gt=0)


class ResourcesOverride(Strict):
    """A model's own ``resources``; unset fields come from the sweep's ``resources``."""

    cpu: float | None = Field(None, gt=0)
    gpu: Annotated[GPUs | None, AfterValidator(_non_negative)] = None


class PerformanceSpec(Strict):
    """Fast paths (see ``tlsweep.trial.fastpath``); ``pin_memory: auto`` pins on CUDA only."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    pin_memory: Literal["auto"] | bool = "auto"
    compile: bool = False
    input: Literal["auto", "cpu", "device"] = "auto"  # where cached uint8 images are augmented (tlsweep.data.cache.device)


class CheckpointSpec(Strict):
    num_to_keep: int = Field(2, ge=1)
    frequency: int = Field(1, ge=1)  # every N epochs, plus the last and ASHA rungs (sweep/checkpointing.py)


class TensorBoardLogger(Strict):
    """Tune's per-trial TensorBoard event files (always written; listed for completeness)."""


class MLflowLogger(Strict):
    """One MLflow run per trial (Ray's ``MLflowLoggerCallback``): params = config, metrics per epoch."""

    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else MLflow's own default
    experiment_name: str | None = None  # default: the sweep's name
    tags: dict[str, str] = {}
    save_artifact: bool = False  # upload each trial folder (checkpoints included) as run artifacts


class WandbLogger(Strict):
    """One W&B run per trial (Ray's ``WandbLoggerCallback``), grouped by sweep."""

    project: str | None = None  # default: $WANDB_PROJECT, else the sweep's name
    entity: str | None = None
    group: str | None = None  # default: the sweep's name
    mode: Literal["online", "offline", "disabled"] | None = None  # default: $WANDB_MODE, else online
    tags: list[str] = []
    dir: str | None = None  # where W&B writes its run files; default: <storage>/wandb for a local storage


def _loggers(value):
    """``[tensorboard, mlflow, {wandb: {project: p}}]`` or ``{mlflow: {...}}`` → ``{name: options}``."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        out: dict = {}
        for item in value:
            if isinstance(item, str):
                out[item] = {}
            elif isinstance(item, dict) and len(item) == 1:
                out.update({k: (v if v is not None else {}) for k, v in item.items()})
            else:
                raise ValueError("each logger is a name or {name: {options}}; allowed: tensorboard, mlflow, wandb")
        return out
    if isinstance(value, dict):
        return {k: (v if v is not None else {}) for k, v in value.items()}
    return value


class LoggersSpec(Strict):
    """Where trial metrics go besides Tune's CSV/JSON (``tlsweep.sweep.loggers`` builds the callbacks)."""

    tensorboard: TensorBoardLogger | None = TensorBoardLogger()
    mlflow: MLflowLogger | None = None
    wandb: WandbLogger | None = None

    def enabled(self) -> dict[str, BaseModel]:
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


def _metric_name(value: str) -> str:
    from ..trial.objectives import METRICS

    if value not in METRICS:
        raise ValueError(unknown_value("metric", value, list(METRICS)))
    return value


MetricName = Annotated[str, AfterValidator(_metric_name)]


class ObjectiveSpec(Strict):
    """One objective: a metric (see ``tlsweep.trial.objectives.METRICS``) and its direction (default: the metric's)."""

    metric: MetricName
    mode: Literal["max", "min"]

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, value):
        from ..trial.objectives import METRICS

        if isinstance(value, str):
            value = {"metric": value}
        if isinstance(value, dict) and value.get("mode") is None and value.get("metric") in METRICS:
            value = {**value, "mode": METRICS[value["metric"]].mode}
        return value


class BoundSpec(Strict):
    """A constraint on one metric: ``max`` and/or ``min`` (inclusive)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs max and/or min, e.g. {max: 10}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) exceeds max ({self.max:g})")
        return self


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    data: DataSpec
    models: list[ModelSpec] = Field(min_length=1)
    heads: dict[str, HeadSpec] = {}
    weights: str = "imagenet"
    search: SearchSpec = SearchSpec()
    epochs: int = Field(10, ge=1)
    scheduler: SchedulerSpec = SchedulerSpec()
    searcher: SearcherSpec = SearcherSpec()
    num_samples: int | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0)
    resources: ResourcesSpec = ResourcesSpec()
    checkpoints: CheckpointSpec = CheckpointSpec()
    performance: PerformanceSpec = PerformanceSpec()
    storage: str | None = None
    storage_shared: bool = False
    loggers: Annotated[LoggersSpec, BeforeValidator(_loggers)] = LoggersSpec()
    seed: int = 0
    objectives: tuple[ObjectiveSpec, ...] | None = Field(None, min_length=1)
    constraints: dict[MetricName, BoundSpec] | None = None
    warm_start: tuple[str, ...] | None = Field(None, min_length=1)  # earlier sweeps' storage folders
    warm_start_top_k: int = Field(0, ge=0)  # run each group's k best earlier configs first
    warm_start_history: bool = True  # add the earlier trials to each group's study
    _source: str | None = PrivateAttr(None)  # the sweep file, for line numbers in later checks (preflight)

    @model_validator(mode="before")
    @classmethod
    def _scheduler_from_objectives(cls, value):
        """Without an explicit ``scheduler.metric``, ASHA stops on the first per-epoch objective."""
        from ..trial.objectives import METRICS

        if not isinstance(value, dict) or not isinstance(value.get("objectives"), list):
            return value
        sched = value.get("scheduler") or {}
        if not isinstance(sched, dict) or "metric" in sched:
            return value
        for o in value["objectives"]:
            o = {"metric": o} if isinstance(o, str) else o
            metric = METRICS.get(o.get("metric")) if isinstance(o, dict) else None
            if metric is not None and metric.per_epoch:
                return {**value, "scheduler": {**sched, "metric": metric.result_key,
                                               "mode": sched.get("mode") or o.get("mode") or metric.mode}}
        return value

    @model_validator(mode="after")
    def _cross_checks(self):
        labels = [m.label for m in self.models]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"models are listed twice: {', '.join(dupes)} (give one of them an 'id')")
        if self.searcher.type == "grid":
            bad = [k for k, v in self.search.params().items()
                   if isinstance(v, Distribution) and v.values() is None]
            if bad:
                raise ValueError(f"searcher grid needs finite values (choice, grid or int); continuous: {', '.join(bad)}")
        _check_heads_and_data(self)
        if self.scheduler.budget == "epochs" and self.scheduler.grace_period > self.epochs:
            raise ValueError(f"scheduler.grace_period ({self.scheduler.grace_period}) exceeds epochs ({self.epochs})")
        names = [o.metric for o in self.objectives or ()]
        if len(set(names)) < len(names):
            raise ValueError(f"objectives list a metric twice: {', '.join(names)}")
        if self.warm_start is None and (self.warm_start_top_k or "warm_start_history" in self.model_fields_set):
            raise ValueError("warm_start_top_k / warm_start_history need warm_start (earlier sweeps' folders)")
        return self

    @property
    def storage_dir(self) -> str:
        """Where this sweep's results live (a local path or a URI such as s3://bucket/sweeps/name)."""
        return self.storage or str(Path("results") / self.name)

    def model_labels(self) -> list[str]:
        return [m.label for m in self.models]

    def model_resources(self) -> dict[str, C.Resources]:
        """Label → per-trial resources: the sweep's ``resources`` with each model's overrides."""
        base = self.resources.model_dump(exclude={"gpu_memory_gb"})
        return {m.label: C.Resources(**{**base, **(m.resources.model_dump(exclude_none=True) if m.resources else {})})
                for m in self.models}

    def plan(self) -> C.SweepPlan:
        """The typed, frozen sweep plan (every default resolved) that the rest of tlsweep reads."""
        models = {}
        for m in self.models:
            models[m.label] = C.ModelConfig(
                name=m.name, ensemble=m.ensemble, fusion=m.fusion if m.ensemble else None,
                weights=m.weights or self.weights, head=_head(m.head), preprocess=m.preprocess)
        data = C.DataConfig.from_dict(self.data.model_dump(mode="json"))
        sched = self.scheduler.model_dump()
        sched["mode"] = self.scheduler.resolved_mode
        return C.SweepPlan(
            name=self.name, storage=self.storage_dir, data=data, models_table=models,
            model_resources=self.model_resources(),
            search={k: (v.to_yaml() if isinstance(v, Distribution) else v) for k, v in self.search.params().items()},
            heads={k: _head(h) for k, h in self.heads.items()}, epochs=self.epochs, seed=self.seed,
            scheduler=C.SchedulerConfig(**sched), searcher=C.SearcherConfig(**self.searcher.model_dump()),
            num_samples=self.num_samples or (1 if self.searcher.type == "grid" else 4),
            max_concurrent=self.max_concurrent, max_failures=self.max_failures,
            resources=C.Resources(**self.resources.model_dump()),
            checkpoints=C.CheckpointConfig(**self.checkpoints.model_dump()),
            performance=C.PerformanceConfig(**self.performance.model_dump()), storage_shared=self.storage_shared,
            loggers={k: v.model_dump() for k, v in self.loggers.enabled().items()},
            objectives=tuple(C.ObjectiveConfig(o.metric, o.mode) for o in self.objectives or ()),
            constraints={k: C.BoundConfig(b.min, b.max) for k, b in (self.constraints or {}).items()},
            warm_start=tuple(self.warm_start or ()), warm_start_top_k=self.warm_start_top_k,
            warm_start_history=self.warm_start_history)


def _head(head: HeadSpec | None) -> C.HeadConfig | None:
    return None if head is None else C.HeadConfig(**head.model_dump())


def _check_heads_and_data(spec: Spec) -> None:
    """``search.head`` names exist; list augment policies build at every ``augment_strength``; size schedules
    leave epochs for the final size."""
    names = ["linear", *spec.heads]
    for v in candidate_values(spec.search.head):
        if v is not None and v not in names:
            raise ValueError("search.head: " + unknown_value("head", v, names) + " (define heads under `heads:`)")
    strength = spec.search.augment_strength
    if not isinstance(spec.data.augment, str):
        from ..data.augment import check_policy

        bounds = strength.bounds() if isinstance(strength, Distribution) else None
        check_policy(spec.data.augment, list(bounds) if bounds else candidate_values(strength))
    _check_input_sizes(spec)
    timed = sum(ph.epochs or 0 for ph in spec.data.image_size_schedule or ())
    if timed and timed >= spec.epochs:
        raise ValueError(f"data.image_size_schedule spends {timed} epochs before image_size {spec.data.image_size}, "
                         f"but epochs is {spec.epochs}: the final size would never be trained")


def _check_input_sizes(spec: Spec) -> None:
    """Backbones with a fixed input size (ViT) only take images of that size."""
    sizes = sorted({spec.data.image_size, *(ph.size for ph in spec.data.image_size_schedule or ())})
    for m in spec.models:
        for name in ([m.name] if m.name is not None else list(m.ensemble)):
            entry = get_backbone(name)
            wrong = [s for s in sizes if s != entry.input_size]
            if entry.fixed_input_size and wrong:
                raise ValueError(
                    f"model {m.label}: backbone {name} takes only {entry.input_size}x{entry.input_size} images, but "
                    f"the sweep uses data.image_size {', '.join(map(str, wrong))}; set data.image_size: "
                    f"{entry.input_size} (and no other image_size_schedule size), or pick another backbone")


class SpecError(ValueError):
    """Every problem of a sweep file, each with its YAML path and line."""

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]):
        self.source = source
        self.problems = problems
        super().__init__(self.format())

    def format(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"]
        for path, line, msg in self.problems:
            where = f"line {line}: " if line else ""
            lines.append(f"  {where}{path or '(top level)'}: {msg}")
        return "\n".join(lines)


def _node_at(node: yaml.Node | None, loc: tuple) -> yaml.Node | None:
    """The deepest YAML node along a pydantic error location."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == key), None)
                return key_node or node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node


def _problems(err: ValidationError, root_node) -> list[tuple[str, int | None, str]]:
    problems = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"]
                    if not (isinstance(x, str) and (x.startswith("function-") or x in ("str", "[key]"))))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent_fields = _fields_at(loc[:-1])
            msg = unknown_value("field", loc[-1], parent_fields) if parent_fields else "unknown field"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        node = _node_at(root_node, loc)
        if "[key]" in e["loc"] and loc:  # a bad mapping key: point at the key, not its value
            parent = _node_at(root_node, loc[:-1])
            if isinstance(parent, yaml.MappingNode):
                node = next((k for k, _ in parent.value if k.value == loc[-1]), node)
        line = node.start_mark.line + 1 if node is not None else None
        problems.append((".".join(map(str, loc)), line, msg))
    return problems


def _model_in(ann) -> tuple[Any, bool]:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]``) and
    whether it sits under a mapping key."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    keyed = getattr(ann, "__origin__", None) is dict
    for arg in getattr(ann, "__args__", ()):
        model, inner = _model_in(arg)
        if model is not None:
            return model, keyed or inner
    return None, False


def _fields_at(loc: tuple) -> list[str]:
    model: Any = Spec
    skip = False
    for key in loc:
        if isinstance(key, int) or skip:
            skip = False
            continue
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return []
        model, skip = _model_in(field.annotation)
        if model is None:
            return []
    if model is Spec or (isinstance(model, type) and issubclass(model, BaseModel)):
        return sorted(model.model_fields)
    return []


def parse_spec(data: Any, source: str = "<spec>", root_node: yaml.Node | None = None,
               base_dir: Path | None = None) -> Spec:
    if not isinstance(data, dict):
        raise SpecError(source, [("", None, "a sweep file is a mapping with name, data, models, ...")])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(source, _problems(err, root_node)) from None
    return _absolute(spec, base_dir or Path.cwd())


def _absolute(spec: Spec, base: Path) -> Spec:
    root = spec.data.root if spec.data.root.is_absolute() else (base / spec.data.root)
    storage = spec.storage_dir
    if not is_uri(storage) and not os.path.isabs(storage):
        storage = str((base / storage).resolve())
    update = {}
    if spec.warm_start:
        update["warm_start"] = tuple(p if "://" in p or os.path.isabs(p) else str((base / p).resolve())
                                     for p in spec.warm_start)
    data = {"root": root.resolve()}
    if spec.data.cache_dir:  # trials run in their own folders: make it absolute here
        data["cache_dir"] = str((base / Path(spec.data.cache_dir).expanduser()).resolve())
    return spec.model_copy(update={"data": spec.data.model_copy(update=data), "storage": storage, **update})


# ---- hostile sweep files: too large, not text, nested too deeply, an alias bomb ("billion laughs") ----------------
MAX_SPEC_BYTES = 1 << 20  # sweep files are a few KB
MAX_SPEC_NODES = 100_000  # YAML nodes with every alias expanded


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes under ``node`` once each alias is replaced by a copy of its anchor (memoized: linear time)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive anchor counts once
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    memo[id(node)] = 1 + sum(_expanded_nodes(c, memo) for c in children)
    return memo[id(node)]


def read_yaml(path: Path) -> tuple[yaml.Node | None, Any]:
    """A sweep file's YAML node tree and data; a ``SpecError`` for anything that is not a sweep-sized YAML file."""
    def fail(msg: str, line: int | None = None):
        raise SpecError(str(path), [("", line, msg)]) from None

    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            fail(f"the sweep file is too large ({size / 2**20:.1f} MiB; at most {MAX_SPEC_BYTES // 2**20} MiB)")
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        fail(f"cannot read the sweep file: {err.strerror or err}")
    except UnicodeDecodeError as err:
        fail(f"not UTF-8 text (byte {err.start}: {err.reason})")
    try:
        root_node = yaml.compose(text)
        if root_node is not None and _expanded_nodes(root_node, {}) > MAX_SPEC_NODES:
            fail(f"the YAML expands to more than {MAX_SPEC_NODES:,} values through its aliases (*name)")
        return root_node, yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        fail(f"not valid YAML: {err}", mark.line + 1 if mark else None)
    except RecursionError:
        fail("the YAML is nested too deeply")


def load_spec(path: str | os.PathLike, overrides: dict | None = None) -> Spec:
    """Read and validate a sweep file. Relative paths in it are taken from the current directory."""
    path = Path(path)
    root_node, data = read_yaml(path)
    if isinstance(data, dict) and overrides:
        data = _merged(data, overrides)
    try:
        spec = parse_spec(data, str(path), root_node)
    except SpecError as err:
        if not overrides:
            raise
        given = {".".join(p) for p in _leaf_paths(overrides)}  # a problem in a --set value has no YAML line
        raise SpecError(err.source, [(p, None, msg + " (from --set)") if _under(p, given) else (p, line, msg)
                                     for p, line, msg in err.problems]) from None
    spec._source = str(path)
    return spec


def parse_sets(items: list[str]) -> dict:
    """``["search.lr=0.01", "models=[resnet18]"]`` → nested overrides for ``load_spec`` (values parsed as YAML)."""
    overrides: dict = {}
    problems = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or any(not part for part in key.strip().split(".")):
            problems.append((item, None, "--set takes KEY=VALUE with a dotted KEY, e.g. search.lr=0.01"))
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problems.append((key, None, f"--set value is not valid YAML: {err}"))
            continue
        node = overrides
        *parents, leaf = key.strip().split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = parsed
    if problems:
        raise SpecError("--set", problems)
    return overrides


def _merged(data: dict, overrides: dict) -> dict:
    out = dict(data)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _leaf_paths(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaf_paths(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key))


def _under(path: str, given: set[str]) -> bool:
    return any(path == g or path.startswith(g + ".") for g in given)
