"""The sections of a sweep file, declared once: the same frozen pydantic models validate the YAML at the edge and
travel inside tlsweep (in ``SweepPlan`` and ``TrialConfig``), so every field and default is written here only.

Each field's docstring is its description in the generated sweep-file reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from ..errors import TLSweepError
from .distributions import Distribution, parse_param
from .registry import unknown_value


class ConfigError(TLSweepError, ValueError):
    """Plain data (a checkpoint's config, a results folder's plan) that cannot become a typed config."""


class Frozen(BaseModel):
    """Base of every config: unknown keys rejected, immutable, defaults validated, field docstrings described."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, validate_default=True,
                              use_attribute_docstrings=True)

    def to_dict(self) -> dict:
        """Plain JSON data: what Ray, checkpoints and ``tlsweep_spec.json`` carry."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict):
        """The typed config of ``to_dict()`` data.

        Raises:
            ConfigError: the data does not fit (unknown keys, wrong values), with pydantic's explanation.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = [f"unknown key {'.'.join(map(str, e['loc']))}" if e["type"] == "extra_forbidden" else
                        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
            raise ConfigError(f"{cls.__name__}: {'; '.join(problems)}") from None

    def replace(self, **changes):
        """A copy with ``changes`` (not validated again)."""
        return self.model_copy(update=changes)


Param = Annotated[Any, BeforeValidator(parse_param),
                  PlainSerializer(lambda v: v.to_yaml() if isinstance(v, Distribution) else v)]
"""A search field: a constant, or a distribution (YAML ``{loguniform: [a, b]}`` ↔ ``Distribution``)."""

Preprocess = Literal["weights", "squash"]


class SplitConfig(Frozen):
    """Fractions used when the data root has no train/val/test folders (stratified, seeded)."""

    train: float = Field(0.7, gt=0, lt=1)
    """Training fraction."""
    val: float = Field(0.15, gt=0, lt=1)
    """Validation fraction (picks the best epoch and trial)."""
    test: float = Field(0.15, ge=0, lt=1)
    """Test fraction (scored once, by the report)."""

    @model_validator(mode="after")
    def _sums_to_one(self):
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1, got {self.train + self.val + self.test:g}")
        return self


class SubsetConfig(Frozen):
    """At most this many images per split (stratified, seeded); unset = all."""

    train: int | None = Field(None, ge=1)
    """Training images at most."""
    val: int | None = Field(None, ge=1)
    """Validation images at most."""
    test: int | None = Field(None, ge=1)
    """Test images at most."""


class CacheConfig(Frozen):
    """Node-local caches (see ``tlsweep.data.cache``): ``auto`` uses them where they are exact and worthwhile."""

    images: Literal["auto", "on", "off"] = "auto"
    """Decoded-image cache (uint8 arrays shared by every trial on a node)."""
    features: Literal["auto", "on", "off"] = "auto"
    """Frozen-backbone feature cache (linear probes without augmentation)."""


class SizePhase(Frozen):
    """Train at ``size`` for ``epochs`` epochs (omitted on the last phase: to the end)."""

    size: int = Field(ge=16, le=1024)
    """Training image side in pixels."""
    epochs: int | None = Field(None, ge=1)
    """Epochs at this size; omitted on the last phase: to the end."""


def _augment(value):
    from ..data.augment import POLICIES, check_policy

    if isinstance(value, str) and value in POLICIES:
        return value
    check_policy(value)  # list policies build here once at strength 1 (imports torchvision)
    return tuple(value) if isinstance(value, list) else value


class DataConfig(Frozen):
    """Where the images come from, how they split and how they are fed."""

    root: Path
    """An ImageFolder (with or without train/val/test folders) or a torchvision dataset's root."""
    source: str = "imagefolder"
    """imagefolder, or a torchvision dataset: fashionmnist, mnist, cifar10."""
    split: SplitConfig = SplitConfig()
    """Split fractions for a root without train/val/test folders."""
    val_fraction: float | None = Field(None, gt=0, lt=1)
    """For a torchvision dataset: the part of its training set held out for validation."""
    subset: SubsetConfig | None = None
    """At most this many images per split."""
    image_size: int = Field(224, ge=16, le=1024)
    """Image side in pixels for validation and test (and training, unless image_size_schedule says otherwise)."""
    num_workers: int = Field(0, ge=0, le=64)
    """DataLoader worker processes per trial."""
    augment: Annotated[Any, AfterValidator(_augment)] = "flip"
    """An augmentation policy by name (none, flip, basic, rrc, ...) or a list of ops."""
    preprocess: Preprocess | None = None
    """weights: the pretrained weights' resize → centre crop; squash: S×S; both with the weights' mean/std and
    interpolation. Unset: weights for pretrained backbones, squash from scratch."""
    image_size_schedule: tuple[SizePhase, ...] = ()
    """Progressive resizing: phases of training sizes, in order."""
    on_bad_image: Literal["error", "skip"] = "error"
    """Unreadable or truncated images: stop before any trial, or leave them out."""
    max_image_side: int = Field(1024, ge=16)
    """Larger images are downscaled when loaded."""
    cache: CacheConfig = CacheConfig()
    """Node-local caches."""
    cache_dir: str | None = None
    """Where the caches live; default $TLSWEEP_CACHE, else $XDG_CACHE_HOME/tlsweep or ~/.cache/tlsweep."""
    skip_files: tuple[str, ...] = ()
    """Images to leave out (preflight fills it with the unreadable ones when on_bad_image is skip)."""

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
        if phases and isinstance(phases, (list, tuple)) and isinstance(phases[-1], dict) and \
                phases[-1].get("epochs") is None:
            last = phases[-1].get("size")
            if "image_size" not in value:
                value = {**value, "image_size": last}
            elif value["image_size"] != last:
                raise ValueError(f"image_size_schedule ends at size {last} but image_size is {value['image_size']} "
                                 "(validation and test use image_size; make them equal or drop one)")
        return value

    @field_validator("image_size_schedule", mode="before")
    @classmethod
    def _no_schedule(cls, phases):
        return () if phases is None else phases

    @field_validator("image_size_schedule")
    @classmethod
    def _open_phase_last(cls, phases):
        if phases and any(ph.epochs is None for ph in phases[:-1]):
            raise ValueError("only the last image_size_schedule phase may omit epochs (it lasts to the end)")
        return phases

    def train_size(self, epoch: int) -> int:
        """The training image size at a 0-based epoch: ``image_size_schedule`` phases in order (a phase without
        ``epochs`` lasts to the end), then ``image_size`` (also the validation/test size)."""
        end = 0
        for phase in self.image_size_schedule:
            if phase.epochs is None:
                return phase.size
            end += phase.epochs
            if epoch < end:
                return phase.size
        return self.image_size


class HeadConfig(Frozen):
    """A classification head: hidden layers (none = linear), dropout per layer, normalisation."""

    hidden: tuple[int, ...] = ()
    """Hidden layer widths; empty: a linear head."""
    dropout: float | tuple[float, ...] = 0.0
    """One rate for every layer, or one per layer (hidden layers + the output)."""
    norm: Literal["none", "layernorm", "batchnorm"] = "none"
    """Normalisation after each hidden layer."""

    @model_validator(mode="after")
    def _rates(self):
        from ..models.heads import dropout_problem

        single = isinstance(self.dropout, (int, float))
        message = dropout_problem([] if single else self.hidden, [self.dropout] if single else self.dropout)
        if message:
            raise ValueError(message)
        return self


FEATURE_HEAD = HeadConfig(hidden=(1024, 512), dropout=0.5, norm="layernorm")  # the feature-fusion ensemble's MLP


def _gpu_fraction(v):
    if v != "auto" and v is not None and v > 1:
        raise ValueError("more than one GPU per trial: tlsweep trains each trial on one GPU (no data-parallel "
                         "trials); use gpu: 1 and let more trials run at once, or a fraction (e.g. 0.25) for small "
                         "backbones")
    if v != "auto" and v is not None and v < 0:
        raise ValueError("Input should be greater than or equal to 0")
    return v


GPUs = Annotated[Literal["auto"] | float, Field(union_mode="left_to_right"), AfterValidator(_gpu_fraction)]


class ResourcesOverride(Frozen):
    """A model's own ``resources``; unset fields come from the sweep's ``resources``."""

    cpu: float | None = Field(None, gt=0)
    """CPUs per trial of this model."""
    gpu: Annotated[GPUs | None, AfterValidator(_gpu_fraction)] = None
    """GPU share per trial of this model."""


class Resources(Frozen):
    """CPUs and GPUs per trial. ``gpu: auto`` (default): a GPU share on a cluster with GPUs (the backbone's
    default share, raised until its estimated memory fits), none without; or a number: 0, a fraction that
    lets small backbones share one GPU (e.g. 0.25), or 1."""

    cpu: float = Field(1, gt=0)
    """CPUs per trial."""
    gpu: GPUs = "auto"
    """GPU share per trial: auto, 0, a fraction or 1."""
    gpu_memory_gb: float | None = Field(None, gt=0)
    """The cluster GPUs' memory for the memory check when this machine has none (see ``tlsweep.trial.gpus``)."""

    def demand(self) -> dict[str, float]:
        """Ray resource demand of one trial."""
        if self.gpu == "auto":
            raise ValueError("resources.gpu is still `auto`: resolve it for the cluster first "
                             "(tlsweep.trial.gpus.resolve_resources)")
        return {"CPU": float(self.cpu), **({"GPU": float(self.gpu)} if self.gpu else {})}


class ModelConfig(Frozen):
    """One backbone (``name``) or a two-backbone ensemble (``ensemble`` + ``fusion``); a bare string is a name."""

    name: str | None = None
    """A backbone (``tlsweep models`` lists them), or timm/<any timm model>."""
    ensemble: tuple[str, str] | None = None
    """Two backbones trained together."""
    fusion: Literal["logits", "features", "mean"] | None = None
    """How an ensemble combines its backbones (default logits); unset for one backbone."""
    weights: str | None = None
    """imagenet, none, a torchvision weights name (e.g. IMAGENET1K_V2) or a path to a .pt/.pth file; default: the
    sweep's ``weights``."""
    head: HeadConfig | None = None
    """This model's head; default: a linear head (an MLP for feature fusion)."""
    preprocess: Preprocess | None = None
    """This model's override of data.preprocess."""
    resources: ResourcesOverride | None = None
    """This model's override of the sweep's resources."""
    id: str | None = None
    """A label, to list one backbone twice with different settings."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value):
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict):
            fusion = value.get("fusion")
            return {**value, "fusion": (fusion or "logits") if value.get("ensemble") is not None else None}
        return value

    @model_validator(mode="after")
    def _check(self):
        from ..models.backbones import is_backbone, list_backbones

        if (self.name is None) == (self.ensemble is None):
            raise ValueError("a model needs exactly one of 'name' (a backbone) or 'ensemble' (two backbones)")
        for backbone in self.backbones:
            if not is_backbone(backbone):
                if backbone.startswith("timm/"):
                    from ..models.timm_models import unknown_message

                    raise ValueError(unknown_message(backbone))
                raise ValueError(unknown_value("backbone", backbone, list_backbones()) +
                                 " or timm/<any timm model>")
        return self

    @property
    def backbones(self) -> tuple[str, ...]:
        return (self.name,) if self.name is not None else tuple(self.ensemble)

    @property
    def label(self) -> str:
        """The model's name in tables and trial configs: ``id``, else the backbone, else ``a+b-fusion``."""
        return self.id or self.name or f"{'+'.join(self.ensemble)}-{self.fusion}"

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
            new = new.replace(dropout=float(dropout))
        return self.replace(head=new)


class PerformanceConfig(Frozen):
    """Fast paths (see ``tlsweep.trial.fastpath``)."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision on CUDA (fp32: none)."""
    channels_last: Literal["auto"] | bool = "auto"
    """NHWC memory format for the model and inputs; auto: on CUDA when cuda_tuning is on."""
    cuda_tuning: bool = True
    """On CUDA: cudnn.benchmark and TF32 matmuls (off: deterministic-friendly, full fp32)."""
    pin_memory: Literal["auto"] | bool = "auto"
    """Pinned host memory for batches; auto: on CUDA only."""
    compile: bool = False
    """torch.compile the model."""
    input: Literal["auto", "cpu", "device"] = "auto"
    """Where cached uint8 images are augmented: auto (the device on a GPU), device or cpu
    (``tlsweep.data.cache.device``)."""


class CheckpointsConfig(Frozen):
    """What each trial keeps."""

    num_to_keep: int = Field(2, ge=1)
    """Checkpoints kept per trial (the best by the scheduler's metric)."""
    frequency: int = Field(1, ge=1)
    """Save every N epochs, plus the last and each epoch where the scheduler may stop the trial."""


def _metric_default_mode(metric: str) -> str:
    return "min" if metric.endswith("loss") else "max"


class SchedulerConfig(Frozen):
    """Trial scheduler: ``asha`` stops weak trials early; ``fifo`` runs every trial to ``epochs``.

    ``budget: seconds`` makes ASHA count training seconds (rungs at ``grace_seconds`` × ``reduction_factor``^k,
    stop at ``max_seconds``) instead of epochs (``grace_period``, stop at ``epochs``); trials still end at
    ``epochs``, so set ``epochs`` high enough for the fastest model to use ``max_seconds``."""

    type: str = "asha"
    """A scheduler of ``tlsweep.sweep.schedulers.SCHEDULERS``: asha, fifo."""
    budget: Literal["epochs", "seconds"] = "epochs"
    """What ASHA's rungs count."""
    grace_period: int = Field(1, ge=1)
    """Epochs every trial runs before ASHA may stop it."""
    grace_seconds: float = Field(10.0, gt=0)
    """With budget: seconds, training seconds before the first rung."""
    max_seconds: float | None = Field(None, gt=0)
    """With budget: seconds, the most training seconds one trial may use."""
    reduction_factor: float = Field(3, gt=1)
    """ASHA keeps the top 1/reduction_factor at each rung."""
    metric: Literal["val_acc", "val_loss", "val_macro_f1", "train_acc", "train_loss"] = "val_acc"
    """The metric trials are compared on."""
    mode: Literal["max", "min"] = None
    """Default: min for losses, max otherwise."""
    noise_band: Literal["binomial"] | Annotated[float, Field(ge=0)] = "binomial"
    """Noise-aware ASHA (``tlsweep.sweep.noise_asha``): a trial must fall below a rung's cutoff by more than this
    band to stop. binomial: noise_z standard errors of val accuracy from the val set's size; a number: a width in
    metric units."""
    noise_z: float = Field(1.0, ge=0)
    """Standard errors in the binomial noise band: 1 stops a config truly tied with the cutoff about 16% of the
    time and one truly better by a standard error about 2%; 0 is Ray's cut (with re-judging), which cuts among ties:
    fewer epochs, and more often a config that trails early but ends best is stopped (docs/schedulers.md)."""
    rejudge: bool = True
    """Judge a trial again at lower rungs against results recorded there since (small sweeps prune too)."""

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, value):
        if isinstance(value, dict) and value.get("mode") is None:
            metric = value.get("metric") or cls.model_fields["metric"].default
            return {**value, "mode": _metric_default_mode(str(metric))}
        return value

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


class SearcherConfig(Frozen):
    """``optuna``/``tpe`` (TPE, multi-objective too), ``nsga2`` (NSGA-II), ``random`` or ``grid``, all through
    Optuna samplers. ``per_model`` gives each model its own study and ``num_samples`` trials; otherwise the model
    is one more categorical dimension."""

    type: Literal["optuna", "tpe", "nsga2", "random", "grid"] = "optuna"
    """The Optuna sampler."""
    seed: int | None = None
    """The sampler's seed; default: the sweep's seed."""
    per_model: bool = True
    """One study (and num_samples trials) per model."""
    population_size: int | None = Field(None, ge=2)
    """nsga2's generation size (default: Optuna's 50)."""
    storage: str = "file"
    """Where the Optuna studies live (``tlsweep.results.studies``): file (a journal in the results folder), memory,
    or a database URL (postgresql://, mysql://, sqlite:///) for a team or a cluster."""


class TensorBoardLogger(Frozen):
    """Tune's per-trial TensorBoard event files (always written; listed for completeness)."""


class MLflowLogger(Frozen):
    """One MLflow run per trial (Ray's ``MLflowLoggerCallback``): params = config, metrics per epoch."""

    tracking_uri: str | None = None
    """Default: $MLFLOW_TRACKING_URI, else MLflow's own default."""
    experiment_name: str | None = None
    """Default: the sweep's name."""
    tags: dict[str, str] = {}
    """Tags of every run."""
    save_artifact: bool = False
    """Upload each trial folder (checkpoints included) as run artifacts."""


class WandbLogger(Frozen):
    """One W&B run per trial (Ray's ``WandbLoggerCallback``), grouped by sweep."""

    project: str | None = None
    """Default: $WANDB_PROJECT, else the sweep's name."""
    entity: str | None = None
    """The W&B entity (team or user)."""
    group: str | None = None
    """Default: the sweep's name."""
    mode: Literal["online", "offline", "disabled"] | None = None
    """Default: $WANDB_MODE, else online."""
    tags: tuple[str, ...] = ()
    """Tags of every run."""
    dir: str | None = None
    """Where W&B writes its run files; default: <storage>/wandb for a local storage."""


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


class LoggersConfig(Frozen):
    """Where trial metrics go besides Tune's CSV/JSON (``tlsweep.sweep.loggers`` builds the callbacks): a list of
    names, or a mapping of name → options."""

    tensorboard: TensorBoardLogger | None = TensorBoardLogger()
    """TensorBoard event files (always on)."""
    mlflow: MLflowLogger | None = None
    """MLflow runs."""
    wandb: WandbLogger | None = None
    """W&B runs."""

    @model_serializer(mode="wrap")
    def _only_enabled(self, handler):
        """Plain data lists the enabled loggers only (a ``null`` value in YAML turns a logger on)."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def enabled(self) -> dict[str, BaseModel]:
        """Logger name → its options, for the loggers the sweep turns on."""
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


Loggers = Annotated[LoggersConfig, BeforeValidator(_loggers)]


def _metric_name(value: str) -> str:
    from ..trial.objectives import METRICS

    if value not in METRICS:
        raise ValueError(unknown_value("metric", value, list(METRICS)))
    return value


MetricName = Annotated[str, AfterValidator(_metric_name)]


class ObjectiveConfig(Frozen):
    """One objective: a metric (see ``tlsweep.trial.objectives.METRICS``) and its direction (default: the
    metric's). A bare string is a metric."""

    metric: MetricName
    """val_acc, val_loss, macro_f1, train_s, params or latency_ms."""
    mode: Literal["max", "min"]
    """Maximise or minimise."""

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, value):
        from ..trial.objectives import METRICS

        if isinstance(value, str):
            value = {"metric": value}
        if isinstance(value, dict) and value.get("mode") is None and value.get("metric") in METRICS:
            value = {**value, "mode": METRICS[value["metric"]].mode}
        return value


class BoundConfig(Frozen):
    """A constraint on one metric: ``max`` and/or ``min`` (inclusive)."""

    min: float | None = None
    """Lowest allowed value."""
    max: float | None = None
    """Highest allowed value."""

    @model_validator(mode="after")
    def _some_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs max and/or min, e.g. {max: 10}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) exceeds max ({self.max:g})")
        return self


HeadInit = Literal["default", "shared", "per_trial"]


class PosthocConfig(Frozen):
    """After the sweep (``tlsweep.posthoc``): model soups, post-hoc ensemble selection, temperature scaling."""

    enabled: bool = True
    """``tlsweep report`` builds them (``tlsweep soup`` always does)."""
    top_k: int = Field(8, ge=1)
    """Ensemble selection's candidates: the sweep's K best checkpoints, any model."""
    max_steps: int = Field(20, ge=1)
    """Ensemble selection's greedy steps (with replacement)."""
    head_init: HeadInit = "default"
    """shared: one seeded head initialisation per model (soups average better); per_trial: seeded by the trial's
    values; default: torch's."""
    report_budget_s: float = Field(60.0, gt=0)
    """``tlsweep report`` skips them (with a note) when its estimate exceeds this many seconds."""
    bn_images: int = Field(256, ge=1)
    """Training images that re-estimate BatchNorm statistics after averaging."""


def resolve_mode(data: DataConfig, model: ModelConfig) -> str:
    """The model's ``preprocess``, else ``data.preprocess``, else ``weights`` for a pretrained model and
    ``squash`` for one from scratch."""
    mode = model.preprocess or data.preprocess
    if mode:
        return mode
    return "squash" if str(model.weights or "none").lower() == "none" else "weights"
