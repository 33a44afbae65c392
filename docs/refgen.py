"""Reference pages generated at build time from the code, so they cannot drift from it.

- ``spec_reference()``: every sweep-file key, walked generically from the pydantic model ``tlsweep.config.spec.Spec``.
- ``cli_reference()``: every command of the typer app ``tlsweep.cli:app``, walked through its click command.
- ``api_reference()``: one mkdocstrings block per name of ``tlsweep.__all__``.
- ``examples_reference()``: every file of ``sweeps/`` with its top comment.

``docs/hooks.py`` puts them where a page has a ``<!-- tlsweep:NAME -->`` marker.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent

# Keys whose allowed values live in a registry that the spec checks in a validator. A field may instead expose them
# itself with ``json_schema_extra={"choices": ...}`` (a list, a Registry, or a callable returning names); that wins.
REGISTRY_CHOICES: dict[str, tuple[str, str]] = {
    "data.augment": ("tlsweep.data.augment", "POLICIES"),
    "search.optimizer": ("tlsweep.trial.optim", "OPTIMIZERS"),
    "search.lr_scheduler": ("tlsweep.trial.optim", "LR_SCHEDULERS"),
    "scheduler.type": ("tlsweep.sweep.schedulers", "SCHEDULERS"),
    "models[].name": ("tlsweep.models.backbones", "list_backbones"),
    "models[].ensemble": ("tlsweep.models.backbones", "list_backbones"),
    "objectives[].metric": ("tlsweep.trial.objectives", "METRICS"),
    "constraints": ("tlsweep.trial.objectives", "METRICS"),
}


# ---------------------------------------------------------------- sweep file


@dataclass
class Row:
    key: str
    type: str
    default: str
    allowed: str
    description: str


@dataclass
class Section:
    path: str
    model: type[BaseModel]
    shared: bool = False  # one of several models a union allows at this path
    rows: list[Row] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return model_anchor(self.path, self.model, self.shared)


def anchor(path: str) -> str:
    """A heading id for a YAML path: ``models[].head`` → ``models-head``."""
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "top-level"


def model_anchor(path: str, model: type, shared: bool) -> str:
    return anchor(f"{path}-{model.__name__}" if shared else path)


def _strip(ann: Any) -> Any:
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _is_mapping(ann: Any) -> bool:
    ann = _strip(ann)
    if _is_union(ann):
        return any(_is_mapping(a) for a in typing.get_args(ann))
    return typing.get_origin(ann) is dict


def _is_union(ann: Any) -> bool:
    return typing.get_origin(ann) in (Union, types.UnionType)


def nested_models(ann: Any, path: str) -> list[tuple[str, type[BaseModel]]]:
    """The pydantic models inside an annotation with the YAML path each sits at: ``X`` → path, ``list[X]`` /
    ``tuple[X, ...]`` → ``path[]``, ``dict[K, X]`` → ``path.<k>``; unions and Optional are looked through."""
    ann = _strip(ann)
    if _is_model(ann):
        return [(path, ann)]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if _is_union(ann):
        return [found for arg in args for found in nested_models(arg, path)]
    if origin in (list, tuple, set, frozenset, typing.Sequence) or (
            isinstance(origin, type) and origin.__name__ in ("Sequence", "Iterable")):
        return [found for arg in args if arg is not Ellipsis for found in nested_models(arg, f"{path}[]")]
    if origin is dict or (isinstance(origin, type) and origin.__name__ == "Mapping"):
        key = _key_name(args[0]) if args else "name"
        return [found for arg in args[1:] for found in nested_models(arg, f"{path}.<{key}>")]
    return []


def _key_name(ann: Any) -> str:
    """``dict[MetricName, X]`` → ``metric``; plain ``str`` keys → ``name``."""
    alias = getattr(ann, "__name__", None) if typing.get_origin(ann) is not typing.Annotated else None
    for meta in typing.get_args(ann)[1:] if typing.get_origin(ann) is typing.Annotated else ():
        alias = getattr(getattr(meta, "func", None), "__name__", alias)
    if alias and alias not in ("str", "Any"):
        return alias.strip("_").removesuffix("_name").removesuffix("Name").lower() or "name"
    return "name"


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", type(None): "null",
            Any: "any", dict: "mapping", list: "list"}


def render_type(ann: Any, path: str, shared: bool = False) -> str:
    """A short, readable type: ``integer \\| null``, ``list of [mapping](#models)``; a model links to its section."""
    ann = _strip(ann)
    if _is_model(ann):
        return f"[mapping](#{model_anchor(path, ann, shared)})"
    if ann in _SCALARS:
        return _SCALARS[ann]
    if isinstance(ann, typing.ForwardRef):
        return ann.__forward_arg__
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal or (isinstance(ann, type) and issubclass(ann, enum.Enum)):
        values = args if origin is Literal else [m.value for m in ann]
        return " \\| ".join(dict.fromkeys(_SCALARS.get(type(v), "value") for v in values))
    if _is_union(ann):
        shared = sum(_is_model(_strip(a)) for a in args) > 1
        parts = [render_type(arg, path, shared) for arg in args]
        return " \\| ".join(dict.fromkeys(p for part in parts for p in part.split(" \\| ")))
    if origin in (list, tuple, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and args and args[-1] is not Ellipsis:  # a fixed-length tuple
            return "list of " + " and ".join(render_type(a, f"{path}[]") for a in items) \
                if len(set(items)) > 1 else f"list of {len(items)} × {render_type(items[0], f'{path}[]')}"
        return "list of " + (render_type(items[0], f"{path}[]") if items else "any")
    if origin is dict:
        key = _key_name(args[0]) if args else "name"
        value = render_type(args[1], f"{path}.<{key}>") if len(args) > 1 else "any"
        return f"mapping {render_type(args[0], path) if args else 'string'} → {value}"
    return getattr(ann, "__name__", str(ann)).replace("|", "\\|")


def _literals(ann: Any) -> list:
    ann = _strip(ann)
    if typing.get_origin(ann) is Literal:
        return list(typing.get_args(ann))
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return [m.value for m in ann]
    if _is_union(ann):
        return [v for arg in typing.get_args(ann) for v in _literals(arg)]
    return []


def _yaml(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _names(source: Any) -> list[str]:
    """Names from a list, a Registry (``.names()``), a mapping or a callable returning one of those."""
    if callable(source) and not hasattr(source, "names") and not isinstance(source, (list, tuple, dict)):
        source = source()
    if hasattr(source, "names"):
        source = source.names()
    return [str(n) for n in source]


def _choices(info: FieldInfo, path: str) -> list[str]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    for key in ("choices", "enum", "allowed"):
        if key in extra:
            return _names(extra[key])
    if path in REGISTRY_CHOICES:
        module, name = REGISTRY_CHOICES[path]
        try:
            return _names(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            return []
    return []


_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", "≥"), (at.Lt, "lt", "<"), (at.Le, "le", "≤"))


def _constraints(info: FieldInfo) -> list[str]:
    out = []
    for meta in info.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(meta, kind):
                out.append(f"{sign} {getattr(meta, attr)}")
        if isinstance(meta, at.MinLen):
            out.append(f"at least {meta.min_length} item{'s' if meta.min_length != 1 else ''}")
        elif isinstance(meta, at.MaxLen):
            out.append(f"at most {meta.max_length} items")
        elif getattr(meta, "pattern", None):
            out.append(f"matches `{meta.pattern}`")
    return out


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:
            return "computed"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        try:
            if value == type(value)():
                return "its fields' defaults"
        except ValueError:
            pass
        changed = value.model_dump(mode="json", exclude_defaults=True)
        return f"`{_yaml(changed)}`" if changed else "its fields' defaults"
    try:
        return f"`{_yaml(value)}`"
    except yaml.YAMLError:
        return f"`{value!r}`"


def _cell(text: str) -> str:
    """One table cell of prose: one line, pipes escaped, ``*`` and ``<`` kept literal outside code spans."""
    if not text:
        return ""
    parts = " ".join(inspect.cleandoc(text).split()).split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside code spans
        parts[i] = parts[i].replace("*", "\\*").replace("<", "&lt;")
    return "`".join(parts).replace("|", "\\|")


def _field_type(info: FieldInfo, path: str) -> str:
    text = render_type(info.annotation, path)
    if text == "any" and any(getattr(getattr(m, "func", None), "__name__", "") == "parse_param" for m in info.metadata):
        return "constant or distribution"
    return text


def _has_forward_ref(ann: Any) -> bool:
    return isinstance(ann, (typing.ForwardRef, str)) or any(_has_forward_ref(a) for a in typing.get_args(ann))


def _hints(model: type[BaseModel]) -> dict[str, Any]:
    """Field annotations with forward references resolved in the model's module (models declared out of order)."""
    try:
        return typing.get_type_hints(model, include_extras=True)
    except (NameError, TypeError):
        return {}


def walk(model: type[BaseModel], path: str = "") -> list[Section]:
    """Sections in depth-first order: the model at ``path``, then every model nested in its fields."""
    sections: list[Section] = []
    stack: tuple[type, ...] = ()

    def visit(m: type[BaseModel], p: str, shared: bool = False) -> None:
        nonlocal stack
        if m in stack:  # a recursive model: listed once
            return
        stack = (*stack, m)
        section = Section(p, m, shared)
        sections.append(section)
        children = []
        hints = _hints(m)
        for name, info in m.model_fields.items():
            if _has_forward_ref(info.annotation) and name in hints:
                info = FieldInfo.merge_field_infos(info, annotation=hints[name])
            key = info.alias or name
            full = f"{p}.{key}" if p else key
            values = [f"`{v}`" for v in dict.fromkeys([_yaml(v) for v in _literals(info.annotation)])]
            choices = [f"`{v}`" for v in _choices(info, full)]
            if choices and _is_mapping(info.annotation):
                choices[0] = "keys: " + choices[0]
            allowed = values + choices + _constraints(info)
            section.rows.append(Row(key=full, type=_field_type(info, full), default=_default(info),
                                    allowed=", ".join(allowed), description=_cell(info.description or "")))
            found = nested_models(info.annotation, full)
            paths = [fp for fp, _ in found]
            children += [(fp, fm, paths.count(fp) > 1) for fp, fm in found]
        for child_path, child, child_shared in children:
            visit(child, child_path, child_shared)
        stack = stack[:-1]

    visit(model, path)
    return sections


def render_sections(sections: list[Section], heading: str = "##") -> str:
    out = []
    for s in sections:
        title = f"`{s.path}`" if s.path else "Top level"
        if s.shared:
            title += f" as {s.model.__name__.strip('_')}"
        out.append(f"{heading} {title} {{#{s.anchor}}}\n")
        doc = s.model.__dict__.get("__doc__")
        if doc and s.model.__module__ != "pydantic.main":
            out.append(inspect.cleandoc(doc) + "\n")
        if not s.rows:
            out.append("No options.\n")
            continue
        out.append("| key | type | default | allowed | description |")
        out.append("|---|---|---|---|---|")
        for r in s.rows:
            out.append(f"| `{r.key}` | {r.type} | {r.default} | {r.allowed} | {r.description} |")
        out.append("")
    return "\n".join(out)


def spec_reference() -> str:
    from tlsweep.config.spec import Spec

    return render_sections(walk(Spec))


# ---------------------------------------------------------------- CLI


def cli_sections(command, name: str = "tlsweep", parent=None, level: int = 2) -> list[str]:
    """Markdown for a click-style command and, for a group, each of its subcommands: usage, help, and each
    argument and option as its ``--help`` shows it (choices, defaults, environment variables)."""
    ctx = command.context_class(command, info_name=name, parent=parent)
    out = [f"{'#' * level} `{ctx.command_path}` {{#{anchor(ctx.command_path)}}}\n"]
    out.append(f"```\n{ctx.command_path} {' '.join(command.collect_usage_pieces(ctx))}\n```\n")
    if command.help:
        out.append(inspect.cleandoc(command.help.split("\f")[0]) + "\n")
    records = [p.get_help_record(ctx) for p in command.get_params(ctx) if p.name != "help"]
    rows = [f"| `{names}` | {_cell(text)} |" for names, text in filter(None, records)]
    if rows:
        out += ["| argument / option | what it does |", "|---|---|", *rows, ""]
    if command.epilog:
        out.append(inspect.cleandoc(command.epilog) + "\n")
    if hasattr(command, "list_commands"):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                out += cli_sections(sub, sub_name, ctx, min(level + 1, 4))
    return out


def cli_reference() -> str:
    import typer

    from tlsweep.cli import app

    return "\n".join(cli_sections(typer.main.get_command(app)))


# ---------------------------------------------------------------- API


def api_reference() -> str:
    """One ``::: module.name`` block per public name, grouped by the module that defines it."""
    import tlsweep

    by_module: dict[str, list[str]] = {}
    for name in tlsweep.__all__:
        module = tlsweep._EXPORTS.get(name)
        if module:
            by_module.setdefault(module, []).append(name)
    out = []
    for module, names in by_module.items():
        out.append(f"## `tlsweep.{module}`\n")
        for name in names:
            out.append(f"::: tlsweep.{module}.{name}\n")
    return "\n".join(out)


# ---------------------------------------------------------------- examples


def top_comment(path: Path) -> str:
    """The comment lines a YAML file starts with, without the ``#``."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return " ".join(" ".join(lines).split())


def examples_reference() -> str:
    out = []
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        out.append(f"## `{path.name}` {{#{anchor(path.stem)}}}\n")
        out.append((top_comment(path) or "(no description)") + "\n")
        out.append(f'```yaml title="sweeps/{path.name}"\n{path.read_text().rstrip()}\n```\n')
    return "\n".join(out)


GENERATORS = {"sweep-file": spec_reference, "cli": cli_reference, "api": api_reference,
              "examples": examples_reference}
