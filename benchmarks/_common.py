"""Shared pieces of the benchmarks: scratch folder, synthetic data, a local Ray, sweep specs, medians."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.pop("TLSWEEP_TORCH_THREADS", None)  # trials use `resources.cpu` threads, like a real sweep


def shapes(name: str, num_classes: int, train: int, val: int, size: int = 32, colour_cue: bool = True,
           test: int = 1) -> Path:
    """A shapes ImageFolder under ``_work/data/<name>`` (made once; ``train``/``val``/``test`` images per class;
    without ``colour_cue`` only the shape tells classes apart: harder)."""
    from tlsweep.data.synthetic import make_shapes_dataset

    root = WORK / "data" / name
    if not (root / "val").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        make_shapes_dataset(root, num_classes=num_classes, per_class={"train": train, "val": val, "test": test},
                            size=size, seed=0, colour_cue=colour_cue)
    return root


def fresh_dir(name: str) -> Path:
    path = WORK / "results" / name
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_RAY_STARTUP: list[float] = []


def start_ray(num_cpus: int | None = None) -> float:
    """Start a local Ray once per process; returns the seconds that start took (also when already up)."""
    import ray

    from tlsweep.sweep.runner import init_ray

    if not ray.is_initialized():
        start = time.perf_counter()
        init_ray(None, num_cpus=num_cpus or os.cpu_count())
        _RAY_STARTUP.append(time.perf_counter() - start)
    return _RAY_STARTUP[0] if _RAY_STARTUP else 0.0


def sweep_spec(name: str, root: Path, **fields):
    """A validated ``Spec`` over ``root`` (weights none, seed 0) with ``fields`` on top."""
    from tlsweep.config.spec import parse_spec

    data = {"name": name, "data": {"root": str(root), "image_size": 32, "augment": "none"}, "weights": "none",
            "storage": str(fresh_dir(name)), "seed": 0, **fields}
    return parse_spec(data)


def median(values) -> float:
    return float(statistics.median(values))
