"""Hostile input is answered with a clear error (exit 2, no traceback) and nothing written: a decompression-bomb
PNG, a symbolic link loop in the image folder, a 0-byte or foreign-pickle checkpoint for predict/export, a 10 MB
sweep file, a YAML alias bomb. Any YAML given as a sweep file exits 0 or 2 with a message (hypothesis).
Valid but unusual input works: class folders named with spaces and non-ASCII letters train and predict."""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tlsweep.cli import app
from tlsweep.data.synthetic import make_shapes_dataset


def invoke(*args: str):
    result = CliRunner().invoke(app, list(map(str, args)))
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        f"{args} raised {result.exception!r}:\n{output}"
    assert "Traceback" not in output, output
    return result.exit_code, output


@pytest.fixture()
def small_data(tmp_path):
    return make_shapes_dataset(tmp_path / "data", num_classes=2, per_class={"train": 4, "val": 2, "test": 2},
                               size=16, seed=0)


def sweep_file(folder: Path, root: Path, **fields) -> Path:
    spec = {"name": "hostile", "data": {"root": str(root), "image_size": 16}, "weights": "none",
            "models": ["mobilenet_v3_small"], "search": {"lr": 1e-3, "batch_size": 4}, "epochs": 1,
            "storage": str(folder / "results" / "hostile"), **fields}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A small PNG file whose header declares ``width`` × ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_png_is_a_data_error_naming_the_file(small_data, tmp_path):
    first_class = sorted((small_data / "train").iterdir())[0]
    bomb = png_declaring(first_class / "bomb.png", 50_000, 50_000)
    code, out = invoke("validate", "--data", sweep_file(tmp_path, small_data))
    assert code == 2 and str(bomb) in out and "error" in out.lower(), out
    assert not (tmp_path / "results").exists()


def test_symlink_loop_in_the_image_folder_is_refused_quickly(small_data, tmp_path):
    first_class = sorted((small_data / "train").iterdir())[0]
    (first_class / "loop").symlink_to("..")
    start = time.monotonic()
    code, out = invoke("validate", "--data", sweep_file(tmp_path, small_data))
    assert code == 2 and "symbolic link leads back" in out and str(first_class / "loop") in out, out
    assert time.monotonic() - start < 30


def test_a_link_to_a_folder_elsewhere_is_followed(small_data, tmp_path):
    shutil.move(small_data / "test", tmp_path / "elsewhere")
    (small_data / "test").symlink_to(tmp_path / "elsewhere")
    code, out = invoke("validate", "--data", sweep_file(tmp_path, small_data))
    assert code == 0, out


class Foreign:
    """Unpickling this would run a command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["empty", "pickle", "torch.save"])
def test_unusable_checkpoints_are_refused_by_predict_and_export(tmp_path, kind):
    import torch

    marker, checkpoint = tmp_path / "executed", tmp_path / "checkpoint.pt"
    if kind == "empty":
        checkpoint.write_bytes(b"")
    elif kind == "pickle":
        checkpoint.write_bytes(pickle.dumps({"model": Foreign(marker)}, protocol=2))
    else:
        torch.save({"model": Foreign(marker)}, checkpoint)
    png_declaring(tmp_path / "image.png", 8, 8)
    expected = "empty file (0 bytes)" if kind == "empty" else "refused without running any of it"
    for args in (["predict", checkpoint, tmp_path / "image.png", "--out", tmp_path / "p.csv"],
                 ["export", checkpoint, "--out", tmp_path / "exported"]):
        code, out = invoke(*args)
        assert code == 2 and expected in " ".join(out.split()) and str(checkpoint) in out, out
    assert not marker.exists()
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "exported").exists()


def test_a_10_mb_sweep_file_is_refused_in_seconds(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: x\n" + "".join(f"k{i}: {'v' * 90}\n" for i in range(110_000)))
    start = time.monotonic()
    code, out = invoke("validate", path)
    assert code == 2 and "too large" in out, out
    assert time.monotonic() - start < 5


def test_a_yaml_alias_bomb_is_refused_in_seconds(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: x\nsearch: {lr: {choice: *i}}\n")
    start = time.monotonic()
    code, out = invoke("validate", path)
    assert code == 2 and "aliases" in out, out
    assert time.monotonic() - start < 5


def test_nesting_and_bytes_that_are_not_a_yaml_sweep_are_refused(tmp_path):
    deep, binary = tmp_path / "deep.yaml", tmp_path / "binary.yaml"
    deep.write_text("a: " + "[" * 2000 + "]" * 2000)
    binary.write_bytes(b"name: \xff\xfe\n")
    code, out = invoke("validate", deep)
    assert code == 2 and "nested too deeply" in out, out
    code, out = invoke("validate", binary)
    assert code == 2 and "not UTF-8" in out


# ---- any YAML: exit 0 or 2 with a message, never a traceback -------------------------------------------------

SPEC_KEYS = ["name", "data", "models", "search", "epochs", "num_samples", "scheduler", "searcher", "weights",
             "storage", "resources", "checkpoints", "seed", "max_failures", "objectives", "constraints", "heads"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["resnet18", "asha", "optuna", "none", "auto", "lr"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(SPEC_KEYS + ["lr", "choice", "loguniform", "type", "root"]),
                              st.text(max_size=6)), inner, max_size=4)), max_leaves=12)
documents = st.one_of(
    values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.dictionaries(st.sampled_from(SPEC_KEYS), values, max_size=8).map(yaml.safe_dump),
    st.text(max_size=200))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=documents)
def test_any_yaml_sweep_file_exits_0_or_2_with_a_message(tmp_path, text):
    path = tmp_path / "any.yaml"
    path.write_text(text)
    code, out = invoke("validate", path)
    assert code in (0, 2), out
    if code == 2:
        assert "error" in out.lower() and len(out.strip()) > 10, out


# ---- valid but unusual ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_class_folders_with_spaces_and_non_ascii_letters_train_report_and_predict(tmp_path):
    import pandas as pd
    import ray

    from tlsweep.config.spec import load_spec
    from tlsweep.sweep.runner import run_sweep

    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class={"train": 8, "val": 4, "test": 4},
                               size=16, seed=0)
    names = ["red circle", "carré ü"]
    for split in ("train", "val", "test"):
        for old, new in zip(sorted((root / split).iterdir()), names):
            old.rename(old.with_name(new))
    sweep = sweep_file(tmp_path, root, epochs=1, num_samples=1, scheduler={"type": "fifo"})
    try:
        result = run_sweep(load_spec(sweep), progress="none")
    finally:
        ray.shutdown()
    assert list(result.trials["status"]) == ["finished"]
    storage = tmp_path / "results" / "hostile"
    code, out = invoke("report", storage, "--cam-images", "1")
    assert code == 0, out
    assert (storage / "report" / "trials.csv").is_file()
    code, out = invoke("predict", storage, root / "test" / names[1], "--out", tmp_path / "p.csv")
    assert code == 0, out
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 4 and set(predictions["predicted"]) <= set(names)
    assert all(names[1] in p for p in predictions["path"])
