"""Write constraints.txt: the exact versions, installed in this environment, of everything tlsweep[dev] needs.

Run with the venv that passed the tests: ``.venv/bin/python scripts/lock.py``. ``scripts/setup.sh`` installs with
``pip install -c constraints.txt``, so the README's commands get the tested set while ``pyproject.toml`` keeps
ranges for people installing tlsweep next to other tools.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("dev",)


def closure(requirements: list[str], extras: tuple[str, ...] = ()) -> dict[str, str]:
    """Canonical name → installed version for ``requirements`` and everything they need (markers evaluated)."""
    env = default_environment()
    found: dict[str, str] = {}
    todo = [(Requirement(r), extras) for r in requirements]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        req, parent_extras = todo.pop()
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in (*parent_extras, "")):
            continue
        name = canonicalize_name(req.name)
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        if name == "tlsweep":  # a self-reference such as tlsweep[export] in the dev extra
            todo += [(Requirement(r), tuple(req.extras)) for r in project_requirements(tuple(req.extras))]
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            sys.exit(f"{req.name} is required but not installed in {sys.prefix}")
        found[name] = dist.version
        todo += [(Requirement(r), tuple(req.extras)) for r in dist.requires or []]
    return found


def project_requirements(extras: tuple[str, ...]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def main() -> None:
    pins = closure(project_requirements(EXTRAS), EXTRAS)
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(pins.items())]
    header = ("# The exact set tlsweep[dev] was tested with (Python "
              f"{sys.version_info.major}.{sys.version_info.minor}, Linux x86_64); written by scripts/lock.py.\n"
              "# scripts/setup.sh installs with `pip install -c constraints.txt`; pyproject.toml keeps the ranges.\n")
    (ROOT / "constraints.txt").write_text(header + "\n".join(lines) + "\n")
    print(f"constraints.txt: {len(lines)} packages")


if __name__ == "__main__":
    main()
