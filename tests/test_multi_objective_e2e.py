"""A multi-objective, constrained sweep on a real local Ray with real Optuna (NSGA-II) and ASHA, then its report:
every objective is in the trials' tables, the Pareto set matches a direct computation from summary.csv and
trials.csv, and a parameter-count constraint rules resnet18 out of every "best"."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlsweep.config.spec import parse_spec

pytestmark = pytest.mark.slow


def non_dominated(frame: pd.DataFrame, objectives: list[tuple[str, str]]) -> set[str]:
    """Brute force: trials no other trial beats on one objective while matching it on all the others."""
    signed = np.column_stack([frame[n].to_numpy(float) * (-1 if m == "max" else 1) for n, m in objectives])
    ids = frame["trial_id"].tolist()
    return {ids[i] for i in range(len(ids))
            if not any((signed[j] <= signed[i]).all() and (signed[j] < signed[i]).any() for j in range(len(ids)))}


def test_multi_objective_sweep_pareto_front_and_constraint(shapes_root, tmp_path):
    import ray

    from tlsweep.report import make_report
    from tlsweep.sweep.runner import run_sweep
    from tlsweep.sweep.searcher import GroupedSearcher

    storage = tmp_path / "results" / "mo"
    spec = parse_spec({
        "name": "mo", "data": {"root": str(shapes_root), "image_size": 32, "cache_dir": str(tmp_path / "cache")},
        "weights": "none",
        "models": ["mobilenet_v3_small", {"name": "mobilenet_v3_small", "id": "mnet_mlp", "head": {"hidden": [64]}},
                   "resnet18"],
        "search": {"lr": {"loguniform": [1e-3, 3e-2]}, "batch_size": 16, "optimizer": "adam", "lr_scheduler": "none"},
        "epochs": 3, "num_samples": 3, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "searcher": {"type": "nsga2", "seed": 0, "population_size": 2},
        "objectives": [{"metric": "macro_f1"}, {"metric": "latency_ms"}, "val_loss"],
        "constraints": {"params": {"max": 5e6}},  # resnet18 has 11M
        "storage": str(storage)})
    assert spec.scheduler.metric == "val_macro_f1"
    result = run_sweep(spec)
    ray.shutdown()

    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})  # ids like 281795e0 are not numbers
    assert len(summary) == 9 and set(summary["status"]) <= {"finished", "stopped"}
    for column in ("macro_f1", "latency_ms", "params", "feasible", "pareto"):
        assert summary[column].notna().all(), column
    assert (summary["feasible"] == (summary["model"] != "resnet18")).all()
    assert summary.groupby("model")["latency_ms"].nunique().eq(1).all()  # measured once per model config...
    assert len(list((tmp_path / "cache" / "latency").glob("*.json"))) == 3  # ...and cached on the node
    for _, row in summary.iterrows():  # objectives at the best epoch by the ASHA metric (val macro-F1)
        history = pd.read_json(Path(row["path"]) / "result.json", lines=True)
        assert row["macro_f1"] == pytest.approx(history["val_macro_f1"].max())
        assert row["best_epoch"] == history.loc[history["val_macro_f1"].idxmax(), "training_iteration"]

    objectives = [("macro_f1", "max"), ("latency_ms", "min"), ("val_loss", "min")]
    eligible = summary[summary["feasible"] & summary["status"].isin(["finished", "stopped"])]
    front = non_dominated(eligible, objectives)
    assert front and set(summary.loc[summary["pareto"], "trial_id"]) == front
    assert "resnet18" not in set(result.best_per_model("val_macro_f1", "max").index)

    # The studies were told the same values the table shows, and resnet18's as infeasible.
    searcher = GroupedSearcher.__new__(GroupedSearcher)
    searcher.restore(sorted(storage.glob("searcher-state-*.pkl"))[-1])
    for group, study in zip(searcher.groups, searcher.studies):
        rows = summary[summary["model"] == group.fixed["model"]]
        told = sorted((t.params["lr"], *t.values, t.constraints["params.max"] > 0) for t in study.study.trials)
        table = sorted(zip(rows["lr"], rows["macro_f1"], rows["latency_ms"], rows["val_loss"],
                           ~rows["feasible"]))
        assert len(told) == len(table) == 3
        for t, r in zip(told, table):
            assert t[:4] == pytest.approx(r[:4]) and t[4] == r[4]

    out = Path(make_report(storage, cam_images=0, hparams=False, soups=False)).parent
    trials = pd.read_csv(out / "trials.csv", dtype={"trial_id": str})
    eligible = trials[trials["feasible"] & trials["status"].isin(["finished", "stopped"])]
    listed = pd.read_csv(out / "pareto.csv", dtype={"trial_id": str})
    assert set(listed["trial_id"]) == non_dominated(eligible, objectives) == front
    board = pd.read_csv(out / "leaderboard.csv", dtype={"trial_id": str})
    assert set(board["model"]) == {"mobilenet_v3_small", "mnet_mlp"}  # the constraint rules resnet18 out
    page = (out / "report.html").read_text()
    assert "Pareto front (all trials)" in page and 'id="pareto"' in page
    assert (out / "figures" / "pareto.png").stat().st_size > 0
    assert json.loads((storage / "tlsweep_spec.json").read_text())["objectives"][1] == {"metric": "latency_ms",
                                                                                       "mode": "min"}
