"""Broken and awkward datasets: clear errors before any trial, warnings for what is merely suspicious."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tlsweep.config.sections import DataConfig
from tlsweep.data import DataError, load_splits
from tlsweep.data.checks import scan_splits
from tlsweep.data.images import open_rgb
from tlsweep.data.synthetic import make_shapes_dataset
from tlsweep.trial.loop import Trial

from .conftest import trial_config_for


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("small") / "shapes", num_classes=3,
                               per_class={"train": 6, "val": 3, "test": 3}, size=16, seed=1)


@pytest.fixture()
def root(small_root, tmp_path):
    """A fresh copy each test may break."""
    return shutil.copytree(small_root, tmp_path / "shapes")


def scan(root, **kw):
    splits = load_splits(DataConfig.model_validate({"root": str(root)}))
    return scan_splits(splits, root, **kw)


def first(root, split="train", cls="circle"):
    return sorted((root / split / cls).iterdir())[0]


@pytest.mark.parametrize("breakage, fragment", [
    (lambda r: shutil.rmtree(r), "does not exist or is not a folder"),
    (lambda r: shutil.rmtree(r / "test"), "has train/ but not test/"),
    (lambda r: (r / "val" / "circle").rename(r / "val" / "circles"), "differ from train's"),
    (lambda r: [shutil.rmtree(r / s / c) for s in ("train", "val", "test") for c in ("square", "triangle")],
     "classification needs at least 2"),
])
def test_structural_problems_raise_data_error(root, breakage, fragment):
    breakage(root)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace("'", ".")):
        load_splits(DataConfig.model_validate({"root": str(root)}))


def test_clean_dataset_has_no_findings(root):
    report = scan(root)
    assert report.errors == [] and report.warnings == []
    assert report.counts == {"train": 18, "val": 9, "test": 9}


def test_empty_training_class_is_an_error(root):
    for f in (root / "train" / "square").iterdir():
        f.unlink()
    report = scan(root)
    assert any("no usable training image: square" in e for e in report.errors)


def test_non_image_files_are_ignored_with_a_count(root):
    (root / "train" / "circle" / "notes.txt").write_text("hi")
    (root / "val" / ".DS_Store").write_bytes(b"\0")
    report = scan(root)
    assert report.errors == []
    assert any(w.startswith("2 non-image file(s) ignored") and "1 .txt" in w for w in report.warnings)


def test_truncated_image_is_an_error_by_default_and_skipped_on_request(root):
    bad = first(root, "val", "square")
    bad.write_bytes(bad.read_bytes()[:60])
    garbage = root / "train" / "circle" / "zz.png"
    garbage.write_bytes(b"not a png at all")
    report = scan(root)
    assert len(report.errors) == 1
    assert "2 unreadable or truncated image(s)" in report.errors[0]
    assert str(bad) in report.errors[0] and str(garbage) in report.errors[0]
    assert "data.on_bad_image: skip" in report.errors[0]

    report = scan(root, on_bad_image="skip")
    assert report.errors == [] and sorted(report.skip_files) == sorted([str(bad), str(garbage)])
    splits = load_splits(DataConfig.model_validate({"root": str(root), "skip_files": report.skip_files}))
    assert splits.sizes() == {"train": 18, "val": 8, "test": 9}
    assert all(p not in report.skip_files for ds in (splits.train, splits.val) for p, _ in ds.samples)


def test_modes_converted_and_16_bit_scaled_not_clipped(root):
    folder = root / "train" / "circle"
    Image.new("L", (16, 16), 90).save(folder / "grey.png")
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(folder / "clear.png")
    Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16)).save(folder / "deep.png")
    report = scan(root)
    assert report.errors == []
    converted = next(w for w in report.warnings if w.startswith("converted to RGB"))
    assert "1 L image(s)" in converted and "1 RGBA image(s)" in converted and "I;16" in converted
    assert open_rgb(folder / "grey.png").getpixel((0, 0)) == (90, 90, 90)
    assert open_rgb(folder / "clear.png").getpixel((0, 0)) == (255, 255, 255)  # transparent → white
    assert open_rgb(folder / "deep.png").getpixel((0, 0)) == (128, 128, 128)


def test_very_large_images_are_reported_and_downscaled(root):
    big = root / "train" / "circle" / "big.jpg"
    Image.new("RGB", (900, 300), (10, 200, 30)).save(big)
    report = scan(root, max_side=256)
    assert any("1 image(s) larger than 256 px are downscaled" in w for w in report.warnings)
    img = open_rgb(big, 256)
    assert max(img.size) <= 256 and img.mode == "RGB"
    assert open_rgb(big).size == (900, 300)


def test_duplicates_across_splits_are_counted(root):
    shutil.copy(first(root, "train"), root / "val" / "circle" / "copy1.png")
    shutil.copy(first(root, "train", "square"), root / "test" / "square" / "copy2.png")
    report = scan(root)
    leak = next(w for w in report.warnings if "identical image(s)" in w)
    assert leak.startswith("2 identical image(s) appear in more than one split")
    assert "1 in train+val" in leak and "1 in test+train" in leak


def test_imbalance_warns_and_class_weighted_loss_weighs_rare_classes(root):
    for f in sorted((root / "train" / "square").iterdir())[2:]:
        f.unlink()
    report = scan(root)
    assert any("imbalanced" in w and "class_weighted_loss" in w for w in report.warnings)
    trial = Trial(trial_config_for(root, epochs=1, class_weighted_loss=True, batch_size=4,
                                   model={"name": "mobilenet_v3_small", "weights": "none"}))
    weights = trial.loss_fn.weight
    assert weights is not None
    assert torch.allclose(weights, torch.tensor([14 / 18, 14 / 6, 14 / 18]))  # n / (k · count)
    loss = trial.loss_fn(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(np.log(3))  # weighted mean of equal per-sample losses


def test_cli_lists_skipped_bad_images_in_a_warning(root, tmp_path):
    """README: ``data.on_bad_image: skip`` leaves them out instead (a warning lists them)."""
    import yaml
    from typer.testing import CliRunner

    from tlsweep.cli import app

    bad = first(root, "train", "circle")
    bad.write_bytes(bad.read_bytes()[:60])
    sweep = tmp_path / "skip.yaml"
    spec = {"name": "skip", "data": {"root": str(root), "image_size": 16}, "weights": "none",
            "models": ["mobilenet_v3_small"], "search": {"batch_size": 4}, "storage": str(tmp_path / "out")}
    sweep.write_text(yaml.safe_dump(spec))
    refused = CliRunner().invoke(app, ["validate", "--data", str(sweep)])
    assert refused.exit_code == 2 and str(bad) in refused.output
    sweep.write_text(yaml.safe_dump({**spec, "data": {**spec["data"], "on_bad_image": "skip"}}))
    ok = CliRunner().invoke(app, ["validate", "--data", str(sweep)])
    assert ok.exit_code == 0, ok.output
    warnings = [line for line in ok.output.splitlines() if line.startswith("warning:")]
    assert any("1 unreadable or truncated image(s) left out" in w and str(bad) in w for w in warnings), ok.output
