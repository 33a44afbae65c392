"""Failing trials and Ctrl-C on a real local Ray: a diverged trial and a trial that raises are kept in the
results and the sweep goes on; SIGINT stops cleanly with exit 130 and a hint; ``--resume`` finishes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import failing_sweep_file
from .processes import size, wait_for

pytestmark = pytest.mark.slow


def test_failing_trials_are_kept_and_ctrl_c_resumes(shapes_root, tmp_path, procs):
    sweep, storage = failing_sweep_file(shapes_root, tmp_path, "fails", max_concurrent=1)
    cmd = [sys.executable, "-m", "tlsweep.cli", "run", str(sweep)]
    env = {**os.environ, "TLSWEEP_TORCH_THREADS": "1"}

    proc = procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: any(size(p) for p in storage.glob("*/result.json")), 120, "a trial's first result", proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    assert f"Continue with: tlsweep run {sweep} --resume" in err
    assert "trials: " in out and "best trial per model" in out  # what finished so far
    assert "Traceback" not in err

    res = procs.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == 4
    assert summary["trial_id"].notna().all()
    status = {(r["model"], r["lr"]): r["status"] for _, r in summary.iterrows()}
    assert status[("resnet18", 1e-3)] == "finished"
    assert status[("resnet18", 1e12)] == "diverged"
    assert status[("mobilenet_v3_small", 1e-3)] == status[("mobilenet_v3_small", 1e12)] == "error"
    errors = summary.set_index(["model", "status"])["error"]
    assert "training loss became" in errors[("resnet18", "diverged")]
    assert all("Error" in e and "state_dict" in e for e in errors[("mobilenet_v3_small", "error")])
    diverged_dir = Path(summary.loc[summary["status"] == "diverged", "path"].item())
    assert diverged_dir.name.startswith(summary.loc[summary["status"] == "diverged", "trial_id"].item())
    assert "diverged" in res.stdout and "error" in res.stdout
    finished_dir = Path(summary.loc[summary["status"] == "finished", "path"].item())
    assert len(list(finished_dir.glob("checkpoint_*/checkpoint.pt"))) == 1  # num_to_keep, of 2 epochs
    assert not list(storage.rglob("*.tmp"))
