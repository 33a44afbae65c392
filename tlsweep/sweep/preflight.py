"""Checks of a valid sweep file against the world, before Ray starts: the dataset, batch size vs the train
split, freeze depth vs each backbone's stages, GPUs, storage. Problems come back in ``SpecError``'s format
(YAML path, line, message), all at once; warnings are plain sentences for the CLI to print.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config.plan import SweepPlan
from ..config.spec import Spec, SpecError
from ..models.backbones import get_backbone
from ..results.layout import is_uri

Problem = tuple[str, "int | None", str]
Report = Callable[[str, str], None]  # (YAML path, message)


@dataclass
class Preflight:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip_files: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def raise_problems(self, source: str) -> "Preflight":
        if self.problems:
            raise SpecError(source, self.problems)
        return self


def preflight(spec: Spec, data: bool = True, address: str | None = None, local_run: bool = True) -> Preflight:
    """Check a valid sweep file against the world: dataset, batch sizes, freeze depths, storage, GPUs, loggers.

    Args:
        spec: The validated sweep file; its problems get the file's YAML lines.
        data: Also read the dataset (splits, unreadable images, duplicates, imbalance).
        address: A Ray cluster to check the resources against.
        local_run: False for ``tlsweep validate``: GPUs this machine lacks are a warning, not a problem.

    Returns:
        The problems (path, line, message), warnings, images to skip and split counts; ``raise_problems`` turns
        the problems into a ``SpecError``.
    """
    result = Preflight()
    plan = spec.plan()

    def problem(path: str, message: str) -> None:
        result.problems.append((path, spec.line_of(path), message))

    _freeze_depth(plan, problem)
    _storage(plan, problem, "storage" if spec.storage else "name")
    _study_storage(plan, problem)
    _loggers(plan, problem)
    _gpus(plan, problem, result, address, local_run)
    _gpu_memory(plan, problem, local_run and not address and not os.environ.get("RAY_ADDRESS"))
    if data:
        _data(plan, problem, result)
    return result


def check_or_raise(spec: Spec, data: bool = True, address: str | None = None, local_run: bool = True) -> Preflight:
    """``preflight``, raising its problems as one ``SpecError``."""
    return preflight(spec, data, address, local_run).raise_problems(spec.source or "<spec>")


def _freeze_depth(plan: SweepPlan, problem: Report) -> None:
    stages = [v for v in plan.search.values_of("freeze_depth") if not isinstance(v, (bool, str)) and v >= 2]
    if not stages:
        return
    for model in plan.models_table.values():
        for name in model.backbones:
            have = get_backbone(name).num_stages
            for depth in stages:
                if depth > have:
                    problem("search.freeze_depth", f"freeze_depth {depth} exceeds {name}'s {have} stages "
                                                   f"(use at most {have}, or a fraction in [0, 1])")


def _storage(plan: SweepPlan, problem: Report, key: str) -> None:
    storage = plan.storage
    if is_uri(storage):
        _remote_storage(storage, problem)
        return
    path = Path(storage)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        problem(key, f"cannot store results in {storage}: {existing} is a file, not a folder")
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem(key, f"cannot store results in {storage}: {existing} is not writable")


def _remote_storage(storage: str, problem: Report) -> None:
    """The URI parses and, for object stores, its bucket answers."""
    import pyarrow.fs as pafs

    from ..results.storage import locate

    try:
        loc = locate(storage)
        if storage.split("://")[0] in ("s3", "gs", "gcs"):
            bucket = loc.path.split("/")[0]
            if loc.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                problem("storage", f"cannot store results in {storage}: bucket {bucket!r} does not exist")
    except (OSError, ValueError) as err:
        problem("storage", f"cannot reach {storage}: {err}")


def _study_storage(plan: SweepPlan, problem: Report) -> None:
    """A database for the studies answers and lets us in (``tlsweep.results.studies.probe``)."""
    from ..results.studies import FILE, MEMORY, StudyStorageError, probe

    if plan.searcher.storage in (FILE, MEMORY):
        return
    try:
        probe(plan.searcher.storage)
    except StudyStorageError as err:
        problem("searcher.storage", str(err))


def _loggers(plan: SweepPlan, problem: Report) -> None:
    from .loggers import missing

    for name, message in missing(plan.loggers).items():
        problem(f"loggers.{name}", message)


def _gpus(plan: SweepPlan, problem: Report, result: Preflight, address, local_run: bool) -> None:
    """GPUs asked as a number that this machine lacks: a problem for a local run, a warning for a file
    written here for a cluster. ``gpu: auto`` needs none (it gives trials no GPU where there is none)."""
    asked = [r.gpu for r in plan.model_resources.values() if r.gpu != "auto"]
    need = max(asked, default=0)
    if not need or address or os.environ.get("RAY_ADDRESS") or _ray_running():
        return  # a cluster's GPUs are checked once Ray is up (sweep.cluster.check_resources)
    import torch

    have = torch.cuda.device_count()
    if have < math.ceil(need):
        if local_run:
            problem("resources.gpu", f"a trial asks for {need:g} GPU but this machine has {have}; set "
                                     f"resources.gpu: auto (or 0), or attach to a cluster with GPUs (--address)")
        else:
            result.warnings.append(f"a trial asks for {need:g} GPU and this machine has {have}: fine for a cluster "
                                   f"(tlsweep run --address HOST:PORT), not for a run here")


def _ray_running() -> bool:
    """Ray already started in this process (by the caller): its resources, not torch's, say what there is."""
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _gpu_memory(plan: SweepPlan, problem: Report, here: bool) -> None:
    """Each model's largest batch size must fit in its GPU share (see ``tlsweep.trial.gpus`` for the estimate).
    ``here``: a run on this machine, where ``gpu: auto`` gives no GPU unless it has one."""
    from ..trial import gpus

    memory, source = gpus.gpu_memory_gb(plan.resources)
    no_local_gpu = here and gpus.local_gpu_memory_gb() is None
    for label, res in plan.model_resources.items():
        if no_local_gpu and res.gpu == "auto":  # no GPU here: nothing to estimate (nor torchvision to import)
            continue
        share = gpus.gpu_share(plan, label, memory)
        if not share:
            continue
        batch, need = gpus.worst_case(plan, label)
        have = share * memory * gpus.GiB
        if need > have:
            asked = plan.model_resources[label].gpu
            how = " (the most `auto` gives)" if asked == "auto" else ""
            problem("search.batch_size",
                    f"{label} at batch size {batch} needs about {need / gpus.GiB:.1f} GiB of GPU memory (estimate) "
                    f"but its GPU share {share:g}{how} of a {memory:g} GiB GPU ({source}) holds "
                    f"{have / gpus.GiB:.1f} GiB; lower the batch size, use precision bf16, or raise its "
                    f"resources.gpu")


def _data(plan: SweepPlan, problem: Report, result: Preflight) -> None:
    from ..data import DataError, load_splits
    from ..data.checks import scan_splits

    data = plan.data
    try:
        splits = load_splits(data, plan.seed)
    except DataError as err:
        problem("data.source" if "source" in str(err) and "unknown" in str(err) else "data.root", str(err))
        return
    if data.source == "imagefolder":
        report = scan_splits(splits, Path(data.root), data.on_bad_image, data.max_image_side)
        for message in report.errors:
            problem("data.root", message)
        result.warnings += report.warnings
        result.skip_files = report.skip_files
        result.counts = report.counts
        if report.errors:
            return
    else:
        result.counts = splits.sizes()
    train = result.counts.get("train", 0)
    too_big = [b for b in plan.search.values_of("batch_size") if isinstance(b, (int, float)) and b > train]
    if too_big:
        problem("search.batch_size", f"batch size {max(too_big):g} is larger than the train split ({train} images)")
