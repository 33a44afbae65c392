"""Warm start: trials a sweep on new data needs to come within 0.5 point of the cold sweep's best val accuracy,
with and without a warm start from the same sweep run earlier on related data.

Two generated shapes datasets with the same four classes (shape only, no colour cue; different seeds, so
different images). For each seed: a source sweep on dataset A, then on dataset B a cold sweep and a sweep
warm-started from A's results folder (its trials in the study, its best config queued first), all with the same
budget and searcher seed. Target: the cold sweep's best on B minus 0.5 point; a sweep that never reaches it counts
as budget + 1 trials. The sweeps are the real ``GroupedSearcher`` (TPE) replayed in sequence in this process, each
trial a real ``tlsweep.trial.loop.Trial`` (linear probes of a random-init resnet18 on the frozen-feature cache, so a
trial takes well under a second), the source sweep written as a Tune-style results folder that the warm start
reads through ``tlsweep.sweep.warmstart``: what a Ray sweep does, minus Ray's start-up and one trial at a time.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from ._common import WORK, fresh_dir

TARGET_GAP = 0.005
SEARCH = {"lr": {"loguniform": [1e-5, 1.0]}, "weight_decay": {"loguniform": [1e-6, 1e-1]},
          "label_smoothing": {"uniform": [0.0, 0.4]}, "optimizer": {"choice": ["adam", "sgd"]},
          "batch_size": {"choice": [8, 64]}, "freeze_depth": 1.0, "lr_scheduler": "none", "momentum": 0.9}


def _data(name: str, seed: int) -> Path:
    from tlsweep.data.synthetic import make_shapes_dataset

    root = WORK / "data" / name
    if not (root / "val").is_dir():
        shutil.rmtree(root, ignore_errors=True)
        make_shapes_dataset(root, num_classes=4, per_class={"train": 30, "val": 50, "test": 1}, size=32, seed=seed,
                            colour_cue=False)
    return root


def _plan(name: str, root: Path, budget: int, seed: int, **extra):
    from tlsweep.config.spec import parse_spec

    storage = fresh_dir(name)
    return parse_spec({"name": name, "data": {"root": str(root), "image_size": 32, "augment": "none",
                                              "cache_dir": str(WORK / "cache")},
                       "weights": "none", "models": ["resnet18"], "search": SEARCH, "epochs": 6,
                       "scheduler": {"type": "fifo"}, "searcher": {"type": "optuna", "seed": seed},
                       "num_samples": budget, "storage": str(storage), **extra}).plan()


def sweep(plan) -> list[float]:
    """Run the sweep's trials one after another through the real searcher; write Tune's files; best val acc
    of each trial in order."""
    from tlsweep.config.space import build_groups
    from tlsweep.data import load_splits
    from tlsweep.results.layout import write_plan
    from tlsweep.sweep import warmstart
    from tlsweep.sweep.searcher import GroupedSearcher
    from tlsweep.trial.loop import Trial
    from tlsweep.trial.objectives import constraints, objectives

    groups = build_groups(plan)
    warm = warmstart.plan(plan, groups) if plan.warm_start else None
    searcher = GroupedSearcher(groups, plan.num_samples, "val_acc", "max", plan.searcher.type,
                               plan.searcher_seed, objectives=objectives(plan),
                               constraints=constraints(plan), warm=warm)
    storage = Path(plan.storage)
    write_plan(plan)
    splits = load_splits(plan.data, plan.seed)  # read once per sweep (a Ray trial reads its own)
    bests = []
    for i in range(plan.num_samples * len(groups)):
        trial_id = f"{i:05d}"
        config = searcher.suggest(trial_id)
        trial = Trial(plan.trial_config(config), splits=splits)
        rows = []
        for metrics in trial.run():
            rows.append({**metrics, "training_iteration": trial.epoch, "trial_id": trial_id})
            if trial.epoch < trial.max_epochs and not metrics["diverged"]:
                searcher.on_trial_result(trial_id, rows[-1])
        searcher.on_trial_complete(trial_id, rows[-1])
        folder = storage / f"{trial_id}_{config['model']}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(config))
        (folder / "result.json").write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        bests.append(max(r["val_acc"] for r in rows))
    return bests


def trials_to(bests: list[float], target: float) -> int:
    """1-based index of the first trial whose running best reaches ``target``; budget + 1 if none does."""
    return next((i + 1 for i, b in enumerate(bests) if b >= target - 1e-12), len(bests) + 1)


def run(quick: bool = False) -> list[dict]:
    budget, seeds, top_k = (12, 3, 1) if quick else (20, 6, 1)
    a, b = _data("warm_a", seed=11), _data("warm_b", seed=22)
    start = time.perf_counter()
    per_seed = []
    for seed in range(seeds):
        source = _plan(f"warm_src_{seed}", a, budget, seed)
        sweep(source)
        cold = sweep(_plan(f"warm_cold_{seed}", b, budget, seed))
        warm = sweep(_plan(f"warm_warm_{seed}", b, budget, seed, warm_start=[source.storage],
                            warm_start_top_k=top_k))
        target = max(cold) - TARGET_GAP
        per_seed.append((trials_to(cold, target), trials_to(warm, target), max(cold), max(warm)))
    seconds = time.perf_counter() - start
    cold_n = [c for c, _, _, _ in per_seed]
    warm_n = [w for _, w, _, _ in per_seed]
    ratio = statistics.mean(warm_n) / statistics.mean(cold_n)
    missed = sum(w > budget for w in warm_n)
    return [{
        "benchmark": "warm_start",
        "baseline": f"cold: {statistics.mean(cold_n):.1f} trials on average (median {statistics.median(cold_n):g})",
        "candidate": f"warm: {statistics.mean(warm_n):.1f} trials on average (median {statistics.median(warm_n):g})",
        "ratio": ratio, "target": "≤ 0.50× (≥ 2× fewer trials)", "met": ratio <= 0.5,
        "notes": (f"trials to come within {100 * TARGET_GAP:g} point of the cold sweep's best val acc on dataset B, "
                  f"{seeds} searcher seeds, budget {budget}, warm start from the same sweep on dataset A (history + "
                  f"top {top_k}); per seed (cold, warm): {[(c, w) for c, w, _, _ in per_seed]}; warm never reached "
                  f"it in {missed} (counted as {budget + 1}); best val acc cold/warm "
                  f"{statistics.mean(p[2] for p in per_seed):.3f}/{statistics.mean(p[3] for p in per_seed):.3f}"
                  f"; linear probes of random-init resnet18 (frozen-feature cache), 4 shape classes, 200 val "
                  f"images, 6 epochs; sweeps replayed in-process through GroupedSearcher, one trial at a time; "
                  f"{seconds:.0f} s"),
    }]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
