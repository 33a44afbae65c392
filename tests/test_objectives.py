"""Objectives and constraints: validation at the edge, val macro-F1, Pareto masks, the latency cache and the
grouped searcher's multi-objective, constrained Optuna studies (real Optuna, no Ray runtime needed)."""

import itertools

import numpy as np
import pytest
import torch
import yaml

from tlsweep.config.spec import SpecError, load_spec, parse_spec
from tlsweep.results.layout import USABLE
from tlsweep.trial.objectives import (
    METRICS,
    annotate,
    is_feasible,
    pareto_mask,
    violations,
)


def test_val_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    from tlsweep.trial.loop import macro_f1

    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        y, p = rng.integers(0, k, 50), rng.integers(0, k - 1, 50)  # class k-1 never predicted
        confusion = torch.bincount(torch.as_tensor(y * k + p), minlength=k * k).view(k, k)
        want = f1_score(y, p, labels=list(range(k)), average="macro", zero_division=0)
        assert macro_f1(confusion) == pytest.approx(want)


def test_trial_reports_val_macro_f1(shapes_root):
    from sklearn.metrics import f1_score

    from tests.conftest import trial_config_for
    from tlsweep.trial.loop import Trial

    trial = Trial(trial_config_for(shapes_root, epochs=1, model={"name": "mobilenet_v3_small", "weights": "none"}))
    metrics = trial.step()
    trial.model.eval()
    labels, preds = [], []
    with torch.no_grad():
        for x, y in trial.val_loader:
            preds += trial.model(x).argmax(1).tolist()
            labels += y.tolist()
    assert metrics["val_macro_f1"] == pytest.approx(f1_score(labels, preds, labels=[0, 1, 2], average="macro",
                                                             zero_division=0))


def brute_front(points, modes):
    sign = np.array([-1 if m == "max" else 1 for m in modes])
    p = np.asarray(points) * sign
    return [i for i in range(len(p)) if not any((p[j] <= p[i]).all() and (p[j] < p[i]).any() for j in range(len(p)))]


@pytest.mark.parametrize("modes", [["max", "min"], ["min", "min", "max"]])
def test_pareto_mask_is_the_non_dominated_set(modes):
    rng = np.random.default_rng(len(modes))
    points = rng.integers(0, 6, size=(40, len(modes))).astype(float)  # ties included
    assert list(np.flatnonzero(pareto_mask(points, modes))) == brute_front(points, modes)


def test_constraints_violations_and_feasibility():
    bounds = {"latency_ms": {"max": 10.0}, "val_acc": {"min": 0.5}}
    assert violations({"latency_ms": 12.0, "val_acc": 0.7}, bounds) == pytest.approx(
        {"latency_ms.max": 2.0, "val_acc.min": -0.2})
    assert not is_feasible({"latency_ms": 12.0, "val_acc": 0.7}, bounds)
    assert is_feasible({"latency_ms": 10.0, "val_acc": 0.5}, bounds)
    assert not is_feasible({"val_acc": 0.9}, bounds)  # latency never measured


def test_annotate_marks_feasible_and_front(spec_dict):
    import pandas as pd

    plan = parse_spec({**spec_dict, "objectives": [{"metric": "val_acc", "mode": "max"}, "latency_ms"],
                       "constraints": {"params": {"max": 100}}}).plan()
    frame = pd.DataFrame({"status": ["finished", "stopped", "finished", "error", "finished"],
                          "val_acc": [0.9, 0.8, 0.95, 0.99, 0.7], "latency_ms": [5, 3, 9, 1, 4],
                          "params": [50, 50, 500, 50, 50]})
    out = annotate(frame, plan, USABLE)
    assert out["feasible"].tolist() == [True, True, False, True, True]
    assert out["pareto"].tolist() == [True, True, False, False, False]  # 2 breaks params, 3 errored, 4 dominated


def write(tmp_path, data):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_spec_objectives_defaults_and_ranking_metric(spec_dict):
    spec = parse_spec({**spec_dict, "objectives": ["latency_ms", {"metric": "macro_f1"}],
                       "constraints": {"params": {"max": 5e6}}, "searcher": {"type": "nsga2", "population_size": 8}})
    plain = spec.plan().to_dict()
    assert plain["objectives"] == [{"metric": "latency_ms", "mode": "min"}, {"metric": "macro_f1", "mode": "max"}]
    assert plain["searcher"]["population_size"] == 8
    assert spec.scheduler.metric == METRICS["macro_f1"].result_key == "val_macro_f1"  # first per-epoch objective
    assert spec.scheduler.mode == "max"
    assert plain["constraints"] == {"params": {"min": None, "max": 5e6}}
    kept = parse_spec({**spec_dict, "objectives": ["val_loss"], "scheduler": {"metric": "val_acc"}})
    assert kept.scheduler.metric == "val_acc"  # an explicit scheduler metric stays


def test_spec_errors_name_line_and_allowed_metrics(spec_dict, tmp_path):
    data = {**spec_dict, "objectives": [{"metric": "val_acc"}, {"metric": "latancy", "mode": "min"},
                                        {"metric": "params", "mod": "min"}],
            "constraints": {"latency_ms": {}, "flops": {"max": 1}}, "searcher": {"type": "nsga3"}}
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = str(err.value)
    lines = path.read_text().splitlines()
    allowed = ", ".join(METRICS)
    for needle, parts in [("latancy", ["unknown metric 'latancy' (did you mean 'latency_ms'?)", f"allowed: {allowed}"]),
                          ("mod:", ["unknown field 'mod' (did you mean 'mode'?)"]),
                          ("latency_ms: {}", ["a constraint needs max and/or min"]),
                          ("flops", [f"unknown metric 'flops'; allowed: {allowed}"]),
                          ("nsga3", ["'nsga2'", "(got 'nsga3')"])]:
        line = next(i + 1 for i, ln in enumerate(lines) if needle in ln)
        assert any(f"line {line}:" in ln and all(p in ln for p in parts) for ln in text.splitlines()), (needle, text)
    for bad in ({"objectives": ["val_acc", "val_acc"]}, {"warm_start_top_k": 2}):
        with pytest.raises(SpecError, match="twice|need warm_start"):
            load_spec(write(tmp_path, {**spec_dict, **bad}))


def test_latency_is_measured_once_per_model_config(tmp_path):
    from tlsweep.models import build_model
    from tlsweep.trial.latency import cached_latency, measure

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1])
        return measure(*args, **kwargs)

    from tlsweep.config.sections import DataConfig, ModelConfig

    data = DataConfig.from_dict({"root": str(tmp_path), "cache_dir": str(tmp_path)})
    small = ModelConfig.from_dict({"name": "mobilenet_v3_small", "weights": "none"})
    model = build_model(small, 3)
    rng = torch.get_rng_state()
    first = cached_latency(model, small, 3, 32, torch.device("cpu"), data=data, measure_fn=counting)
    assert torch.equal(rng, torch.get_rng_state()) and model.training  # training state untouched
    again = cached_latency(build_model(small, 3), small, 3, 32, torch.device("cpu"), data=data, measure_fn=counting)
    assert first == again > 0 and len(calls) == 1
    cached_latency(model, small, 3, 48, torch.device("cpu"), data=data, measure_fn=counting)  # another input size
    assert calls == [32, 48]


def test_grouped_searcher_tells_best_epoch_values_and_constraints(spec_dict):
    import optuna

    from tlsweep.config.space import build_groups
    from tlsweep.sweep.searcher import GroupedSearcher
    from tlsweep.trial.objectives import constraints, objectives

    spec = parse_spec({**spec_dict, "models": ["resnet18", "mobilenet_v3_small"], "num_samples": 3,
                       "objectives": ["val_acc", "latency_ms"], "constraints": {"latency_ms": {"max": 5}},
                       "searcher": {"type": "nsga2", "seed": 0}})
    plan = spec.plan()
    searcher = GroupedSearcher(build_groups(plan), plan.num_samples, "val_acc", "max", "nsga2", 0,
                               objectives=objectives(plan), constraints=constraints(plan))
    latency = {"resnet18": 8.0, "mobilenet_v3_small": 2.0}
    curves = itertools.cycle([[0.5, 0.8, 0.6], [0.4, 0.5, 0.7], [0.9, 0.3, 0.3]])
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        curve = next(curves)
        rows = [{"val_acc": v, "latency_ms": latency[config["model"]], "training_iteration": e + 1}
                for e, v in enumerate(curve)]
        for row in rows[:-1]:
            searcher.on_trial_result(f"t{i}", row)
        searcher.on_trial_complete(f"t{i}", rows[-1])  # Tune hands a trial's last result only here
    for study, model in zip(searcher.studies, ["resnet18", "mobilenet_v3_small"]):
        trials = study.study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
        assert sorted(t.values[0] for t in trials) == [0.7, 0.8, 0.9]  # each trial's best epoch
        assert all(t.values[1] == latency[model] for t in trials)
        feasible = latency[model] <= 5
        assert all((t.constraints["latency_ms.max"] <= 0) == feasible for t in trials)
        assert len(study.study.best_trials) == (1 if feasible else 0)  # Optuna leaves infeasible trials out
