"""The typed, frozen sweep (``SweepPlan``) and trial (``TrialConfig``) that the rest of tlsweep reads.

``SweepSettings`` declares the fields the sweep file and the plan share, once; ``tlsweep.config.spec.Spec`` (the
file) and ``SweepPlan`` (the resolved sweep: storage, weights and model labels, ``num_samples``) both derive from
it. Both round-trip through plain JSON (``to_dict()`` / ``from_dict()``) at the three boundaries: the Ray trial's
argument, checkpoints (``torch.load(weights_only=True)``) and ``tlsweep_spec.json``. Imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from .search import HYPERPARAMETERS, Hyperparameters, SearchSpace
from .sections import (
    BoundConfig,
    CheckpointsConfig,
    ConfigError,
    DataConfig,
    Frozen,
    HeadConfig,
    HeadInit,
    Loggers,
    LoggersConfig,
    MetricName,
    ModelConfig,
    ObjectiveConfig,
    PerformanceConfig,
    PosthocConfig,
    Resources,
    SchedulerConfig,
    SearcherConfig,
    resolve_mode,
)

LAYOUT_VERSION = 3  # of tlsweep_spec.json; 2: models_table without resources; 1: the plain spec (both read)
MODEL_KEY = "model"  # the model label's key in a trial's Ray config (and so in params.json)


class SweepSettings(Frozen):
    """Fields of the sweep file that the plan keeps as they are."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The sweep's name: letters, digits, '_', '.', '-'; the default storage is results/<name>."""
    data: DataConfig
    """The images."""
    heads: dict[str, HeadConfig] = {}
    """Named heads that search.head may choose from."""
    search: SearchSpace = SearchSpace()
    """The search space: each hyperparameter a constant or a distribution."""
    epochs: int = Field(10, ge=1)
    """Most epochs per trial."""
    scheduler: SchedulerConfig = SchedulerConfig()
    """Early stopping."""
    searcher: SearcherConfig = SearcherConfig()
    """Who proposes configs."""
    max_concurrent: int | None = Field(None, ge=1)
    """Most trials at once; default: as many as the resources allow."""
    max_failures: int = Field(1, ge=0)
    """Retries of a trial that crashed (from its last checkpoint)."""
    resources: Resources = Resources()
    """CPUs and GPUs per trial."""
    checkpoints: CheckpointsConfig = CheckpointsConfig()
    """What each trial keeps."""
    performance: PerformanceConfig = PerformanceConfig()
    """Fast paths."""
    storage_shared: bool = False
    """The storage is a file system every node mounts at the same path (skips the multi-node write check)."""
    loggers: Loggers = LoggersConfig()
    """Trackers besides TensorBoard: mlflow, wandb."""
    seed: int = 0
    """Seeds splits, samplers and trials."""
    objectives: tuple[ObjectiveConfig, ...] = ()
    """Multi-objective sweeps: metrics with directions; ASHA stops on the first per-epoch one."""
    constraints: dict[MetricName, BoundConfig] = {}
    """Metric → bounds; trials outside them are never picked as best."""
    warm_start: tuple[str, ...] = ()
    """Earlier sweeps' storage folders whose compatible trials seed each study."""
    warm_start_top_k: int = Field(0, ge=0)
    """Run each group's k best earlier configs first."""
    warm_start_history: bool = True
    """Add the earlier trials to each group's study."""
    posthoc: PosthocConfig = PosthocConfig()
    """Soups, post-hoc ensemble selection and calibration after the sweep."""

    @property
    def searcher_seed(self) -> int:
        return self.seed if self.searcher.seed is None else self.searcher.seed


class TrialConfig(Hyperparameters):
    """One trial: hyperparameters plus model (head resolved), data, epochs, seed, performance, device."""

    model: ModelConfig
    model_label: str = ""
    data: DataConfig
    epochs: int
    seed: int
    performance: PerformanceConfig = PerformanceConfig()
    device: str = "auto"
    preprocess: str = "squash"  # resolved data.preprocess / model preprocess (tlsweep.data.preprocess)
    head_init: HeadInit = PosthocConfig.model_fields["head_init"].default  # posthoc.head_init (models.heads)

    @model_validator(mode="before")
    @classmethod
    def _label(cls, value):
        if isinstance(value, dict) and not value.get("model_label") and value.get("model") is not None:
            model = value["model"]
            model = model if isinstance(model, ModelConfig) else ModelConfig.model_validate(model)
            value = {**value, "model_label": model.name or "+".join(model.backbones)}
        return value

    @classmethod
    def from_dict(cls, data: dict) -> TrialConfig:
        """From a checkpoint's ``config`` (``to_dict()`` data; epochs and seed default as in a sweep file).

        Raises:
            ConfigError: unknown keys, or no ``model``/``data``.
        """
        if not isinstance(data, Mapping) or "model" not in data or "data" not in data:
            raise ConfigError("trial config: needs at least `model` and `data`")
        defaults = {k: SweepSettings.model_fields[k].default for k in ("epochs", "seed")}
        data = {**defaults, **{k: v for k, v in data.items() if v is not None or k in HYPERPARAMETERS}}
        return super().from_dict(data)


class SweepPlan(SweepSettings):
    """A validated sweep, resolved and typed: what the runner, the trainable and the report read (``Spec.plan()``)."""

    storage: str
    """Where results live: a local path or a URI."""
    models_table: dict[str, ModelConfig]
    """Label → model (weights resolved)."""
    model_resources: dict[str, Resources] = {}
    """Label → per-trial resources (the sweep's, with each model's overrides; GPUs resolved for the cluster)."""
    num_samples: int = Field(ge=1)
    """Trials per group."""
    version: int = LAYOUT_VERSION

    def resources_of(self, label: str | None) -> Resources:
        return self.model_resources.get(label, self.resources)

    def trial_config(self, sampled: Mapping[str, Any]) -> TrialConfig:
        """One trial's config from the values its searcher drew (``MODEL_KEY`` label plus hyperparameters)."""
        label = sampled[MODEL_KEY]
        values = {k: v for k, v in sampled.items() if k != MODEL_KEY}
        model = self.models_table[label].with_head(values.get("head"), values.get("head_dropout"), self.heads)
        return TrialConfig(**values, model=model, model_label=label, data=self.data, epochs=self.epochs,
                           seed=self.seed, performance=self.performance,
                           preprocess=resolve_mode(self.data, self.models_table[label]),
                           head_init=self.posthoc.head_init)

    @classmethod
    def from_dict(cls, data: dict) -> SweepPlan:
        """From ``to_dict()`` data, or an earlier layout's (``version`` 1 or 2).

        Raises:
            ConfigError: not a plan, or one written by a tlsweep whose layout this one cannot read.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a sweep plan is a mapping, got {type(data).__name__}")
        missing = [k for k in ("name", "storage", "data", "models_table", "search") if k not in data]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (written by an older tlsweep)")
        return super().from_dict(_current_layout(data))


def _current_layout(data: Mapping) -> dict:
    """Earlier layouts' keys mapped onto this one (layout 1 also had ``models``/``weights``; ``None`` stood for
    an unset list or mapping)."""
    data = {k: v for k, v in data.items() if k not in ("models", "weights")}
    for key in ("objectives", "constraints", "warm_start", "heads", "model_resources"):
        if data.get(key) is None:
            data.pop(key, None)
    if data.get("num_samples") is None:
        data["num_samples"] = default_num_samples((data.get("searcher") or {}).get("type"))
    data["version"] = LAYOUT_VERSION
    return data


def default_num_samples(searcher_type: str | None) -> int:
    """Trials per group when the sweep file does not say: one pass over a grid, else 4."""
    return 1 if searcher_type == "grid" else 4


def model_label(config: Mapping[str, Any] | None) -> str | None:
    """The model label in a trial's Ray config (``params.json``), or None."""
    return (config or {}).get(MODEL_KEY)
