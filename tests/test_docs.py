"""The documentation: generated references cover the code, the site builds with ``mkdocs build --strict``, and the
README keeps its promises (length, the test command CI runs, the examples folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal, Optional, Union

import pytest
import yaml
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import refgen  # noqa: E402

sys.path.remove(str(ROOT / "docs"))


def _yaml_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path of a pydantic model, walked independently of refgen (models, lists and dicts of models)."""
    paths = set()
    hints = typing.get_type_hints(model, include_extras=True)
    for name in model.model_fields:
        path = f"{prefix}.{name}" if prefix else name
        paths.add(path)
        for sub_path, sub in refgen.nested_models(hints[name], path):
            paths |= _yaml_paths(sub, sub_path)
    return paths


def test_sweep_file_reference_lists_every_key_of_the_spec():
    from tlsweep.config.spec import Spec

    text = refgen.spec_reference()
    keys = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    assert keys == _yaml_paths(Spec)
    assert {"data.split.train", "models[].head.norm", "heads.<name>.dropout", "constraints.<metric>.max",
            "loggers.wandb.mode", "search.lr"} <= keys
    row = next(line for line in text.splitlines() if line.startswith("| `performance.precision` |"))
    assert "`fp32`" in row and "`bf16`" in row and "`fp16`" in row  # Literal values
    row = next(line for line in text.splitlines() if line.startswith("| `scheduler.type` |"))
    assert "`asha`" in row and "`fifo`" in row  # registry-backed values


class _Leaf(BaseModel):
    """A leaf."""

    size: int = Field(3, ge=1, description="How big.")
    kind: Literal["a", "b"] = "a"


class _Other(BaseModel):
    flag: bool = False


class _Root(BaseModel):
    one: _Leaf
    maybe: Optional[_Leaf] = None
    many: list[_Leaf] = []
    named: dict[str, _Other] = {}
    either: Union[_Leaf, _Other, None] = None
    later: "_Later | None" = None


class _Later(BaseModel):
    depth: float = Field(0.5, gt=0, lt=1)


_Root.model_rebuild()


def test_spec_walker_handles_any_nesting():
    sections = refgen.walk(_Root)
    assert [s.path for s in sections] == ["", "one", "maybe", "many[]", "named.<name>", "either", "either",
                                         "later"]
    text = refgen.render_sections(sections)
    assert "| `one.size` | integer | `3` | ≥ 1 | How big. |" in text
    assert "| `many[].kind` | string | `a` | `a`, `b` |  |" in text
    assert "| `later.depth` | number | `0.5` | > 0, < 1 |  |" in text
    assert "| `named.<name>.flag` | boolean | `false` |" in text
    assert "A leaf." in text


def test_cli_reference_lists_every_command_and_option():
    import typer

    from tlsweep.cli import app

    text = refgen.cli_reference()
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"`tlsweep {name}`" in text
        for sub in getattr(command, "commands", {}):
            assert f"`tlsweep {name} {sub}`" in text
    assert "`--format <torchscript|onnx|both>`" in text and "[default: both]" in text


def test_api_reference_covers_the_public_api():
    import tlsweep

    text = refgen.api_reference()
    for name in tlsweep.__all__:
        if name != "__version__":
            assert re.search(rf"^::: tlsweep\.[a-z_.]+\.{name}$", text, flags=re.M), name


def test_every_example_sweep_says_what_it_shows_and_is_indexed():
    index = (ROOT / "sweeps" / "README.md").read_text()
    files = sorted((ROOT / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        assert len(refgen.top_comment(path)) > 20, f"{path.name} needs a top comment saying what it shows"
        assert f"`{path.name}`" in index, f"sweeps/README.md does not list {path.name}"
        yaml.safe_load(path.read_text())


@pytest.mark.slow  # imports torchvision: ~8 s
def test_the_annotated_sweep_file_of_the_guide_is_valid():
    from tlsweep import parse_spec

    text = (ROOT / "docs" / "guides" / "sweep-files.md").read_text()
    example = re.search(r"```yaml\n(name: .*?)```", text, flags=re.S).group(1)
    spec = parse_spec(yaml.safe_load(example))
    assert len(spec.models) == 3 and spec.heads


def test_readme_is_short_and_its_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    first = next(line for line in readme.splitlines() if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text()
    assert first.strip() in ci.splitlines()
    assert 'pytest -m "not slow" -n 2' in (ROOT / "CONTRIBUTING.md").read_text()
    tour = re.search(r"```yaml\n(name: shapes\n.*?)```", readme, flags=re.S).group(1)
    assert yaml.safe_load(tour) == yaml.safe_load((ROOT / "sweeps" / "shapes.yaml").read_text())


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    """A broken page, link, reference or docstring fails the build (``strict: true``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "site"
    assert "data.split.train" in (site / "reference" / "sweep-file" / "index.html").read_text()
    assert "tlsweep run" in (site / "reference" / "cli" / "index.html").read_text()
    assert 'id="tlsweep.sweep.runner.run_sweep"' in (site / "reference" / "api" / "index.html").read_text()
