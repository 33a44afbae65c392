"""Predict and export from real (tiny, Ray-free) checkpoints: predictions match the trained model, folders give
CSVs, sweep/trial folders resolve to their best checkpoint, TorchScript/ONNX outputs match PyTorch."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tlsweep.deploy.export import ExportError, export_checkpoint
from tlsweep.deploy.predict import PredictError, image_files, load_predictor, write_csv
from tlsweep.results.checkpoints import CheckpointError, resolve_checkpoint
from tlsweep.trial.loop import CHECKPOINT_FILE, Trial

from .conftest import trial_config_for

ENSEMBLE = {"ensemble": ["resnet18", "mobilenet_v3_small"], "fusion": "logits", "weights": "none"}


@pytest.fixture(scope="module")
def trained(shapes_root, tmp_path_factory):
    """resnet18 trained one epoch at 32 px, saved; the live Trial is kept to compare against."""
    torch.set_num_threads(1)
    trial = Trial(trial_config_for(shapes_root, epochs=1))
    list(trial.run())
    path = trial.save(tmp_path_factory.mktemp("ck") / "checkpoint_000000")
    return trial, path


def untrained_checkpoint(shapes_root, directory, model: dict, label: str):
    return Trial(trial_config_for(shapes_root, model=model, model_label=label, epochs=1)).save(directory)


def test_predict_matches_trained_model(trained, shapes_root):
    trial, path = trained
    predictor = load_predictor(path.parent)
    assert predictor.classes == trial.classes == ["circle", "square", "triangle"]
    assert predictor.image_size == 32 and predictor.model_label == "resnet18"
    files = sorted((shapes_root / "test").rglob("*.png"))[::6]
    preds = predictor.predict(files, top_k=3)
    assert [p.path for p in preds] == [str(f) for f in files]
    for p in preds:
        assert [c for c, _ in p.top_k] and {c for c, _ in p.top_k} == set(trial.classes)
        assert sum(q for _, q in p.top_k) == pytest.approx(1.0, abs=1e-5)
        assert p.top_k[0] == (p.label, p.probability)
        assert [q for _, q in p.top_k] == sorted((q for _, q in p.top_k), reverse=True)
    # same preprocessing as the trial's validation loader, same weights as the live model
    from tlsweep.data.transforms import build_transform

    val_tf = build_transform(trial.config.data.image_size)  # the eval transform (cached val path: test_cache)
    from PIL import Image

    batch = torch.stack([val_tf(Image.open(f).convert("RGB")) for f in files])
    assert torch.equal(predictor.preprocess(files), batch)
    trial.model.eval()
    with torch.no_grad():
        expected = trial.model(batch).softmax(1)
    assert [trial.classes[i] for i in expected.argmax(1).tolist()] == [p.label for p in preds]
    np.testing.assert_allclose([p.probability for p in preds], expected.max(1).values.numpy(), atol=1e-5)
    assert predictor.predict(files, top_k=1)[0].top_k == preds[0].top_k[:1]


def test_folder_to_csv(trained, shapes_root, tmp_path):
    _, path = trained
    files = image_files([shapes_root / "test"])
    assert len(files) == 36 and all(f.suffix == ".png" for f in files)
    preds = load_predictor(path).predict(files, top_k=2, batch_size=7)
    out = write_csv(preds, tmp_path / "sub" / "preds.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 36
    assert list(rows[0]) == ["path", "predicted", "probability", "top_k"]
    assert rows[0]["top_k"].startswith(f"{rows[0]['predicted']}:") and rows[0]["top_k"].count(";") == 1
    with pytest.raises(PredictError, match="no such image"):
        image_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match="no image files"):
        image_files([tmp_path / "empty"])


def _fake_trial(storage, name, model, accs, checkpoint):
    """A Tune-like trial folder: params.json, result.json rows naming checkpoint folders."""
    trial = storage / name
    rows = []
    for i, acc in enumerate(accs, 1):
        ck = trial / f"checkpoint_{i - 1:06d}"
        ck.mkdir(parents=True)
        shutil.copy(checkpoint, ck / CHECKPOINT_FILE)
        rows.append({"training_iteration": i, "val_acc": acc, "val_loss": 1 - acc, "trial_id": name,
                     "checkpoint_dir_name": ck.name})
    (trial / "params.json").write_text(json.dumps({"model": model, "lr": 1e-3}))
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows))
    return trial


def test_resolve_trial_and_sweep_folders(trained, tmp_path):
    _, path = trained
    storage = tmp_path / "sweep"
    a = _fake_trial(storage, "a_1", "resnet18", [0.5, 0.9, 0.7], path)
    b = _fake_trial(storage, "b_2", "mobilenet_v3_small", [0.6, 0.8], path)
    # no spec yet: a trial folder gives its last checkpoint
    assert resolve_checkpoint(a).path == a / "checkpoint_000002" / CHECKPOINT_FILE
    from tlsweep.config.spec import parse_spec
    from tlsweep.results.layout import write_plan

    write_plan(parse_spec({"name": "sweep", "data": {"root": str(tmp_path)}, "weights": "none", "epochs": 3,
                           "models": ["resnet18", "mobilenet_v3_small"], "storage": str(storage)}).plan())
    assert resolve_checkpoint(a).path == a / "checkpoint_000001" / CHECKPOINT_FILE
    best = resolve_checkpoint(storage)
    assert best.path == a / "checkpoint_000001" / CHECKPOINT_FILE and "resnet18" in best.how
    assert resolve_checkpoint(storage, "mobilenet_v3_small").path == b / "checkpoint_000001" / CHECKPOINT_FILE
    with pytest.raises(CheckpointError, match="models: mobilenet_v3_small, resnet18"):
        resolve_checkpoint(storage, "vgg11")
    with pytest.raises(CheckpointError, match="--model needs a sweep"):
        resolve_checkpoint(a, "resnet18")
    with pytest.raises(CheckpointError, match="not a checkpoint file"):
        resolve_checkpoint(tmp_path)
    assert load_predictor(storage).checkpoint.path == best.path


@pytest.mark.parametrize("model, label, formats, exporter, normalize", [
    ({"name": "resnet18", "weights": "none"}, "resnet18", ["torchscript", "onnx"], "dynamo", False),
    ({"name": "mobilenet_v3_small", "weights": "none"}, "mnv3", ["torchscript", "onnx"], "legacy", True),
    (ENSEMBLE, "resnet18+mnv3-logits", ["torchscript", "onnx"], "legacy", False),
])
def test_export_matches_pytorch(shapes_root, tmp_path, model, label, formats, exporter, normalize):
    ck = untrained_checkpoint(shapes_root, tmp_path / "ck", model, label)
    done = export_checkpoint(ck, tmp_path / "out", formats, include_normalization=normalize,
                             onnx_exporter=exporter, tolerance=1e-4)
    assert [e.format for e in done] == formats
    assert all(e.path.is_file() and e.max_abs_diff <= 1e-4 for e in done)
    side = json.loads((tmp_path / "out" / "model.json").read_text())
    assert side["classes"] == ["circle", "square", "triangle"] and side["image_size"] == 32
    assert side["model_label"] == label and side["normalization_included"] is normalize
    assert len(side["mean"]) == len(side["std"]) == 3 and set(side["files"]) == set(formats)


def test_onnx_with_normalization_reproduces_predict(trained, shapes_root, tmp_path):
    """Sidecar recipe (resize, 0-1 pixels) + the ONNX model = the Predictor's probabilities, at batch size 1."""
    import onnxruntime
    from torchvision.transforms import v2

    _, path = trained
    export_checkpoint(path, tmp_path, ["onnx"], include_normalization=True, onnx_exporter="legacy")
    side = json.loads((tmp_path / "model.json").read_text())
    session = onnxruntime.InferenceSession(str(tmp_path / side["files"]["onnx"]))
    files = sorted((shapes_root / "val").rglob("*.png"))[:1]
    from PIL import Image

    pixels = v2.Compose([v2.ToImage(), v2.Resize((side["image_size"],) * 2, antialias=True),
                         v2.ToDtype(torch.float32, scale=True)])(Image.open(files[0]).convert("RGB"))
    logits = session.run(None, {"images": pixels[None].numpy()})[0]
    probs = torch.from_numpy(logits).softmax(1)[0]
    pred = load_predictor(path).predict(files, top_k=3)[0]
    assert side["classes"][int(probs.argmax())] == pred.label
    assert float(probs.max()) == pytest.approx(pred.probability, abs=1e-4)


def test_export_fails_above_tolerance(trained, tmp_path):
    _, path = trained
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_checkpoint(path, tmp_path, ["torchscript"], tolerance=-1.0)
    with pytest.raises(ExportError, match="unknown format"):
        export_checkpoint(path, tmp_path, ["tflite"])


@pytest.mark.slow
@pytest.mark.parametrize("model", [{"name": "mobilenet_v3_small", "weights": "none"}, ENSEMBLE])
def test_onnx_dynamo_exporter(shapes_root, tmp_path, model):
    ck = untrained_checkpoint(shapes_root, tmp_path / "ck", model, "m")
    (done,) = export_checkpoint(ck, tmp_path / "out", ["onnx"], onnx_exporter="dynamo", tolerance=1e-4)
    assert done.max_abs_diff <= 1e-4


def test_cli_predict_and_export(trained, shapes_root, tmp_path):
    from tlsweep.cli import app

    trial, path = trained
    runner = CliRunner()
    bad = runner.invoke(app, ["predict", str(tmp_path / "nope"), str(shapes_root / "test")])
    assert bad.exit_code == 2 and "no such file or folder" in bad.output
    bad = runner.invoke(app, ["predict", str(path), str(tmp_path / "nope.png")])
    assert bad.exit_code == 2 and "no such image" in bad.output
    ok = runner.invoke(app, ["predict", str(path), str(shapes_root / "val"), "--out", str(tmp_path / "p.csv"),
                             "--top-k", "2"])
    assert ok.exit_code == 0, ok.output
    assert len(list(csv.DictReader((tmp_path / "p.csv").open()))) == 36
    ok = runner.invoke(app, ["predict", str(path), str(next((shapes_root / "val").rglob("*.png")))])
    assert ok.exit_code == 0 and any(c in ok.output for c in ("circle", "square", "triangle"))
    bad = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "x"), "--format", "tflite"],
                        env={"COLUMNS": "250"})
    assert bad.exit_code == 2 and "'tflite' is not one of 'torchscript', 'onnx', 'both'" in bad.output
    bad = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "x"), "--model", "resnet18"])
    assert bad.exit_code == 2 and "--model needs a sweep" in bad.output
    bad = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "x"), "--format", "torchscript",
                              "--tolerance", "-1"])
    assert bad.exit_code == 1 and "differ from PyTorch" in bad.output
    ok = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "ts"), "--format", "torchscript"])
    assert ok.exit_code == 0 and (tmp_path / "ts" / "model.pt").is_file() and "max abs diff" in ok.output
    scripted = torch.jit.load(str(tmp_path / "ts" / "model.pt"))  # a fresh load, as a user would
    batch = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # normalized, another batch size
    with torch.no_grad():
        expected = trial.model.eval()(batch)
        got = scripted(batch)
    assert got.shape == (5, 3) and torch.allclose(got, expected, atol=1e-4)
