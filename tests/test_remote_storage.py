"""Remote storage on a real S3-compatible server (moto's, started on loopback from .venv-s3, see
scripts/setup.sh test): spec and summary written there; a driver killed mid-sweep is resumed by running again;
status, report, predict and export read the sweep from the bucket."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(os.environ.get("TLSWEEP_S3_SERVER", ROOT / ".venv-s3" / "bin" / "moto_server"))


@pytest.fixture(scope="module")
def s3(tmp_path_factory, module_procs):
    """A moto S3 server on 127.0.0.1 (random port) and the AWS environment pointing at it."""
    if not SERVER.is_file():
        pytest.fail(f"{SERVER} is missing: run `bash scripts/setup.sh test` (it installs moto[server] in .venv-s3)")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = module_procs.popen([str(SERVER), "-H", "127.0.0.1", "-p", "0"], stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (m := re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text())):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{m.group(1)}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL_S3"], allow_bucket_creation=True).create_dir("sweeps")
    try:
        yield env
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_storage_io_round_trip(s3, tmp_path):
    from tlsweep.results.storage import (
        exists,
        join_uri,
        locate,
        mirror,
        read_text,
        split_uri,
        top_level,
        write_text,
    )

    uri = "s3://sweeps/io/run1"
    loc = locate(uri)
    write_text(loc, "a.json", '{"x": 1}')
    write_text(loc, "t1/result.json", "{}\n")
    write_text(loc, "t1/checkpoint_000001/checkpoint.pt", "weights")
    assert read_text(loc, "a.json") == '{"x": 1}' and exists(loc, "t1/result.json") and not exists(loc, "nope")
    assert split_uri("s3://b/x/y?o=1") == ("s3://b/x?o=1", "y") and join_uri("s3://b/x?o=1", "z") == "s3://b/x/z?o=1"
    local = mirror(uri, top_level, tmp_path / "m")
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == ["a.json"]
    mirror(uri, local=tmp_path / "m")
    assert (tmp_path / "m" / "t1" / "checkpoint_000001" / "checkpoint.pt").read_text() == "weights"
    loc.fs.delete_file(loc.join("a.json"))
    mirror(uri, local=tmp_path / "m")
    assert not (tmp_path / "m" / "a.json").exists()  # gone from the bucket, gone from the mirror


def test_validate_names_a_missing_bucket(s3, spec_dict, tmp_path, procs):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**spec_dict, "storage": "s3://no-such-bucket/x"}))
    res = procs.run([sys.executable, "-m", "tlsweep.cli", "validate", str(path)], capture_output=True, text=True,
                    timeout=120)
    assert res.returncode == 2 and "bucket 'no-such-bucket' does not exist" in res.stderr


def _remote_files(prefix: str) -> list[str]:
    import pyarrow.fs as pafs

    from tlsweep.results.storage import locate

    loc = locate(prefix)
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    return [i.path[len(loc.path) + 1:] for i in infos if i.type == pafs.FileType.File]


@pytest.mark.slow
def test_sweep_on_s3_survives_a_driver_kill_and_serves_every_command(s3, shapes_root, tmp_path, procs):
    uri = "s3://sweeps/remote/shapes"
    spec = {
        "name": "shapes", "data": {"root": str(shapes_root), "image_size": 32}, "weights": "none",
        "models": ["mobilenet_v3_small"],
        "search": {"lr": {"grid": [1e-3, 3e-3]}, "weight_decay": {"uniform": [0.0, 1e-4]}, "batch_size": 16,
                   "optimizer": "adam", "lr_scheduler": "none"},
        "epochs": 3, "scheduler": {"type": "fifo"}, "num_samples": 1, "max_concurrent": 1,
        "checkpoints": {"num_to_keep": 1}, "storage": uri,
    }
    sweep = tmp_path / "remote.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "TLSWEEP_TORCH_THREADS": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    cmd = [sys.executable, "-m", "tlsweep.cli", "run", str(sweep), "--progress", "plain"]
    proc = procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        files = _remote_files(uri)
        if any("/checkpoint_" in f for f in files) and any(f.startswith("experiment_state-") for f in files):
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, at once
    proc.wait(timeout=60)
    files = _remote_files(uri)
    assert "tlsweep_spec.json" in files and "summary.csv" not in files

    res = procs.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resuming" in res.stdout
    from tlsweep.results.storage import locate, read_text

    summary = pd.read_csv(io.StringIO(read_text(locate(uri), "summary.csv")), dtype={"trial_id": str})
    assert list(summary["status"]) == ["finished", "finished"] and list(summary["epochs"]) == [3, 3]

    # the studies' journal travelled with the results: each trial once, told complete, after the kill too
    from tlsweep.results.studies import load_studies

    journal = tmp_path / "optuna_journal.log"
    journal.write_text(read_text(locate(uri), "optuna_journal.log"))
    stored = [t for study in load_studies(str(journal)) for t in study.trials]
    assert sorted(t.user_attrs["ray_trial_id"] for t in stored) == sorted(summary["trial_id"])
    assert {t.state.name for t in stored} == {"COMPLETE"}

    def cli(*args):
        out = procs.run([sys.executable, "-m", "tlsweep.cli", *map(str, args)], capture_output=True, text=True,
                        env=env, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    status = json.loads(cli("status", uri, "--json"))
    assert status["done"] and status["counts"]["finished"] == 2 and status["storage"] == uri
    assert status["models"]["mobilenet_v3_small"]["best"] == pytest.approx(summary["val_acc"].max())

    board = json.loads(cli("report", uri, "--json", "--cam-images", "2"))
    assert [r["model"] for r in board["leaderboard"]] == ["mobilenet_v3_small"]
    assert "report/report.html" in _remote_files(uri)

    image = next((shapes_root / "test").rglob("*.png"))
    cli("predict", uri, image, "--out", tmp_path / "preds.csv")
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 1 and preds["predicted"].iloc[0] in {p.name for p in (shapes_root / "test").iterdir()}
    cli("export", uri, "--out", tmp_path / "exported", "--format", "torchscript")
    assert (tmp_path / "exported" / "model.pt").is_file()
