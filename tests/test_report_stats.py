"""Report statistics, importance, cost, CAM layer choice and summary, checked against direct computations
(closed forms, sums over the records, a plain forward pass), without Ray."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tlsweep.config.sections import ModelConfig
from tlsweep.report.collect import Sweep, TrialRecord


def cp_closed_form(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson bounds from the beta quantiles (a different route than binomtest)."""
    from scipy.stats import beta

    a = (1 - level) / 2
    return (0.0 if k == 0 else beta.ppf(a, k, n - k + 1)), (1.0 if k == n else beta.ppf(1 - a, k + 1, n - k))


def mcnemar_direct(only_a: int, only_b: int) -> float:
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def test_accuracy_interval_holds_at_the_edges():
    from tlsweep.report.stats import accuracy_interval

    low, high = accuracy_interval(40, 40)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 40), abs=1e-9)  # (α/2)^(1/n)
    assert 0.91 < low < 0.92
    low, high = accuracy_interval(0, 40)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 40), abs=1e-9)
    # R: binom.test(20, 40)$conf.int = 0.3380178 0.6619822
    assert accuracy_interval(20, 40) == pytest.approx((0.3380178, 0.6619822), abs=1e-6)
    for k, n in ((1, 12), (7, 12), (35, 40), (199, 200)):
        assert accuracy_interval(k, n) == pytest.approx(cp_closed_form(k, n), abs=1e-9)
    assert all(math.isnan(v) for v in accuracy_interval(0, 0))


def test_macro_f1_batch_matches_sklearn_and_bootstrap_brackets_it():
    from sklearn.metrics import f1_score

    from tlsweep.report.stats import macro_f1_batch, macro_f1_interval

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    preds = np.where(rng.random(120) < 0.7, labels, rng.integers(0, 5, 120))  # class 4 only predicted
    for y, p in ((labels, preds), (labels[labels != 2], preds[labels != 2])):  # also a class never true
        assert macro_f1_batch(y, p, 5) == pytest.approx(f1_score(y, p, labels=range(5), average="macro",
                                                                 zero_division=0))
    f1 = macro_f1_batch(labels, preds, 5)
    low, high = macro_f1_interval(labels, preds, 5)
    assert low < f1 < high and high - low > 0.02
    assert macro_f1_interval(labels, preds, 5) == (low, high)  # seeded


def test_mcnemar_exact_against_binomial_sum():
    from tlsweep.report.stats import mcnemar_exact

    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.random(60) < rng.random(), rng.random(60) < rng.random()
        only_a, only_b, p = mcnemar_exact(a, b)
        assert (only_a, only_b) == (int((a & ~b).sum()), int((~a & b).sum()))
        assert p == pytest.approx(mcnemar_direct(only_a, only_b), rel=1e-9)
    assert mcnemar_exact(np.ones(5, bool), np.ones(5, bool)) == (0, 0, 1.0)
    with pytest.raises(ValueError):
        mcnemar_exact(np.ones(5), np.ones(4))


def test_holm_step_down():
    from tlsweep.report.stats import holm

    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, 0.9]).tolist() == pytest.approx([0.4, 0.9])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step
    assert holm([]).tolist() == []


def test_compare_to_best_groups_and_holm():
    from tlsweep.report.stats import compare_to_best, holm

    n = 80
    best = np.arange(n) < 60  # 60/80
    tied = best.copy()
    tied[[0, 1, 70]] = ~tied[[0, 1, 70]]  # 2 only-best, 1 only-tied
    worse = np.arange(n) < 30
    better = np.ones(n, bool)
    out = compare_to_best({"b": best, "t": tied, "w": worse, "x": better}, "b")
    assert out["b"].group == "best"
    raw = [mcnemar_direct(int((best & ~o).sum()), int((~best & o).sum())) for o in (tied, worse, better)]
    assert [out[m].p for m in "twx"] == pytest.approx(raw)
    assert [out[m].p_holm for m in "twx"] == pytest.approx(holm(raw).tolist())
    assert (out["t"].group, out["w"].group, out["x"].group) == ("tied", "worse", "better")
    assert (out["t"].best_only, out["t"].other_only) == (2, 1)


def test_human_parameter_counts():
    from tlsweep.report.leaderboard import human_count

    assert human_count(2562) == "2.6K"
    assert human_count(11_689_512) == "11.7M"
    assert human_count(999) == "999"
    assert human_count(2_500_000_000) == "2.5B"


def _sides_by_stage(model, size: int) -> dict[str, int]:
    """Spatial side after each resnet stage, by running the backbone's children one by one."""
    bb = model.backbone
    x = torch.zeros(1, 3, size, size)
    sides = {}
    with torch.no_grad():
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            x = getattr(bb, name)(x)
            sides[name] = x.shape[-1]
    return sides


@pytest.mark.parametrize("size", [8, 16, 32, 64, 224])
def test_cam_layer_is_deepest_stage_at_least_7x7(size):
    from tlsweep.models import build_model
    from tlsweep.report.cam import cam_layer

    model = build_model(ModelConfig.model_validate({"name": "resnet18", "weights": "none"}), 3, 0.0).eval()
    sides = _sides_by_stage(model, size)
    stages = ["conv1", "layer1", "layer2", "layer3", "layer4"]  # the registry's stages
    wide = [s for s in stages if sides[s] >= 7]
    expected = "layer4" if not wide or sides["layer4"] >= 7 else wide[-1]
    layer = cam_layer(model, size)
    assert layer.name == expected
    assert layer.side == sides[expected]
    assert layer.module is getattr(model.backbone, expected)
    assert cam_layer(model).name == "layer4" and cam_layer(model).side is None  # no size: registry default
    assert model.training is False


def test_cam_layer_of_features_net_and_ensemble():
    from tlsweep.models import build_model
    from tlsweep.report.cam import cam_layer

    model = build_model(ModelConfig.model_validate({"name": "mobilenet_v3_small", "weights": "none"}), 3, 0.0)
    layer = cam_layer(model, 32)
    assert model.training  # left as it was
    model.eval()
    sides = {}
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        for i, block in enumerate(model.backbone.features):
            x = block(x)
            sides[f"features.{i}"] = x.shape[-1]
    assert layer.name == [n for n, s in sides.items() if s >= 7][-1] and layer.side >= 7
    ens = build_model(ModelConfig.model_validate({"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "logits", "weights": "none"}),
                      3, 0.0)
    assert cam_layer(ens, 32).name == "layer1"  # the first member's


def test_pick_indices_spreads_over_classes_within_mask():
    from tlsweep.report.camfigs import pick_indices

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    mask = np.array([1, 1, 1, 0, 0, 1, 1, 0, 0, 1], bool)
    picked = pick_indices(labels, 4, among=mask)
    assert picked == [0, 5, 9, 1]
    assert all(mask[picked]) and pick_indices(labels, 3) == [0, 4, 7]


# --- sweeps built from records (the real readers are covered with a real sweep in test_report.py) -----------

SEARCH = {"lr": {"loguniform": [1e-4, 1e-1]}, "batch_size": {"choice": [8, 16]}, "optimizer": "adam",
          "freeze_depth": {"grid": [0, 0.5]}}


def make_sweep(tmp_path: Path, trials: list[TrialRecord], **fields) -> Sweep:
    from tlsweep.config.plan import SweepPlan

    base = {"name": "t", "storage": str(tmp_path), "data": {"root": str(tmp_path)},
            "models_table": {t.model: {"name": "resnet18"} for t in trials}, "search": SEARCH,
            "scheduler": {"metric": "val_acc", "mode": "max"}, "epochs": 3, "resources": {"cpu": 2.0, "gpu": 0.0}}
    return Sweep(tmp_path, SweepPlan.from_dict({**base, **fields}), trials)


def record(tmp_path: Path, i: int, model: str, config: dict, vals: list[float], status: str = "finished",
           start: float = 1000.0, epoch_s: float = 10.0) -> TrialRecord:
    n = len(vals)
    history = pd.DataFrame({"training_iteration": range(1, n + 1), "val_acc": vals,
                            "time_total_s": [epoch_s * (e + 1) for e in range(n)],
                            "timestamp": [start + epoch_s * (e + 1) for e in range(n)]})
    path = tmp_path / f"t{i}_{model}"
    path.mkdir(exist_ok=True)
    return TrialRecord(f"t{i}", model, path, {"model": model, **config}, history, status)


def lr_driven_trials(tmp_path: Path, n: int = 12, model: str = "m") -> list[TrialRecord]:
    """val_acc set by lr alone (batch size and freeze depth alternate independently)."""
    out = []
    for i in range(n):
        lr = 10 ** (-4 + 3 * i / (n - 1))
        acc = 1 - abs(math.log10(lr) + 2.5) / 2
        out.append(record(tmp_path, i, model, {"lr": lr, "batch_size": (8, 16)[i % 2], "optimizer": "adam",
                                               "freeze_depth": (0, 0.5)[(i // 2) % 2]},
                          [acc / 2, acc], start=1000 + 5 * i))
    return out


def direct_importance(trials: list[TrialRecord], params: list[str]) -> dict[str, float]:
    """Optuna's fANOVA on a study built here from the records' configs and best values."""
    import optuna

    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "batch_size": optuna.distributions.CategoricalDistribution([8, 16]),
             "freeze_depth": optuna.distributions.CategoricalDistribution([0, 0.5])}
    study = optuna.create_study(direction="maximize")
    study.add_trials([optuna.trial.create_trial(params={k: t.config[k] for k in dists}, distributions=dists,
                                                value=float(t.history["val_acc"].max())) for t in trials])
    return optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=params)


def test_importance_is_optunas_fanova_on_the_trials(tmp_path):
    from tlsweep.report.importance import model_importance

    trials = lr_driven_trials(tmp_path)
    sweep = make_sweep(tmp_path, trials)
    imp = model_importance(sweep, "m")
    assert imp.trials == 12 and imp.top[0] == "lr" and imp.top[1] > 0.5
    assert sum(imp.importances.values()) == pytest.approx(1.0)
    direct = direct_importance(trials, ["lr", "batch_size", "freeze_depth"])
    assert imp.importances == pytest.approx(dict(direct))
    assert list(imp.importances) == list(direct)


def test_importance_handles_few_trials_constant_params_and_failures(tmp_path):
    from tlsweep.report.importance import model_importance

    trials = lr_driven_trials(tmp_path, 6)
    few = make_sweep(tmp_path, trials[:2])
    assert model_importance(few, "m").importances == {} and "needs 3" in model_importance(few, "m").note
    for t in trials:
        t.config["batch_size"] = 8
    trials[0].status = "diverged"  # left out
    trials[1].status = "error"
    imp = model_importance(make_sweep(tmp_path, trials), "m")
    assert imp.trials == 4 and set(imp.importances) == {"lr", "freeze_depth"} and "batch_size" in imp.note
    same = [record(tmp_path, i, "m", {"lr": 1e-3 * (i + 1), "batch_size": 8, "optimizer": "adam",
                                      "freeze_depth": 0}, [0.5]) for i in range(4)]
    assert "same val_acc" in model_importance(make_sweep(tmp_path, same), "m").note


def test_cost_is_resources_times_trial_time(tmp_path):
    from tlsweep.report.cost import TOTAL, cost_table, sweep_wall_seconds

    trials = lr_driven_trials(tmp_path, 4, "a") + lr_driven_trials(tmp_path, 3, "b")
    trials[-1].history = trials[-1].history.iloc[:1]  # stopped after one epoch
    sweep = make_sweep(tmp_path, trials, model_resources={"b": {"cpu": 4.0, "gpu": 0.5}})
    table = cost_table(sweep).set_index("model")
    seconds = {m: sum(float(t.history["time_total_s"].iloc[-1]) for t in trials if t.model == m) for m in "ab"}
    assert table.loc["a", "cpu_hours"] == pytest.approx(2 * seconds["a"] / 3600)
    assert table.loc["a", "gpu_hours"] == 0
    assert table.loc["b", "cpu_hours"] == pytest.approx(4 * seconds["b"] / 3600)
    assert table.loc["b", "gpu_hours"] == pytest.approx(0.5 * seconds["b"] / 3600)
    assert table.loc[TOTAL, "gpu_hours"] == pytest.approx(0.5 * seconds["b"] / 3600)
    assert table.loc[TOTAL, "trials"] == 7
    ends = [float(t.history["timestamp"].max()) for t in trials]
    starts = [float((t.history["timestamp"] - t.history["time_total_s"]).min()) for t in trials]
    assert sweep_wall_seconds(sweep) == pytest.approx(max(ends) - min(starts))


def test_cost_of_gpu_auto_uses_what_each_trial_recorded(tmp_path):
    """``gpu: auto`` is resolved per cluster: the trial's recorded ``cpus``/``gpus`` count, else no GPU."""
    from tlsweep.report.cost import cost_table

    trials = lr_driven_trials(tmp_path, 2, "a") + lr_driven_trials(tmp_path, 2, "b")
    for t in trials[:2]:
        t.history = t.history.assign(cpus=3.0, gpus=0.25)
    sweep = make_sweep(tmp_path, trials, resources={"cpu": 2.0, "gpu": "auto"})
    table = cost_table(sweep).set_index("model")
    seconds = {m: sum(float(t.history["time_total_s"].iloc[-1]) for t in trials if t.model == m) for m in "ab"}
    assert table.loc["a", "gpu_hours"] == pytest.approx(0.25 * seconds["a"] / 3600)
    assert table.loc["a", "cpu_hours"] == pytest.approx(3 * seconds["a"] / 3600)
    assert table.loc["b", "gpu_hours"] == 0 and table.loc["b", "cpu_hours"] == pytest.approx(2 * seconds["b"] / 3600)


def test_best_so_far_is_the_running_best_in_time_order(tmp_path):
    from tlsweep.report.cost import timeline
    from tlsweep.report.plots import best_so_far, best_so_far_png

    trials = lr_driven_trials(tmp_path, 5)
    trials[2].status = "stopped"
    sweep = make_sweep(tmp_path, trials)
    points, ends = timeline(sweep)
    curve = best_so_far(points, "val_acc", "max")
    assert curve["seconds"].is_monotonic_increasing and len(curve) == 10
    expected, best = [], -np.inf
    for _, row in points.sort_values("seconds", kind="stable").iterrows():
        best = max(best, row["val_acc"])
        expected.append(best)
    assert curve["best"].tolist() == pytest.approx(expected)
    assert ends["stopped"].tolist() == [False, False, True, False, False]
    png = best_so_far_png(points, ends, "val_acc", "max", tmp_path / "bsf.png")
    from PIL import Image

    assert Image.open(png).size[0] > 300


def test_summary_numbers_and_html(tmp_path):
    from tlsweep.report.cost import cost_table
    from tlsweep.report.importance import model_importance
    from tlsweep.report.stats import accuracy_interval, compare_to_best
    from tlsweep.report.summary import summarize, to_html

    trials = lr_driven_trials(tmp_path, 6, "m") + lr_driven_trials(tmp_path, 2, "n")
    sweep = make_sweep(tmp_path, trials)
    correct = {"m": np.arange(50) < 45, "n": np.arange(50) < 44}
    comps = compare_to_best(correct, "m")
    s = summarize("val_acc", "m", 0.9, correct["m"], accuracy_interval(45, 50), comps, model_importance(sweep, "m"),
                  cost_table(sweep), 123.0)
    assert (s.test_correct, s.test_total, s.test_acc) == (45, 50, 0.9)
    assert (s.test_acc_low, s.test_acc_high) == pytest.approx(cp_closed_form(45, 50))
    assert s.tied == ["n"] and s.better == s.worse == []
    direct = direct_importance(trials[:6], ["lr", "batch_size", "freeze_depth"])
    assert (s.top_param, s.top_importance) == max(direct.items(), key=lambda kv: kv[1])
    assert s.trials == 8 and s.wall_seconds == 123.0 and s.val_value == 0.9
    assert s.cpu_hours == pytest.approx(2 * sum(float(t.history["time_total_s"].iloc[-1]) for t in trials) / 3600)
    page = to_html(s)
    for text in ("<b id='winner'>m</b>", "0.900", f"[{s.test_acc_low:.3f}, {s.test_acc_high:.3f}]", "<b>n</b>",
                 f"<b id='top-param'>{s.top_param}</b>", f"{s.top_importance:.0%}", f"{s.cpu_hours:.3g}",
                 "2.0 min"):
        assert text in page, text


def test_hparams_written_only_for_trials_without_tune_events(tmp_path):
    from tlsweep.report.tensorboard import write_hparams

    trials = lr_driven_trials(tmp_path, 3)
    (trials[0].path / "events.out.tfevents.1.host").write_bytes(b"")
    written = write_hparams(make_sweep(tmp_path, trials), tmp_path / "tb")
    assert written == ["t1", "t2"]
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["t1_m", "t2_m"]
    for t in trials:
        (t.path / "events.out.tfevents.1.host").write_bytes(b"")
    assert write_hparams(make_sweep(tmp_path, trials), tmp_path / "tb2") == []
    assert not (tmp_path / "tb2").exists()
