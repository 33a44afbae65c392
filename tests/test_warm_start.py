"""Warm start from a finished sweep on a real local Ray with real Optuna: the earlier trials are in each
group's study before the first new trial, the earlier best configs run first, a resumed sweep does not add
the history twice, and an incompatible search space gives a clear message and a cold sweep."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tlsweep.config.spec import parse_spec

from .processes import size, wait_for

pytestmark = pytest.mark.slow

MODELS = ["mobilenet_v3_small", {"name": "mobilenet_v3_small", "id": "mnet_mlp", "head": {"hidden": [16]}}]


def sweep_dict(root, storage, **extra):
    return {"name": Path(storage).name, "data": {"root": str(root), "image_size": 32}, "weights": "none",
            "models": MODELS,
            "search": {"lr": {"loguniform": [1e-3, 3e-2]}, "batch_size": {"grid": [8, 16]}, "optimizer": "adam",
                       "lr_scheduler": "none"},
            "epochs": 2, "scheduler": {"type": "fifo"}, "searcher": {"type": "optuna", "seed": 0},
            "num_samples": 2, "storage": str(storage), **extra}


@pytest.fixture(scope="module")
def earlier(shapes_root, tmp_path_factory):
    """A finished sweep: 2 models × 2 grid points × 2 trials."""
    import ray

    from tlsweep.sweep.runner import run_sweep

    storage = tmp_path_factory.mktemp("earlier") / "a"
    result = run_sweep(parse_spec(sweep_dict(shapes_root, storage)))
    ray.shutdown()
    assert len(result.trials) == 8 and set(result.trials["status"]) == {"finished"}
    return storage, pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})


def best_lrs(summary: pd.DataFrame, model: str, batch: int) -> list[float]:
    """The learning rates of a group's best earlier trials (several when tied)."""
    rows = summary[(summary["model"] == model) & (summary["batch_size"] == batch)]
    return [pytest.approx(lr) for lr in rows.loc[rows["val_acc"] == rows["val_acc"].max(), "lr"]]


def test_history_is_in_the_studies_before_the_first_trial(earlier, shapes_root, tmp_path):
    from tlsweep.config.space import build_groups
    from tlsweep.sweep import warmstart
    from tlsweep.sweep.searcher import GroupedSearcher
    from tlsweep.trial.objectives import constraints, objectives

    storage, summary = earlier
    plan = parse_spec(sweep_dict(shapes_root, tmp_path / "b", warm_start=[str(storage)], warm_start_top_k=1,
                                 searcher={"type": "optuna", "seed": 7})).plan()
    groups = build_groups(plan)
    warm = warmstart.plan(plan, groups)
    searcher = GroupedSearcher(groups, plan.num_samples, "val_acc", "max", "optuna", 7,
                               objectives=objectives(plan), constraints=constraints(plan), warm=warm)
    for group, study in zip(groups, searcher.studies):
        rows = summary[(summary["model"] == group.fixed["model"])
                       & (summary["batch_size"] == group.fixed["batch_size"])]
        told = study.study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
        assert len(told) == len(rows) == 2
        assert sorted((t.params["lr"], t.value) for t in told) == sorted(zip(rows["lr"], rows["val_acc"]))
        assert {t.user_attrs["warm_start"] for t in told} == {str(storage)}
    firsts = [searcher.suggest(f"t{i}") for i in range(len(groups))]  # one per group: each group's earlier best
    for config in firsts:
        assert config["lr"] in best_lrs(summary, config["model"], config["batch_size"])
    assert "8 fit this sweep's search space" in warm.notes[0]


def test_incompatible_space_says_why_and_runs_cold(earlier, shapes_root, tmp_path, caplog):
    import ray

    from tlsweep.sweep.runner import run_sweep

    storage, _ = earlier
    spec = sweep_dict(shapes_root, tmp_path / "c", warm_start=[str(storage)], warm_start_top_k=2, epochs=1,
                      num_samples=2, models=["mobilenet_v3_small"])
    spec["search"].update(lr={"loguniform": [0.1, 0.5]}, batch_size=16)
    with caplog.at_level(logging.WARNING, logger="tlsweep.sweep.warmstart"):
        result = run_sweep(parse_spec(spec))
    ray.shutdown()
    text = caplog.text
    assert "8 earlier trials, 0 fit this sweep's search space" in text
    assert "2 × batch_size=8, here 16" in text
    assert "2 × lr outside loguniform [0.1, 0.5] (got 0.0" in text
    assert "4 × model 'mnet_mlp' is not in this sweep" in text
    assert "no earlier trial fits this sweep; it starts cold" in text
    notes = yaml.safe_load((tmp_path / "c" / "warm_start.yaml").read_text())
    assert notes["added"] == [0] and notes["first"] == [[]]
    assert len(result.trials) == 2 and set(result.trials["status"]) == {"finished"}
    assert all(0.1 <= lr <= 0.5 for lr in result.trials["lr"])


def test_warm_started_sweep_resumes_without_adding_history_twice(earlier, shapes_root, tmp_path, procs):
    from tlsweep.sweep.searcher import GroupedSearcher

    storage_a, summary_a = earlier
    storage = tmp_path / "results" / "b"
    sweep = tmp_path / "b.yaml"
    sweep.write_text(yaml.safe_dump(sweep_dict(shapes_root, storage, warm_start=[str(storage_a)], warm_start_top_k=1,
                                               max_concurrent=2, searcher={"type": "optuna", "seed": 7})))
    cmd = [sys.executable, "-m", "tlsweep.cli", "run", str(sweep)]
    env = {**os.environ, "TLSWEEP_TORCH_THREADS": "1"}
    proc = procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: sum(size(p) > 0 for p in storage.glob("*/result.json")) >= 2, 240, "2 trials' results", proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    res = procs.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]

    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == 8 and set(summary["status"]) == {"finished"}
    searcher = GroupedSearcher.__new__(GroupedSearcher)
    searcher.restore(sorted(storage.glob("searcher-state-*.pkl"))[-1])
    assert searcher.seeded == [2, 2, 2, 2]
    for group, study in zip(searcher.groups, searcher.studies):
        trials = study.study.get_trials(deepcopy=False)
        seeded = [t for t in trials if "warm_start" in t.user_attrs]
        new = [t for t in trials if "warm_start" not in t.user_attrs]
        assert len(seeded) == 2, "the earlier trials were added again on resume"
        assert len(new) == 2 and max(t.number for t in seeded) < min(t.number for t in new)
        first = min(new, key=lambda t: t.number)  # the earlier best config of this group ran first
        assert first.params["lr"] in best_lrs(summary_a, group.fixed["model"], group.fixed["batch_size"])
        mine = summary[(summary["model"] == group.fixed["model"])
                       & (summary["batch_size"] == group.fixed["batch_size"])]
        assert any(lr == pytest.approx(first.params["lr"]) for lr in mine["lr"])
