"""Report on a real tiny sweep: leaderboard picked on val and scored on test, plots, Grad-CAM, HTML in Chromium."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tlsweep.config.sections import DataConfig

from .processes import Processes

MODELS = {"resnet18", "mobilenet_v3_small", "resnet18+mobilenet_v3_small-logits"}
CAM_IMAGES = 4


@pytest.fixture(scope="module")
def sweep_report(shapes_root, tmp_path_factory):
    """One real Ray sweep (3 models × 2 trials, ASHA) and its report."""
    import ray

    from tlsweep.config.spec import parse_spec
    from tlsweep.report import make_report
    from tlsweep.sweep.runner import run_sweep

    storage = tmp_path_factory.mktemp("results") / "tiny"
    spec = parse_spec({
        "name": "tiny", "data": {"root": str(shapes_root), "image_size": 32}, "weights": "none",
        "models": ["resnet18", "mobilenet_v3_small", {"ensemble": ["resnet18", "mobilenet_v3_small"],
                                                      "fusion": "logits"}],
        "search": {"lr": {"loguniform": [1e-3, 1e-2]}, "batch_size": {"choice": [8, 16]},
                   "freeze_depth": {"choice": [0, 0.5]}, "optimizer": "adam", "lr_scheduler": "none"},
        "epochs": 3, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "searcher": {"type": "optuna", "seed": 0}, "num_samples": 2, "storage": str(storage),
        "posthoc": {"enabled": False}})  # soups and ensembles: tests/test_posthoc.py
    try:
        result = run_sweep(spec)
    finally:
        ray.shutdown()
    page = make_report(storage, cam_images=CAM_IMAGES)
    return result, page


def direct_accuracy(checkpoint: str, shapes_root: Path) -> float:
    """Accuracy of a checkpoint on the test folder, computed without the report package."""
    correct = direct_correct(checkpoint, shapes_root)
    return sum(correct) / len(correct)


def direct_correct(checkpoint: str, shapes_root: Path) -> list[bool]:
    """Right or wrong per test image (sorted by class, then file name), without the report package."""
    from tlsweep.config.sections import ModelConfig
    from tlsweep.data.transforms import build_transform
    from tlsweep.models import build_model

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    classes = state["classes"]
    model = build_model(ModelConfig.from_dict(state["config"]["model"]), len(classes), state["config"]["freeze_depth"])
    model.load_state_dict(state["model"])
    model.eval()
    transform = build_transform(32)
    correct = []
    with torch.no_grad():
        for label, name in enumerate(classes):
            for file in sorted((shapes_root / "test" / name).iterdir()):
                x = transform(Image.open(file).convert("RGB")).unsqueeze(0)
                correct.append(model(x).argmax(1).item() == label)
    return correct


def hparams_sessions(folder: Path) -> dict[str, int]:
    """HParams sessions per run folder in every TensorBoard event file under ``folder``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found: dict[str, int] = {}
    for file in folder.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    key = str(file.parent.relative_to(folder))
                    found[key] = found.get(key, 0) + 1
    return found


@pytest.mark.slow
def test_report_writes_all_artifacts(sweep_report):
    _, page = sweep_report
    out = page.parent
    assert page.name == "report.html" and out.name == "report"
    board = pd.read_csv(out / "leaderboard.csv", dtype={"trial_id": str})
    assert set(board["model"]) == MODELS
    assert (board["test_acc_ci_low"] <= board["test_acc"]).all() and (board["test_acc"] <= board["test_acc_ci_high"]).all()
    assert (board["trainable_params"] <= board["total_params"]).all() and (board["latency_ms"] > 0).all()
    assert (board["trials_run"] == 2).all()
    assert board["group"].iloc[0] == "best" and set(board["group"]) <= {"best", "tied", "worse", "better"}
    assert board["p_vs_best"].iloc[1:].between(0, 1).all()
    assert (board["macro_f1_ci_low"] <= board["macro_f1"]).all()
    assert (board["macro_f1"] <= board["macro_f1_ci_high"]).all()
    md = (out / "leaderboard.md").read_text()
    assert all(m in md for m in MODELS) and md.count("\n") == 2 + len(MODELS)
    figures = out / "figures"
    for name in ("all_trials.png", "accuracy_latency.png", "cam_grid.png", "cam_depths.png", "occlusion.png",
                 "parallel_coordinates.png", "best_so_far.png"):
        assert Image.open(figures / name).size[0] > 100, name
    assert len(list(figures.glob("confusion_*.png"))) == 3
    assert len(list(figures.glob("curves_*.png"))) == 3
    reports = json.loads((out / "classification_report.json").read_text())
    assert set(reports) == MODELS and "macro avg" in reports["resnet18"]
    trials = pd.read_csv(out / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 6 and set(trials["status"]) <= {"finished", "stopped"}
    for name in ("summary.json", "cost.csv", "comparisons.csv", "importance.json"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_each_trial_shows_once_in_tensorboard(sweep_report):
    """Tune's logger writes every trial's HParams in its folder; the report adds no second copy."""
    result, page = sweep_report
    sessions = hparams_sessions(Path(result.storage))
    assert sorted(sessions) == sorted(f"{t}_{m}" for t, m in zip(result.trials["trial_id"], result.trials["model"]))
    assert set(sessions.values()) == {1}
    assert not (page.parent / "tensorboard").exists()


@pytest.mark.slow
def test_leaderboard_matches_direct_evaluation_of_val_best_checkpoint(sweep_report, shapes_root):
    result, page = sweep_report
    board = pd.read_csv(page.parent / "leaderboard.csv", dtype={"trial_id": str})
    storage = Path(result.storage)
    for row in board.itertuples():
        assert direct_accuracy(row.checkpoint, shapes_root) == pytest.approx(row.test_acc)
        # the picked checkpoint is the best kept checkpoint of this model by validation accuracy
        kept = []
        for trial_dir in storage.glob(f"*_{row.model}"):
            for line in (trial_dir / "result.json").read_text().splitlines():
                r = json.loads(line)
                if (trial_dir / r["checkpoint_dir_name"] / "checkpoint.pt").is_file():
                    kept.append(r["val_acc"])
        assert row.val_acc == pytest.approx(max(kept))
        state = torch.load(row.checkpoint, map_location="cpu", weights_only=True)
        assert state["history"][-1]["val_acc"] == pytest.approx(row.val_acc)


@pytest.mark.slow
def test_cam_grid_has_images_by_models_panels(sweep_report):
    _, page = sweep_report
    meta = json.loads((page.parent / "figures" / "cam_grid.json").read_text())
    board = pd.read_csv(page.parent / "leaderboard.csv", dtype={"trial_id": str})
    assert meta["rows"] == CAM_IMAGES
    assert meta["columns"] == ["original", *board["model"]]
    assert len(set(meta["labels"])) == 3  # images spread over the classes
    # 32 px: resnet18's layer1 is the deepest stage with an 8×8 map (layer4 is 1×1)
    assert meta["layers"]["resnet18"] == {"name": "layer1", "side": 8}
    assert all(layer["side"] >= 7 for layer in meta["layers"].values())
    width, height = Image.open(page.parent / "figures" / "cam_grid.png").size
    assert width / height == pytest.approx(len(meta["columns"]) / CAM_IMAGES, rel=0.25)


@pytest.mark.slow
def test_cam_maps_vary_galleries_exist_and_intervals_have_width(sweep_report, shapes_root):
    from tlsweep.data import load_splits
    from tlsweep.data.transforms import TransformedDataset, build_transform
    from tlsweep.report.cam import cam_layer, grad_cam
    from tlsweep.report.evaluate import load_model

    result, page = sweep_report
    board = pd.read_csv(page.parent / "leaderboard.csv", dtype={"trial_id": str})
    # Clopper–Pearson intervals have width at 0% and 100% too
    assert ((board["test_acc_ci_high"] - board["test_acc_ci_low"]) > 0).all(), board
    best = board.iloc[0]  # pick order: best validation metric first
    figures = page.parent / "figures"
    assert (figures / "misclassified.png").is_file() == (best["test_acc"] < 1)
    assert (figures / "correct.png").is_file() == (best["test_acc"] > 0)
    model = load_model(best["checkpoint"], 3).eval()
    splits = load_splits(DataConfig.model_validate({"root": str(shapes_root), "image_size": 32}), 0)
    # At this test's 32 px the registry's CAM layer of these backbones is 1×1 (stride 32), a constant map; the
    # report's layer (the deepest stage at least 7×7 at the sweep's size) must show where the evidence is.
    ds = TransformedDataset(splits.test, build_transform(32))
    images = torch.stack([ds[i][0] for i in (0, len(splits.test) // 2, len(splits.test) - 1)])
    layer = cam_layer(model, 32)
    assert layer.side >= 7
    maps = grad_cam(model, images, layer.module, layer.reshape)
    assert maps.shape == (3, 32, 32)
    assert all(m.max() - m.min() > 0.1 for m in maps)  # a map, not a constant


def rendered_dom(page: Path | str, tmp_path: Path, budget_ms: int) -> str:
    """The DOM of ``page`` (a file or a URL) after headless Chromium ran its scripts for ``budget_ms`` of virtual
    time."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium missing: bash scripts/setup.sh test"
    with Processes() as procs:  # Chromium's helper processes end with it
        return procs.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", f"--virtual-time-budget={budget_ms}", "--dump-dom",
             page if isinstance(page, str) else page.as_uri()],
            capture_output=True, text=True, timeout=120).stdout


@pytest.mark.slow
def test_html_renders_in_headless_chromium(sweep_report, tmp_path):
    _, page = sweep_report
    dom = rendered_dom(page, tmp_path, 10000)
    n_img = page.read_text().count("<img ")
    assert n_img >= 10
    assert f'data-images="{n_img}"' in dom, dom[:500]
    assert 'data-broken-images="0"' in dom and 'data-console-errors="0"' in dom
    assert 'id="leaderboard"' in dom and all(m in dom for m in MODELS)
    summary = json.loads((page.parent / "summary.json").read_text())
    assert 'id="summary"' in dom and f'<b id="winner">{summary["winner"]}</b>' in dom
    assert dom.index('id="summary"') < dom.index('id="leaderboard"')
    assert dom.count('class="dataframe sortable"') >= 4


@pytest.mark.slow
def test_summary_matches_direct_computation(sweep_report, shapes_root):
    """Every number of the summary recomputed from the results folder and the checkpoints, without the report."""
    from scipy.stats import beta

    result, page = sweep_report
    out = page.parent
    summary = json.loads((out / "summary.json").read_text())
    storage = Path(result.storage)
    plain = json.loads((storage / "tlsweep_spec.json").read_text())
    rows = {d: [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
            for d in storage.glob("*/") if (d / "result.json").is_file()}
    best_val = {}
    for d, rs in rows.items():
        for r in rs:
            if (d / r["checkpoint_dir_name"] / "checkpoint.pt").is_file():
                model = r["config"]["model"]
                best_val[model] = max(best_val.get(model, -1.0), r["val_acc"])
    top = max(best_val.values())
    assert best_val[summary["winner"]] == top and summary["val_value"] == pytest.approx(top)
    board = pd.read_csv(out / "leaderboard.csv", dtype={"trial_id": str}).set_index("model")
    correct = {m: direct_correct(board.loc[m, "checkpoint"], shapes_root) for m in board.index}
    k, n = sum(correct[summary["winner"]]), len(correct[summary["winner"]])
    assert (summary["test_correct"], summary["test_total"]) == (k, n)
    assert summary["test_acc"] == pytest.approx(k / n)
    low = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    assert (summary["test_acc_low"], summary["test_acc_high"]) == pytest.approx((low, high))
    # McNemar exact (binomial sum over the discordant pairs), Holm over the others
    others = [m for m in board.index if m != summary["winner"]]
    raw = []
    for m in others:
        a, b = correct[summary["winner"]], correct[m]
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        d = only_a + only_b
        tail = sum(math.comb(d, i) for i in range(min(only_a, only_b) + 1)) / 2 ** d
        raw.append(1.0 if d == 0 else min(1.0, 2 * tail))
    order = sorted(range(len(raw)), key=lambda i: raw[i])
    adjusted, running = [0.0] * len(raw), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(raw) - rank) * raw[i]))
        adjusted[i] = running
    for m, p in zip(others, adjusted):
        assert board.loc[m, "p_vs_best"] == pytest.approx(p)
    assert summary["tied"] == [m for m, p in zip(others, adjusted) if p >= 0.05]
    # two done trials per model: too few for importance, said so
    assert summary["top_param"] is None and "needs 3" in summary["importance_note"]
    seconds = sum(rs[-1]["time_total_s"] for rs in rows.values())
    assert summary["cpu_hours"] == pytest.approx(plain["resources"]["cpu"] * seconds / 3600)
    assert summary["gpu_hours"] == 0 and summary["trials"] == len(rows) == 6
    start = min(r["timestamp"] - r["time_total_s"] for rs in rows.values() for r in rs)
    assert summary["wall_seconds"] == pytest.approx(max(r["timestamp"] for rs in rows.values() for r in rs) - start)
    text = page.read_text()
    for value in (f"{summary['test_acc']:.3f}", f"[{low:.3f}, {high:.3f}]", f"{summary['cpu_hours']:.3g}",
                  *summary["tied"]):
        assert value in text, value


def test_report_cli_rejects_folder_without_sweep(tmp_path):
    from typer.testing import CliRunner

    from tlsweep.cli import app

    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2
    assert "tlsweep_spec.json" in res.output


def test_pareto_front_keeps_only_undominated_points():
    from tlsweep.report.plots import pareto_front

    latency = np.array([1.0, 2.0, 3.0, 4.0])
    accuracy = np.array([0.5, 0.4, 0.8, 0.7])
    assert pareto_front(latency, accuracy).tolist() == [0, 2]


@pytest.mark.slow
def test_collect_reads_copied_folder_and_status(sweep_report, tmp_path):
    from tlsweep.report import collect

    result, _ = sweep_report
    copy = tmp_path / "copy"
    shutil.copytree(result.storage, copy, ignore=shutil.ignore_patterns("checkpoint_*", "report"))
    sweep = collect(copy)
    assert len(sweep.trials) == 6
    statuses = {t.trial_id: t.status for t in sweep.trials}
    expected = dict(zip(result.trials["trial_id"], result.trials["status"]))
    assert statuses == expected
    assert all(not t.checkpoints for t in sweep.trials)  # checkpoints were not copied


def test_token_reshapes_for_vit_and_swin_cams():
    from tlsweep.report.cam import RESHAPES

    tokens = torch.arange(2 * 17 * 8, dtype=torch.float32).view(2, 17, 8)  # class token + 4×4 patches
    out = RESHAPES["vit"](tokens)
    assert out.shape == (2, 8, 4, 4) and torch.equal(out[:, :, 0, 0], tokens[:, 1, :])
    conv = torch.zeros(2, 8, 4, 4)
    assert RESHAPES["vit"](conv) is conv
    assert RESHAPES["swin"](torch.zeros(2, 7, 7, 96)).shape == (2, 96, 7, 7)


def test_tables_sort_by_clicked_column_offline(tmp_path):
    """The inline sort script in headless Chromium: numbers with K/M sort as numbers, '-' last, click twice
    to reverse; no network is asked for."""
    from tlsweep.report.html import Section, render, table

    frame = pd.DataFrame({"model": ["a", "b", "c", "d"], "params": ["11.7M", "2.6K", "-", "999"]})
    page = render(tmp_path, "t", "<p>summary</p>", [Section("Params", html=table(frame, "t"))])
    clicks = """<script>var th=document.querySelectorAll('#t th')[1];th.click();
var order=function(){return [].map.call(document.querySelectorAll('#t tbody tr'),function(r){
return r.cells[0].textContent}).join('')};var up=order();th.click();
document.body.setAttribute('data-up',up);document.body.setAttribute('data-down',order());</script></body>"""
    page.write_text(page.read_text().replace("</body>", clicks))
    dom = rendered_dom(page, tmp_path, 5000)
    assert 'data-up="dbac"' in dom and 'data-down="abdc"' in dom, dom[:300]
    assert 'data-console-errors="0"' in dom
    assert "http" not in page.read_text().replace("http-equiv", "")
