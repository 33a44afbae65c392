"""What persisting the studies costs the controller: ``run_sweep`` of many tiny trials (one mobilenet_v3_small
epoch on a few 32-px images, FIFO, two at a time) with ``searcher.storage: file`` (the default journal) against
``memory``, in alternating pairs on one warm local Ray (memory first in odd pairs, file first in even ones). The
ratio is the median of the pairs' file/memory wall times; the notes give every pair and what the journal holds. A
first, informative row times the searcher's calls alone (what the storage adds to Tune's controller per trial).

    python -m benchmarks.bench_study_storage [TRIALS] [PAIRS]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ._common import median, shapes, start_ray, sweep_spec

TRIALS, PAIRS, QUICK_TRIALS, QUICK_PAIRS = 300, 3, 40, 2
TARGET = 1.05


def _sweep(name: str, root, trials: int, storage: str) -> tuple[float, int]:
    """Seconds of ``run_sweep`` and the trials the studies hold."""
    from tlsweep.results.studies import load_studies
    from tlsweep.sweep.runner import run_sweep

    spec = sweep_spec(name, root, models=["mobilenet_v3_small"], epochs=1, num_samples=trials, max_concurrent=2,
                      search={"lr": {"loguniform": [1e-3, 1e-1]}, "batch_size": 8, "optimizer": "sgd",
                              "lr_scheduler": "none"},
                      scheduler={"type": "fifo"}, resources={"cpu": 1}, searcher={"storage": storage})
    start = time.perf_counter()
    result = run_sweep(spec, progress="none")
    seconds = time.perf_counter() - start
    assert len(result.trials) == trials, result.trials
    held = sum(len(s.trials) for s in load_studies(spec.storage_dir)) if storage == "file" else 0
    shutil.rmtree(spec.storage_dir, ignore_errors=True)  # a checkpoint per trial: GBs per arm
    return seconds, held


def _controller(trials: int, storage: str, folder: Path) -> float:
    """Seconds of the searcher's calls for ``trials`` three-epoch trials, as Tune's controller makes them."""
    from tlsweep.config.distributions import parse_param
    from tlsweep.config.space import Group
    from tlsweep.sweep.searcher import GroupedSearcher

    groups = [Group({"model": "m"}, {"lr": parse_param({"loguniform": [1e-4, 1e-1]}),
                                     "momentum": parse_param({"uniform": [0.0, 0.9]})})]
    url = str(folder / f"{storage}.log") if storage == "file" else None
    start = time.perf_counter()
    searcher = GroupedSearcher(groups, trials, "val_acc", "max", seed=0, storage_url=url, names=["s/m"], epochs=3)
    for i in range(trials):
        searcher.suggest(f"t{i}")
        for epoch in (1, 2, 3):
            searcher.on_trial_result(f"t{i}", {"val_acc": 0.1 * epoch + 1e-4 * i, "training_iteration": epoch})
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.3 + 1e-4 * i, "training_iteration": 3})
    return time.perf_counter() - start


def controller_row(trials: int, pairs: int) -> dict:
    done = []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(pairs):
            order = ("memory", "file") if k % 2 == 0 else ("file", "memory")
            got = {arm: _controller(trials, arm, Path(folder) / str(k)) for arm in order}
            done.append((got["memory"], got["file"]))
    ratio = median(f / m for m, f in done)
    extra_ms = 1000 * median((f - m) / trials for m, f in done)
    return {"benchmark": "study_storage_controller", "baseline": f"memory, median {median(m for m, _ in done):.2f} s",
            "candidate": f"file (journal), median {median(f for _, f in done):.2f} s", "ratio": ratio,
            "target": "≤ 20 ms per trial", "met": extra_ms <= 20,
            "notes": (f"the searcher's calls alone (ask with TPE, 3 intermediate values, tell) for {trials} trials, "
                      f"{pairs} alternating pairs (memory, file) s: " + "; ".join(f"{m:.2f}, {f:.2f}" for m, f in done)
                      + f"; the journal adds {extra_ms:.1f} ms per trial")}


def run(quick: bool = False, trials: int | None = None, pairs: int | None = None) -> list[dict]:
    trials = trials or (QUICK_TRIALS if quick else TRIALS)
    pairs = pairs or (QUICK_PAIRS if quick else PAIRS)
    rows = [controller_row(TRIALS, max(pairs, 3))]
    root = shapes("study_storage", num_classes=2, train=4, val=2)
    start_ray(num_cpus=2)
    _sweep("study_storage_warmup", root, 4, "memory")  # workers and imports warm for both arms
    load = os.getloadavg()[0]
    done = []
    for k in range(pairs):
        order = ("memory", "file") if k % 2 == 0 else ("file", "memory")
        got = {arm: _sweep(f"study_storage_{arm}{k}", root, trials, arm) for arm in order}
        done.append((got["memory"][0], got["file"][0], got["file"][1]))
        print(f"pair {k + 1}: memory {got['memory'][0]:.1f} s, file {got['file'][0]:.1f} s", file=sys.stderr,
              flush=True)
    ratio = median(f / m for m, f, _ in done)
    return rows + [{
        "benchmark": "study_storage",
        "baseline": f"searcher.storage: memory, median {median(m for m, _, _ in done):.1f} s",
        "candidate": f"file (journal), median {median(f for _, f, _ in done):.1f} s",
        "ratio": ratio, "target": f"≤ {TARGET:.2f}×", "met": ratio <= TARGET,
        "notes": (f"run_sweep of {trials} one-epoch mobilenet_v3_small trials (32 px, 8 train images), FIFO, "
                  f"2 at a time, {pairs} alternating pairs (memory, file) s: "
                  + "; ".join(f"{m:.1f}, {f:.1f}" for m, f, _ in done)
                  + f"; the journal held {done[-1][2]} trials; load average at start {load:.1f}"),
    }]


if __name__ == "__main__":
    from ._common import WORK
    from .run import format_table

    args = [int(a) for a in sys.argv[1:3]]
    try:
        print(format_table(run(False, *args)))
    finally:
        shutil.rmtree(WORK / "results", ignore_errors=True)  # the sweeps' checkpoints: GBs of scratch
