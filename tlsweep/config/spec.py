"""The sweep file: ``load_spec(path)`` reads YAML and returns a validated ``Spec``.

Every problem is reported at once as a ``SpecError`` naming the YAML path, the line and the allowed values. The
sections are the models of ``tlsweep.config.sections`` and ``SweepSettings`` (declared once, shared with the plan);
``Spec.plan()`` resolves the file into the ``SweepPlan`` the rest of tlsweep reads. Allowed option values come from
the registries that build them (optimizers, LR schedulers, augment policies, Tune schedulers, backbones).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from ..errors import TLSweepError
from ..results.layout import is_uri
from .distributions import Distribution, candidate_values
from .plan import SweepPlan, SweepSettings, default_num_samples
from .registry import unknown_value
from .sections import ModelConfig


class Spec(SweepSettings):
    """A sweep file: the shared ``SweepSettings`` plus what ``plan()`` resolves."""

    models: list[ModelConfig] = Field(min_length=1)
    """Backbones and ensembles to compare; each a name or a mapping."""
    weights: str = "imagenet"
    """Default pretrained weights of every model: imagenet, none, a torchvision weights name (e.g. IMAGENET1K_V2)
    or a path to a .pt/.pth file."""
    num_samples: int | None = Field(None, ge=1)
    """Trials per model (per group); default: 1 for a grid searcher, else 4."""
    storage: str | None = None
    """Where results go: a folder or a URI (s3://...); default: results/<name>."""
    _source: str | None = PrivateAttr(None)
    _node: Any = PrivateAttr(None)  # the file's YAML tree, for line numbers in later checks (preflight)

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
        names = [o.metric for o in self.objectives]
        if len(set(names)) < len(names):
            raise ValueError(f"objectives list a metric twice: {', '.join(names)}")
        _check_study_storage(self.searcher.storage)
        for key in ("objectives", "warm_start"):
            if key in self.model_fields_set and not getattr(self, key):
                raise ValueError(f"{key}: an empty list (leave it out instead)")
        if not self.warm_start and (self.warm_start_top_k or "warm_start_history" in self.model_fields_set):
            raise ValueError("warm_start_top_k / warm_start_history need warm_start (earlier sweeps' folders)")
        return self

    @property
    def storage_dir(self) -> str:
        """Where this sweep's results live (a local path or a URI such as s3://bucket/sweeps/name)."""
        return self.storage or str(Path("results") / self.name)

    @property
    def source(self) -> str | None:
        """The sweep file this spec was read from (None when built in Python)."""
        return self._source

    def line_of(self, path: str) -> int | None:
        """The line of a dotted YAML path (``search.batch_size``, ``models.1.name``) in the sweep file, or None."""
        node = _node_at(self._node, tuple(int(p) if p.isdigit() else p for p in path.split(".")))
        return node.start_mark.line + 1 if node is not None else None

    def model_labels(self) -> list[str]:
        return [m.label for m in self.models]

    def plan(self) -> SweepPlan:
        """The typed, frozen sweep plan (storage, weights, per-model resources and ``num_samples`` resolved) that
        the rest of tlsweep reads."""
        shared = {name: getattr(self, name) for name in SweepSettings.model_fields}
        base = self.resources.model_dump(exclude={"gpu_memory_gb"})
        resources = {m.label: self.resources.replace(**{**base, **(m.resources.model_dump(exclude_none=True)
                                                                  if m.resources else {})})
                     for m in self.models}
        return SweepPlan(**shared, storage=self.storage_dir,
                         models_table={m.label: m.replace(weights=m.weights or self.weights, resources=None)
                                       for m in self.models},
                         model_resources=resources,
                         num_samples=self.num_samples or default_num_samples(self.searcher.type))


def _check_study_storage(url: str) -> None:
    from ..results.studies import check_url

    try:
        check_url(url)
    except ValueError as err:
        raise ValueError(f"searcher.storage: {err}") from None


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
    timed = sum(ph.epochs or 0 for ph in spec.data.image_size_schedule)
    if timed and timed >= spec.epochs:
        raise ValueError(f"data.image_size_schedule spends {timed} epochs before image_size {spec.data.image_size}, "
                         f"but epochs is {spec.epochs}: the final size would never be trained")


def _check_input_sizes(spec: Spec) -> None:
    """Backbones with a fixed input size (ViT) only take images of that size."""
    from ..models.backbones import get_backbone

    sizes = sorted({spec.data.image_size, *(ph.size for ph in spec.data.image_size_schedule)})
    for m in spec.models:
        for name in ([m.name] if m.name is not None else list(m.ensemble)):
            entry = get_backbone(name)
            wrong = [s for s in sizes if s != entry.input_size]
            if entry.fixed_input_size and wrong:
                raise ValueError(
                    f"model {m.label}: backbone {name} takes only {entry.input_size}x{entry.input_size} images, but "
                    f"the sweep uses data.image_size {', '.join(map(str, wrong))}; set data.image_size: "
                    f"{entry.input_size} (and no other image_size_schedule size), or pick another backbone")


class SpecError(TLSweepError, ValueError):
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
    """Validate a sweep file's plain data.

    Args:
        data: the parsed YAML (a mapping).
        source: the file's name, for messages.
        root_node: the file's YAML tree (``yaml.compose``), for line numbers in messages.
        base_dir: what relative paths (data root, storage, warm start) are relative to; default the current folder.

    Returns:
        The validated ``Spec``, its paths absolute.

    Raises:
        SpecError: every problem at once, each with its YAML path, line and the allowed values.
    """
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
    """Read and validate a sweep file. Relative paths in it are taken from the current directory.

    Args:
        path: the YAML sweep file.
        overrides: nested values that replace the file's (``parse_sets`` makes them from ``--set``).

    Returns:
        The validated ``Spec`` (``spec.plan()`` is what the rest of tlsweep runs).

    Raises:
        SpecError: an unreadable file, invalid YAML, or every validation problem with its line.
    """
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
    spec._source, spec._node = str(path), root_node
    return spec


def parse_sets(items: list[str]) -> dict:
    """``["search.lr=0.01", "models=[resnet18]"]`` → nested overrides for ``load_spec`` (values parsed as YAML).

    Raises:
        SpecError: an item that is not KEY=VALUE, or a value that is not YAML.
    """
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
