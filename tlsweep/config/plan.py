"""Typed, frozen configs built once from a validated ``Spec`` (``Spec.plan()``), with every default resolved here.

``SweepPlan``: what the sweep runner needs (storage, scheduler with its resolved mode, searcher, groups, per-model
resources, checkpoints, the models table, ...). ``TrialConfig``: everything ``tlsweep.trial.loop.Trial`` needs for one
trial (resolved hyperparameters, model, data, epochs, seed, performance). Both round-trip through plain JSON data
(``to_dict()`` / ``from_dict()``): the trainable's argument, checkpoints (``torch.load(weights_only=True)``) and
``tlsweep_spec.json``. Imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

LAYOUT_VERSION = 2  # of tlsweep_spec.json; 1 = the plain dicts of earlier versions (same keys, read as well)


PREPROCESS_MODES = ("weights", "squash")  # data.preprocess (tlsweep.data.preprocess)


def resolve_mode(data, model) -> str:
    """The model's ``preprocess``, else ``data.preprocess``, else ``weights`` for a pretrained model and
    ``squash`` for one from scratch (``data``/``model``: typed configs or their plain dicts)."""
    get = (lambda c, k: c.get(k)) if isinstance(model, dict) else (lambda c, k: getattr(c, k, None))
    mode = get(model, "preprocess") or (data.get("preprocess") if isinstance(data, dict) else
                                        getattr(data, "preprocess", None))
    if mode:
        return mode
    return "squash" if str(get(model, "weights") or "none").lower() == "none" else "weights"


class ConfigError(ValueError):
    """A plain config that cannot become a typed one (unknown keys, missing sections, older layout)."""


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # paths


def _known(cls, data: dict, what: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a mapping, got {data!r}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return dict(data)


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else value


class _Plain:
    def to_dict(self) -> dict:
        """Plain JSON data (lists for tuples, str for paths)."""
        return _plain(self)

    def replace(self, **changes):
        return replace(self, **changes)


@dataclass(frozen=True)
class HeadConfig(_Plain):
    hidden: tuple[int, ...] = ()
    dropout: float | tuple[float, ...] = 0.0
    norm: str = "none"

    @classmethod
    def from_dict(cls, d: dict | None) -> HeadConfig | None:
        if d is None or isinstance(d, HeadConfig):
            return d
        d = _known(cls, d, "head")
        return cls(**{**d, **{k: _tuple(d[k]) for k in ("hidden", "dropout") if k in d}})


FEATURE_HEAD = HeadConfig(hidden=(1024, 512), dropout=0.5, norm="layernorm")  # the feature-fusion ensemble's MLP


@dataclass(frozen=True)
class ModelConfig(_Plain):
    """One backbone (``name``) or a two-backbone ensemble (``ensemble`` + ``fusion``)."""

    name: str | None = None
    ensemble: tuple[str, str] | None = None
    fusion: str | None = None  # logits, features or mean; None for one backbone
    weights: str = "none"
    head: HeadConfig | None = None
    preprocess: str | None = None  # weights | squash: this model's override of data.preprocess

    @property
    def backbones(self) -> tuple[str, ...]:
        return (self.name,) if self.name is not None else tuple(self.ensemble)

    def to_dict(self) -> dict:
        return {k: v for k, v in _plain(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if isinstance(d, ModelConfig):
            return d
        d = _known(cls, d, "model")
        if d.get("ensemble") is not None:
            d["ensemble"] = tuple(d["ensemble"])
            d.setdefault("fusion", "logits")
        d["head"] = HeadConfig.from_dict(d.get("head"))
        if d.get("weights") is None:
            d.pop("weights", None)
        return cls(**d)

    def with_head(self, head: str | None, dropout: float | None, heads: dict[str, HeadConfig]) -> ModelConfig:
        """``search.head`` (a name in the sweep's ``heads``, or ``linear``) and ``search.head_dropout`` (one rate
        replacing every rate of the head) applied; unchanged when both are None."""
        if head is None and dropout is None:
            return self
        if head is not None:
            new = HeadConfig() if head == "linear" else heads[head]
        else:
            new = self.head or (FEATURE_HEAD if self.fusion == "features" else HeadConfig())
        if dropout is not None:
            new = replace(new, dropout=float(dropout))
        return replace(self, head=new)


@dataclass(frozen=True)
class SplitConfig(_Plain):
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15


@dataclass(frozen=True)
class SubsetConfig(_Plain):
    train: int | None = None
    val: int | None = None
    test: int | None = None


@dataclass(frozen=True)
class CacheConfig(_Plain):
    images: str = "auto"
    features: str = "auto"


@dataclass(frozen=True)
class SizePhase(_Plain):
    size: int
    epochs: int | None = None


@dataclass(frozen=True)
class DataConfig(_Plain):
    """The sweep's ``data`` section, paths absolute; ``skip_files``: unreadable images preflight left out."""

    root: str
    source: str = "imagefolder"
    split: SplitConfig = SplitConfig()
    val_fraction: float | None = None
    subset: SubsetConfig | None = None
    image_size: int = 224
    num_workers: int = 0
    augment: str | tuple = "flip"
    preprocess: str | None = None  # weights | squash; None: weights for pretrained models (tlsweep.data.preprocess)
    image_size_schedule: tuple[SizePhase, ...] = ()
    on_bad_image: str = "error"
    max_image_side: int = 1024
    cache: CacheConfig = CacheConfig()
    cache_dir: str | None = None
    skip_files: tuple[str, ...] = ()

    def train_size(self, epoch: int) -> int:
        """The training image size at a 0-based epoch: ``image_size_schedule`` phases in order (a phase without
        ``epochs`` lasts to the end), then ``image_size`` (also the validation/test size)."""
        end = 0
        for phase in self.image_size_schedule:
            if phase.epochs is None:
                return int(phase.size)
            end += int(phase.epochs)
            if epoch < end:
                return int(phase.size)
        return int(self.image_size)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        if isinstance(d, DataConfig):
            return d
        d = _known(cls, d, "data")
        if "root" not in d:
            raise ConfigError("data: missing root")
        d["root"] = str(d["root"])
        if d.get("split") is not None:
            d["split"] = SplitConfig(**_known(SplitConfig, d["split"], "data.split"))
        else:
            d.pop("split", None)
        if d.get("subset") is not None:
            d["subset"] = SubsetConfig(**_known(SubsetConfig, d["subset"], "data.subset"))
        if d.get("cache") is not None:
            d["cache"] = CacheConfig(**_known(CacheConfig, d["cache"], "data.cache"))
        else:
            d.pop("cache", None)
        d["image_size_schedule"] = tuple(SizePhase(**_known(SizePhase, p, "data.image_size_schedule"))
                                         for p in d.get("image_size_schedule") or ())
        if isinstance(d.get("augment"), list):
            d["augment"] = tuple(d["augment"])
        d["skip_files"] = tuple(d.get("skip_files") or ())
        return cls(**d)


@dataclass(frozen=True)
class PerformanceConfig(_Plain):
    precision: str = "fp32"
    channels_last: str | bool = "auto"  # auto: on CUDA when cuda_tuning is on
    pin_memory: str | bool = "auto"
    compile: bool = False
    input: str = "auto"  # where cached images are augmented: auto (the device on a GPU), device or cpu
    cuda_tuning: bool = True  # on CUDA: cudnn.benchmark, TF32 matmuls, channels_last (auto)

    @classmethod
    def from_dict(cls, d: dict | None) -> PerformanceConfig:
        if isinstance(d, PerformanceConfig):
            return d
        return cls(**_known(cls, d or {}, "performance"))


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


def hyperparameter(default, check, search_default=dataclasses.MISSING):
    """A searchable field: its trial default, the domain check of every value the sweep may give it, and the
    sweep file's default where that is a distribution (``spec.SearchSpec`` is built from these fields)."""
    return field(default=default, metadata={"check": check, "search_default": search_default})


@dataclass(frozen=True, kw_only=True)
class Hyperparameters(_Plain):
    """The searchable values of one trial, resolved. Adding a field here adds it to the sweep file's ``search``."""

    lr: float = hyperparameter(1e-3, _number(0, low_open=True), search_default={"loguniform": [1e-4, 1e-2]})
    batch_size: int = hyperparameter(32, _number(1, integer=True))
    freeze_depth: float | int | str = hyperparameter(0.0, _freeze)
    optimizer: str = hyperparameter("adam", _registered("OPTIMIZERS"))
    momentum: float = hyperparameter(0.9, _number(0, 1))
    weight_decay: float = hyperparameter(0.0, _number(0))
    label_smoothing: float = hyperparameter(0.0, _number(0, 0.99))
    lr_scheduler: str = hyperparameter("plateau", _registered("LR_SCHEDULERS"))
    plateau_factor: float = hyperparameter(0.1, _number(0, 1, low_open=True))
    plateau_patience: int = hyperparameter(2, _number(0, integer=True))
    step_size: int = hyperparameter(5, _number(1, integer=True))
    step_gamma: float = hyperparameter(0.1, _number(0, 1, low_open=True))
    cosine_eta_min: float = hyperparameter(0.0, _number(0))
    onecycle_pct_start: float = hyperparameter(0.3, _number(0, 1, low_open=True))
    class_weighted_loss: bool = hyperparameter(False, lambda v: None if isinstance(v, bool) else
                                               "must be true or false")
    # a name from the sweep's `heads` or `linear`; None = the model's own head
    head: str | None = hyperparameter(None, lambda v: None if v is None or isinstance(v, str) else
                                      "must be a head name from `heads` or 'linear'")
    head_dropout: float | None = hyperparameter(None, lambda v: None if v is None else _number(0, 0.99)(v))
    augment_strength: float = hyperparameter(1.0, _number(0, 5))  # scales data.augment list ops' magnitudes
    # fine-tuning recipes (tlsweep.trial.finetune): a stage k stages before the head trains at lr × lr_decay^k, the head
    # at lr × head_lr_mult; unfreeze_every: thaw one more frozen stage every this many epochs (None: never)
    lr_decay: float = hyperparameter(1.0, lambda v: _number(0, 1, low_open=True)(v) and
                                     "must be a decay in (0, 1] (1 = one LR for all stages)")
    head_lr_mult: float = hyperparameter(1.0, _number(0, low_open=True))
    unfreeze_every: int | None = hyperparameter(None, lambda v: None if v is None else _number(1, integer=True)(v))


SEARCH_CHECKS = {f.name: f.metadata["check"] for f in fields(Hyperparameters)}
SEARCH_DEFAULTS = {f.name: f.default if f.metadata["search_default"] is dataclasses.MISSING
                   else f.metadata["search_default"] for f in fields(Hyperparameters)}
HYPERPARAMETERS = tuple(f.name for f in fields(Hyperparameters))


@dataclass(frozen=True, kw_only=True)
class TrialConfig(Hyperparameters):
    """One trial: hyperparameters plus model (head resolved), data, epochs, seed, performance, device."""

    model: ModelConfig
    model_label: str = ""
    data: DataConfig
    epochs: int = 10
    seed: int = 0
    performance: PerformanceConfig = PerformanceConfig()
    device: str = "auto"
    preprocess: str = "squash"  # resolved data.preprocess / model preprocess (tlsweep.data.preprocess)

    def __post_init__(self):
        if not self.model_label:
            object.__setattr__(self, "model_label", self.model.name or "+".join(self.model.backbones))

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    @classmethod
    def from_dict(cls, d: dict | TrialConfig) -> TrialConfig:
        """From plain data (a checkpoint's ``config``, a test's dict); missing keys take the defaults above."""
        if isinstance(d, TrialConfig):
            return d
        d = _known(cls, d, "trial config")
        if "model" not in d or "data" not in d:
            raise ConfigError("trial config: needs at least `model` and `data`")
        d["model"] = ModelConfig.from_dict(d["model"])
        d["data"] = DataConfig.from_dict(d["data"])
        d["performance"] = PerformanceConfig.from_dict(d.get("performance"))
        if d.get("device") is None:
            d.pop("device", None)
        return cls(**d)


@dataclass(frozen=True)
class Resources(_Plain):
    cpu: float = 1.0
    gpu: float | str = 0.0  # a number, or "auto" until ``tlsweep.trial.gpus.resolve_resources`` meets the cluster
    gpu_memory_gb: float | None = None  # the cluster GPUs' memory for the memory check (sweep level only)

    def demand(self) -> dict[str, float]:
        """Ray resource demand of one trial."""
        if self.gpu == "auto":
            raise ValueError("resources.gpu is still `auto`: resolve it for the cluster first "
                             "(tlsweep.trial.gpus.resolve_resources)")
        return {"CPU": float(self.cpu), **({"GPU": float(self.gpu)} if self.gpu else {})}


@dataclass(frozen=True)
class SchedulerConfig(_Plain):
    type: str = "asha"
    budget: str = "epochs"
    grace_period: int = 1
    grace_seconds: float = 10.0
    max_seconds: float | None = None
    reduction_factor: float = 3
    metric: str = "val_acc"
    mode: str = "max"  # resolved: min for losses, max otherwise, unless set

    @staticmethod
    def default_mode(metric: str) -> str:
        return "min" if metric.endswith("loss") else "max"


@dataclass(frozen=True)
class SearcherConfig(_Plain):
    type: str = "optuna"
    seed: int | None = None  # None: the sweep's seed
    per_model: bool = True
    population_size: int | None = None  # nsga2's generation size (None: Optuna's default)


@dataclass(frozen=True)
class ObjectiveConfig(_Plain):
    """One objective: a metric name (``tlsweep.trial.objectives.METRICS``) and its direction."""

    metric: str
    mode: str


@dataclass(frozen=True)
class BoundConfig(_Plain):
    """A constraint on one metric (inclusive bounds; None: unbounded)."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class CheckpointConfig(_Plain):
    num_to_keep: int = 2
    frequency: int = 1


@dataclass(frozen=True)
class SweepPlan(_Plain):
    """A validated sweep, typed: what the runner, the trainable and the report read (``Spec.plan()``)."""

    name: str
    storage: str
    data: DataConfig
    models_table: dict[str, ModelConfig]  # label → model config (weights resolved)
    model_resources: dict[str, Resources]  # label → per-trial resources
    search: dict[str, Any]  # field → constant or distribution in YAML form ({"loguniform": [a, b]})
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    epochs: int = 10
    seed: int = 0
    scheduler: SchedulerConfig = SchedulerConfig()
    searcher: SearcherConfig = SearcherConfig()
    num_samples: int = 4  # trials per group (resolved: 1 for grid, else 4, unless set)
    max_concurrent: int | None = None
    max_failures: int = 1
    resources: Resources = Resources()
    checkpoints: CheckpointConfig = CheckpointConfig()
    performance: PerformanceConfig = PerformanceConfig()
    storage_shared: bool = False
    loggers: dict[str, dict] = field(default_factory=lambda: {"tensorboard": {}})  # name → options (sweep/loggers.py)
    objectives: tuple[ObjectiveConfig, ...] = ()  # multi-objective sweeps; empty: the scheduler's metric only
    constraints: dict[str, BoundConfig] = field(default_factory=dict)  # metric name → bounds
    warm_start: tuple[str, ...] = ()  # earlier sweeps' storage folders
    warm_start_top_k: int = 0  # run each group's k best earlier configs first
    warm_start_history: bool = True  # add the earlier trials to each group's study
    version: int = LAYOUT_VERSION

    @property
    def searcher_seed(self) -> int:
        return self.seed if self.searcher.seed is None else self.searcher.seed

    def search_params(self) -> dict[str, Any]:
        """Search fields as constants and ``tlsweep.config.distributions.Distribution`` objects."""
        from .distributions import parse_param

        return {k: parse_param(v) for k, v in self.search.items()}

    def resources_of(self, label: str | None) -> Resources:
        return self.model_resources.get(label, self.resources)

    def trial_config(self, sampled: dict) -> TrialConfig:
        """One trial's config from the values its searcher drew (``model`` label plus hyperparameters)."""
        label = sampled["model"]
        values = {k: v for k, v in sampled.items() if k != "model"}
        model = self.models_table[label].with_head(values.get("head"), values.get("head_dropout"), self.heads)
        return TrialConfig(**values, model=model, model_label=label, data=self.data, epochs=self.epochs,
                           seed=self.seed, performance=self.performance,
                           preprocess=resolve_mode(self.data, self.models_table[label]))

    @classmethod
    def from_dict(cls, d: dict) -> SweepPlan:
        """From ``to_dict()`` data, or an earlier version's plain spec (extra keys of that layout are ignored)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a sweep plan is a mapping, got {type(d).__name__}")
        missing = [k for k in ("name", "storage", "data", "models_table", "search") if k not in d]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (written by an older tlsweep)")
        old = {"models", "weights"}  # layout 1 (Spec.to_plain) also carried these; the models table replaces them
        d = {k: v for k, v in d.items() if k not in old}
        d = _known(cls, d, "sweep plan")
        sched = dict(d.get("scheduler") or {})
        sched["mode"] = sched.get("mode") or SchedulerConfig.default_mode(sched.get("metric", "val_acc"))
        searcher = SearcherConfig(**_known(SearcherConfig, d.get("searcher") or {}, "searcher"))
        out = {
            **d,
            "data": DataConfig.from_dict(d["data"]),
            "models_table": {k: ModelConfig.from_dict(v) for k, v in d["models_table"].items()},
            "model_resources": {k: Resources(**v) for k, v in (d.get("model_resources") or {}).items()},
            "heads": {k: HeadConfig.from_dict(v) for k, v in (d.get("heads") or {}).items()},
            "scheduler": SchedulerConfig(**_known(SchedulerConfig, sched, "scheduler")),
            "searcher": searcher,
            "resources": Resources(**(d.get("resources") or {})),
            "checkpoints": CheckpointConfig(**(d.get("checkpoints") or {})),
            "performance": PerformanceConfig.from_dict(d.get("performance")),
            "objectives": tuple(ObjectiveConfig(**o) for o in d.get("objectives") or ()),
            "constraints": {k: BoundConfig(**b) for k, b in (d.get("constraints") or {}).items()},
            "warm_start": tuple(d.get("warm_start") or ()),
            "num_samples": d.get("num_samples") or (1 if searcher.type == "grid" else 4),
            "version": LAYOUT_VERSION,
        }
        return cls(**out)
