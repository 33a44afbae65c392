"""Progress on a real local Ray sweep: `tlsweep run` outside a terminal prints a line per trial event (finished,
diverged, a failed trial's error line and the path of its full error), and `tlsweep status` rebuilds the same
progress from the storage alone."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import failing_sweep_file

pytestmark = pytest.mark.slow


def test_run_prints_trial_events_and_status_reads_them_back(shapes_root, tmp_path, procs):
    sweep, storage = failing_sweep_file(shapes_root, tmp_path, "events", max_concurrent=2)
    env = {**os.environ, "TLSWEEP_TORCH_THREADS": "1"}
    res = procs.run([sys.executable, "-m", "tlsweep.cli", "run", str(sweep), "--set",
                     "search.lr={grid: [1.0e-3, 1.0e+12]}"],
                    capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    (tmp_path / "run.out").write_text(out)
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})
    assert sorted(summary["status"]) == ["diverged", "error", "error", "finished"]

    for row in summary.itertuples():
        assert f"{row.trial_id} {row.model} started" in out
        assert f"{row.status} {row.trial_id} {row.model}" in out
    failed = summary[summary["status"] == "error"]
    for row in failed.itertuples():
        error_file = storage / Path(row.path).name / "error.txt"
        assert f"full error: {error_file}" in out and error_file.is_file()
        line = next(ln for ln in out.splitlines() if f"error {row.trial_id} " in ln)
        assert "state_dict" in line and "Error" in line
    assert out.count("epoch 1 ") == 0 or "at epoch 1" in out  # events, not a line per epoch
    assert "events: 1 finished, 1 diverged, 2 error of 4 trials" in out

    res = procs.run([sys.executable, "-m", "tlsweep.cli", "status", str(storage), "--json"],
                    capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["counts"] == {"pending": 0, "running": 0, "finished": 1, "stopped": 0, "diverged": 1, "error": 2}
    assert status["done"] and status["epochs_left_at_most"] == 0
    resnet = summary[summary["model"] == "resnet18"]
    want = resnet["val_acc"].max()
    assert math.isclose(status["models"]["resnet18"]["best"], want)
    assert status["models"]["resnet18"]["best_trial"] == resnet.loc[resnet["val_acc"].idxmax(), "trial_id"]
    by_id = {t["trial_id"]: t for t in status["trials"]}
    for row in summary.itertuples():
        assert by_id[row.trial_id]["status"] == row.status
    for row in failed.itertuples():
        assert by_id[row.trial_id]["error_file"] == f"{storage}/{Path(row.path).name}/error.txt"

    res = procs.run([sys.executable, "-m", "tlsweep.cli", "status", str(storage)],
                    capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "resnet18" in res.stdout and "full error:" in res.stdout
