"""``tlsweep demo``: prepares data and bundled weights, runs the sweep and writes the report; a failure before the
sweep is reported as itself, never hidden behind a report of a sweep that did not run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tlsweep.cli import app

REPO = Path(__file__).resolve().parents[1]


def demo_file(tmp_path: Path, root, **overrides) -> tuple[Path, Path]:
    storage = tmp_path / "results" / "demo_tiny"
    spec = {"name": "demo_tiny", "data": {"root": str(root), "image_size": 32}, "weights": "none",
            "models": ["mobilenet_v3_small"],
            "search": {"lr": 1e-3, "batch_size": 16, "optimizer": "adam", "lr_scheduler": "none"},
            "epochs": 1, "scheduler": {"type": "fifo"}, "num_samples": 1, "storage": str(storage), **overrides}
    path = tmp_path / "demo_tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, storage


def test_demo_error_before_the_sweep_names_the_cause_not_a_missing_report(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # bundled weights are imported here
    sweep, storage = demo_file(tmp_path, tmp_path / "no_such_data")
    result = CliRunner().invoke(app, ["demo", "--sweep", str(sweep)])
    assert result.exit_code == 2, result.output
    assert "no_such_data" in result.output and "tlsweep_spec.json" not in result.output, result.output
    assert not (storage / "report").exists()


@pytest.mark.slow
def test_demo_runs_the_sweep_and_writes_the_report(shapes_root, tmp_path, procs):
    sweep, storage = demo_file(tmp_path, shapes_root)
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "TORCH_HOME": str(tmp_path / "torch")}
    done = procs.run([sys.executable, "-m", "tlsweep.cli", "demo", "--sweep", str(sweep)], env=env, cwd=tmp_path,
                     capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (storage / "summary.csv").read_text().count("\n") == 2  # header + the one trial
    assert (storage / "report" / "report.html").stat().st_size > 0
    assert f"report: {storage / 'report'}" in done.stdout.replace("\n", "")
