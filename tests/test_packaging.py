"""Package metadata: dependency ranges (no exact pins), and constraints.txt inside those ranges."""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def metadata(tmp_path_factory, module_procs) -> md.PackageMetadata:
    """The metadata setuptools builds from pyproject.toml, as pip would install it."""
    out = tmp_path_factory.mktemp("meta")
    name = module_procs.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                             "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))", str(out)],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return md.PathDistribution(out / name).metadata


def _requirements(metadata, extra: str | None) -> list[Requirement]:
    reqs = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    if extra is None:
        return [r for r in reqs if r.marker is None]
    return [r for r in reqs if r.marker is not None and r.marker.evaluate({"extra": extra})]


def test_dependencies_are_ranges_with_floor_and_ceiling(metadata):
    deps = _requirements(metadata, None)
    assert {canonicalize_name(r.name) for r in deps} >= {"torch", "torchvision", "ray", "optuna", "pandas"}
    for extra in ("export", "mlflow", "wandb", "postgres", "dashboard", "dev"):
        deps += [r for r in _requirements(metadata, extra) if canonicalize_name(r.name) != "tlsweep"]
    for req in deps:
        ops = {s.operator for s in req.specifier}
        assert "==" not in ops and "===" not in ops, f"{req} pins an exact version"
        assert ">=" in ops and "<" in ops, f"{req} needs a tested floor and a next-major ceiling"


def test_dev_extra_pulls_in_every_other_extra(metadata):
    dev = _requirements(metadata, "dev")
    self_ref = [r for r in dev if canonicalize_name(r.name) == "tlsweep"]
    assert self_ref and set(self_ref[0].extras) == {"export", "timm", "mlflow", "wandb", "postgres", "dashboard"}


def test_constraints_pin_every_dependency_inside_its_range(metadata):
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    reqs = _requirements(metadata, None)
    for extra in ("export", "mlflow", "wandb", "postgres", "dashboard", "dev"):
        reqs += [r for r in _requirements(metadata, extra) if canonicalize_name(r.name) != "tlsweep"]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt lacks {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt {name}=={pins[name]} ∉ {req}"


def test_setup_script_installs_with_the_constraints():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-c constraints.txt -e '.[dev]'" in setup
