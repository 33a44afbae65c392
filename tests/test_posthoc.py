"""Model soups, post-hoc ensemble selection and temperature scaling (tlsweep.posthoc): the algorithms on tiny
models and logits, then one real tiny sweep → soups, ensemble, report rows, predict and export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tlsweep.posthoc import calibration
from tlsweep.posthoc.selection import greedy_selection
from tlsweep.posthoc.soup import (
    average_states,
    greedy_soup,
    incompatibility,
    recompute_batchnorm,
    uniform_soup,
)

from .conftest import trial_config_for

_BUILT: dict = {}


def _checkpoint(shapes_root, model: dict | None = None, **overrides) -> dict:
    """A checkpoint dict of an untrained model (one build per architecture; the config varies)."""
    from tlsweep.models import build_model

    config = trial_config_for(shapes_root, model=model or {"name": "mobilenet_v3_small", "weights": "none"},
                              **overrides)
    key = json.dumps(config.model.to_dict(), sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = build_model(config.model, 3, config.freeze_depth).state_dict()
    return {"model": _BUILT[key], "config": config.to_dict(), "classes": ["a", "b", "c"]}


def test_averaging_two_copies_of_one_model_returns_that_model(shapes_root):
    from tlsweep.report.evaluate import rebuild_model

    state = _checkpoint(shapes_root)
    averaged = average_states([state["model"], state["model"]])
    assert averaged.keys() == state["model"].keys()
    for k, v in state["model"].items():
        assert torch.equal(averaged[k], v), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rebuild_model(state)(x), rebuild_model({**state, "model": averaged})(x), atol=1e-6)
    half = average_states([state["model"], {k: v * 3 if v.is_floating_point() else v
                                            for k, v in state["model"].items()}])
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.abs().sum() > 0)
    assert torch.allclose(half[name], 2 * state["model"][name])


def test_soups_refuse_other_architectures_and_weights_with_a_reason(shapes_root, tmp_path):
    base = _checkpoint(shapes_root)
    other_backbone = _checkpoint(shapes_root, {"name": "resnet18", "weights": "none"}, model_label="resnet18")
    weights = torch.save(base["model"], tmp_path / "w.pt") or str(tmp_path / "w.pt")
    other_weights = {**base, "config": {**base["config"], "model": {**base["config"]["model"], "weights": weights}}}
    other_head = _checkpoint(shapes_root, {"name": "mobilenet_v3_small", "weights": "none",
                                           "head": {"hidden": [8]}})
    other_size = {**base, "config": {**base["config"], "data": {**base["config"]["data"], "image_size": 48}}}
    assert incompatibility(base, _checkpoint(shapes_root, lr=0.5)) is None
    assert "backbone differs" in incompatibility(base, other_backbone)
    assert "pretrained weights differ" in incompatibility(base, other_weights)
    assert "head architecture differs" in incompatibility(base, other_head)
    assert "image size differs" in incompatibility(base, other_size)
    tampered = {**base, "model": {k: v for k, v in base["model"].items() if not k.startswith("head")}}
    assert "architecture differs" in incompatibility(base, tampered)

    cands = [base, other_backbone, other_weights, other_head, _checkpoint(shapes_root, lr=0.5)]
    soup = greedy_soup(cands, [0.9, 0.8, 0.8, 0.8, 0.7], lambda state: (state, 0.95))
    assert set(soup.refused) == {1, 2, 3} and soup.ingredients == [0, 4] and soup.tried == 2
    assert "pretrained weights differ" in soup.refused[2]


def test_a_greedy_soup_is_never_below_its_first_ingredient_on_val(shapes_root):
    cands = [_checkpoint(shapes_root, lr=lr) for lr in (1e-3, 2e-3, 3e-3, 4e-3)]
    scores = iter([0.5, 0.8, 0.6])  # soup accuracies as ingredients 1, 2, 3 are tried
    soup = greedy_soup(cands, [0.7, 0.6, 0.6, 0.5], lambda state: (state, next(scores)))
    assert soup.val_acc >= 0.7 and soup.ingredients == [0, 2] and soup.val_acc == 0.8
    worse = greedy_soup(cands, [0.7, 0.6, 0.6, 0.5], lambda state: (state, 0.1))
    assert worse.ingredients == [0] and worse.val_acc == 0.7
    assert all(torch.equal(worse.state[k], cands[0]["model"][k]) for k in worse.state)  # the first, untouched
    uniform = uniform_soup(cands, lambda state: (state, 0.4))
    assert uniform.ingredients == [0, 1, 2, 3] and uniform.accepted == 4


def test_batchnorm_statistics_are_recomputed_from_the_given_images():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    net[1].running_mean.fill_(100.0)
    images = torch.randn(16, 3, 4, 4) + 5
    assert recompute_batchnorm(net, [images[:8], images[8:]]) == 16
    with torch.no_grad():
        expected = net[0](images).mean(dim=(0, 2, 3))
    assert torch.allclose(net[1].running_mean, expected, atol=1e-4) and not net.training
    assert net[1].momentum == 0.1  # restored


def test_ensemble_selection_weights_sum_to_one_and_beat_members_on_val():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    probs = []
    for _ in range(5):  # each candidate right on a different 60% of the images, confident and noisy
        right = rng.random(300) < 0.6
        guess = np.where(right, labels, rng.integers(0, 4, 300))
        p = rng.dirichlet(np.ones(4), 300) * 0.3
        p[np.arange(300), guess] += 0.7
        probs.append(p / p.sum(axis=1, keepdims=True))
    sel = greedy_selection(probs, labels, max_steps=10)
    assert sum(sel.weights) == pytest.approx(1.0) and len(sel.members) == len(set(sel.members)) >= 2
    single = max(float((p.argmax(1) == labels).mean()) for p in probs)
    assert sel.val_acc >= single and sel.steps <= 10 and len(sel.trace) == 10


def test_ensemble_selection_does_not_add_a_member_for_one_validation_image():
    """A near-uniform candidate whose one sure guess turns one more image right is noise, not a member."""
    labels = np.full(100, 2)
    good = np.full((100, 4), 0.1)
    good[:, 2] = 0.7
    good[90:] = [0.15, 0.4, 0.35, 0.1]  # wrong on the last ten, narrowly
    flat = np.full((100, 4), 0.25)  # argmax of a tie: class 0, wrong
    flat[95] = [0.1, 0.1, 0.7, 0.1]  # right on one of them
    sel = greedy_selection([good, flat], labels, max_steps=5)
    assert max(sel.trace) == pytest.approx(0.91)  # adding it gains exactly one image ...
    assert sel.members == (0,) and sel.weights == (1.0,) and sel.val_acc == pytest.approx(0.90)  # ... not kept


def test_the_temperature_of_an_over_confident_model_is_above_one_and_lowers_ece():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 2000)
    logits = rng.normal(size=(2000, 5))
    right = rng.random(2000) < 0.7
    logits[np.arange(2000), np.where(right, labels, (labels + 1) % 5)] += 3.0
    over = logits * 6  # the same ranking, far too sure
    t = calibration.fit_temperature(over, labels)
    assert t > 1
    assert calibration.ece(calibration.softmax(over, t), labels) < calibration.ece(calibration.softmax(over), labels)
    assert calibration.nll(over, labels, t) < calibration.nll(over, labels)


def test_ece_of_known_cases():
    labels = np.array([0, 1, 0, 1])
    sure = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # confidence 1, 3 of 4 right
    assert calibration.ece(sure, labels) == pytest.approx(0.25)
    assert calibration.ece(sure[:3], labels[:3]) == pytest.approx(0.0)
    rel = calibration.reliability(sure, labels)
    assert rel.counts.sum() == 4 and rel.counts[-1] == 4 and len(rel.counts) == calibration.BINS


def test_shared_head_init_gives_every_trial_of_a_model_the_same_head(shapes_root):
    from tlsweep.models import build_model
    from tlsweep.models.heads import head_seed, reseed_head

    def head(lr: float, mode: str, label: str = "mobilenet_v3_small"):
        c = trial_config_for(shapes_root, model={"name": "mobilenet_v3_small"}, model_label=label, lr=lr,
                             head_init=mode)
        torch.manual_seed(int(lr * 1e4))  # a different global RNG state per trial
        net = reseed_head(build_model(c.model, 3), head_seed(c))
        return net.head.weight.detach().clone(), torch.rand(1)

    (a, ra), (b, rb) = head(1e-3, "shared"), head(2e-3, "shared")
    assert torch.equal(a, b) and not torch.equal(ra, rb)  # same head; the global RNG goes on as before
    assert not torch.equal(a, head(1e-3, "shared", "other")[0])
    assert not torch.equal(head(1e-3, "per_trial")[0], head(2e-3, "per_trial")[0])
    assert not torch.equal(head(1e-3, "default")[0], head(2e-3, "default")[0])


def test_posthoc_options_validate_and_reach_the_trial_config(spec_dict):
    from tlsweep.config.spec import SpecError, parse_spec

    plan = parse_spec({**spec_dict, "posthoc": {"top_k": 3, "max_steps": 5, "head_init": "shared"}}).plan()
    assert (plan.posthoc.top_k, plan.posthoc.max_steps, plan.posthoc.enabled) == (3, 5, True)
    assert plan.trial_config({"model": "resnet18", "lr": 1e-3}).head_init == "shared"
    assert type(plan).from_dict(json.loads(json.dumps(plan.to_dict()))).posthoc == plan.posthoc
    with pytest.raises(SpecError, match="head_init"):
        parse_spec({**spec_dict, "posthoc": {"head_init": "random"}})
    with pytest.raises(SpecError, match="top_k"):
        parse_spec({**spec_dict, "posthoc": {"top_k": 0}})


@pytest.fixture(scope="module")
def soup_sweep(shapes_root, tmp_path_factory):
    """A real tiny Ray sweep: two one-epoch trials (one shared head init) of each of two heads."""
    import ray

    from tlsweep.config.spec import parse_spec
    from tlsweep.sweep.runner import run_sweep

    storage = tmp_path_factory.mktemp("results") / "soup"
    spec = parse_spec({
        "name": "soup", "data": {"root": str(shapes_root), "image_size": 32, "augment": "none"}, "weights": "none",
        "models": ["mobilenet_v3_small", {"name": "mobilenet_v3_small", "id": "mnv3-mlp", "head": {"hidden": [16]}}],
        "search": {"lr": {"grid": [3e-3, 1e-2]}, "batch_size": 16, "optimizer": "adam", "lr_scheduler": "none"},
        "epochs": 1, "scheduler": {"type": "fifo"}, "num_samples": 1, "checkpoints": {"num_to_keep": 1},
        "posthoc": {"top_k": 4, "max_steps": 6, "head_init": "shared", "bn_images": 64},
        "storage": str(storage)})
    try:
        run_sweep(spec)
    finally:
        ray.shutdown()
    return storage


@pytest.mark.slow
def test_soup_command_builds_soups_and_an_ensemble_scored_on_test(soup_sweep, tmp_path):
    from typer.testing import CliRunner

    from tlsweep.cli import app

    out = tmp_path / "posthoc"
    run = CliRunner().invoke(app, ["soup", str(soup_sweep), "--out", str(out), "--json"])
    assert run.exit_code == 0, run.output
    rows = pd.DataFrame(json.loads(run.output)["rows"]).set_index("model")
    assert set(rows["kind"]) == {"single", "soup (greedy)", "soup (uniform)", "ensemble (post-hoc)"}
    info = json.loads((out / "posthoc.json").read_text())
    greedy = info["results"]["mobilenet_v3_small greedy soup"]
    assert greedy["ingredients_tried"] == 2 and 1 <= greedy["ingredients_accepted"] <= 2
    first_val = greedy["trace"][0][1]
    assert rows.loc["mobilenet_v3_small greedy soup", "val_acc"] >= first_val
    assert "mobilenet_v3_small greedy soup" in rows.index and "mnv3-mlp greedy soup" in rows.index
    ens = json.loads((out / "posthoc.json").read_text())["results"]["post-hoc ensemble"]
    assert sum(ens["weights"]) == pytest.approx(1.0) and len(ens["candidates"]) == 4
    state = torch.load(out / "ensemble" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["kind"] == "posthoc_ensemble" and sum(state["weights"]) == pytest.approx(1.0)
    assert (rows["test_acc_ci_low"] <= rows["test_acc"]).all() and (rows["test_acc"] <= rows["test_acc_ci_high"]).all()
    assert (rows["temperature"] > 0).all() and rows["ece_test"].between(0, 1).all()
    assert rows.loc["post-hoc ensemble", "total_params"] >= rows["total_params"].min()
    assert rows["p_vs_best"].drop(rows.index[rows["group"] == "best"]).between(0, 1).all()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["soup-mobilenet_v3_small-greedy", "ensemble"])
def test_predict_and_export_of_soup_and_ensemble_checkpoints_match_pytorch(soup_sweep, shapes_root, which, tmp_path):
    from importlib.util import find_spec

    from tlsweep.deploy.export import export_predictor
    from tlsweep.deploy.predict import image_files, load_predictor
    from tlsweep.posthoc.combine import build_posthoc

    out = soup_sweep / "posthoc"
    if not (out / which / "checkpoint.pt").is_file():
        build_posthoc(soup_sweep)
    checkpoint = out / which / "checkpoint.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    predictor = load_predictor(checkpoint)
    images = image_files([shapes_root / "test"])[:6]
    batch = predictor.preprocess(images)
    with torch.no_grad():
        logits = predictor.model(batch)
    t = state["temperature"]
    assert predictor.temperature == pytest.approx(t)
    assert torch.allclose(predictor.probabilities(batch), (logits / t).softmax(1), atol=1e-6)
    raw = load_predictor(checkpoint, raw=True)
    assert torch.allclose(raw.probabilities(batch), logits.softmax(1), atol=1e-6)
    preds = predictor.predict(images, top_k=2)
    assert [p.label for p in preds] == [predictor.classes[i] for i in logits.argmax(1).tolist()]
    if which == "ensemble":  # the module's output is the log of the weighted mean of its members' probabilities
        from tlsweep.report.evaluate import rebuild_model

        probs = 0
        for member, w, info in zip(state["members"], state["weights"], predictor.members):
            x = (batch - torch.tensor(info["mean"]).view(1, 3, 1, 1)) / torch.tensor(info["std"]).view(1, 3, 1, 1)
            with torch.no_grad():
                probs = probs + w * rebuild_model(member)(x).softmax(1)
        assert torch.allclose(logits.exp(), probs, atol=1e-5)
    onnx = which == "ensemble" and all(find_spec(m) for m in ("onnx", "onnxruntime"))
    formats = ["torchscript"] + (["onnx"] if onnx else [])
    done = export_predictor(predictor, tmp_path / "export", formats, onnx_exporter="legacy")
    assert [e.format for e in done] == formats and all(e.max_abs_diff <= 1e-3 for e in done)
    scripted = torch.jit.load(str(tmp_path / "export" / "model.pt"))
    with torch.no_grad():
        assert torch.allclose(scripted(batch), logits, atol=1e-4)
    sidecar = json.loads((tmp_path / "export" / "model.json").read_text())
    assert sidecar["temperature"] == pytest.approx(t)
    assert ("ensemble_members" in sidecar) == (which == "ensemble")


@pytest.mark.slow
def test_report_adds_soup_rows_and_calibration_and_can_skip_them(soup_sweep, tmp_path):
    from tlsweep.posthoc.combine import PosthocSkipped, build_posthoc
    from tlsweep.report import collect, make_report
    from tlsweep.report.build import _posthoc

    page = make_report(soup_sweep, tmp_path / "report", cam_images=0, hparams=False)
    board = pd.read_csv(page.parent / "leaderboard.csv", dtype={"trial_id": str})
    singles = board[board["kind"] == "single"]
    assert set(singles["model"]) == {"mobilenet_v3_small", "mnv3-mlp"}
    assert {"soup (greedy)", "soup (uniform)", "ensemble (post-hoc)"} <= set(board["kind"])
    assert singles["ece_test"].between(0, 1).all() and (singles["temperature"] > 0).all()
    html = page.read_text()
    assert "Soups and ensembles" in html and "Calibration" in html and 'id="posthoc"' in html
    assert (page.parent / "figures" / "reliability_mobilenet_v3_small.png").stat().st_size > 0
    assert (page.parent / "posthoc" / "ensemble" / "checkpoint.pt").is_file()

    assert _posthoc(collect(soup_sweep), tmp_path / "off", None, {}, enabled=False) == (None, None)
    with pytest.raises(PosthocSkipped, match="tlsweep soup"):
        build_posthoc(soup_sweep, tmp_path / "over", budget_s=1e-3)
