"""`loggers:` — MLflow (a real local store read back with mlflow.search_runs) and W&B (offline run files) on a
real local Ray sweep; a missing extra is a clear error naming the pip install."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import pytest
import yaml

from tlsweep.config.spec import SpecError, parse_spec


def test_logger_forms_and_unknown_names(spec_dict):
    for form in (["mlflow", {"wandb": {"mode": "offline"}}], {"mlflow": None, "wandb": {"mode": "offline"}}):
        spec = parse_spec({**spec_dict, "loggers": form})
        assert set(spec.loggers.enabled()) == {"tensorboard", "mlflow", "wandb"}
        assert spec.loggers.wandb.mode == "offline"
    assert set(parse_spec(spec_dict).loggers.enabled()) == {"tensorboard"}
    with pytest.raises(SpecError, match="did you mean 'mlflow'"):
        parse_spec({**spec_dict, "loggers": ["mlfow"]})
    with pytest.raises(SpecError, match="tracking_uri"):
        parse_spec({**spec_dict, "loggers": [{"mlflow": {"tracking_url": "x"}}]})


def test_a_missing_extra_names_the_pip_install(spec_dict, monkeypatch, tmp_path):
    from tlsweep.config.spec import load_spec
    from tlsweep.sweep.loggers import LoggerError, logger_callbacks
    from tlsweep.sweep.preflight import preflight

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**spec_dict, "loggers": ["mlflow", "wandb"]}))
    spec = load_spec(path)
    problems = preflight(spec, data=False).problems
    assert [(p, msg) for p, _, msg in problems] == [
        ("loggers.wandb", "the wandb logger needs the wandb package: pip install 'tlsweep[wandb]'")]
    assert problems[0][1] is not None  # the YAML line of `loggers`
    with pytest.raises(LoggerError, match=r"pip install 'tlsweep\[wandb\]'"):
        logger_callbacks(spec.plan())


@pytest.mark.slow
def test_mlflow_and_wandb_receive_every_trial(shapes_root, tmp_path, procs):
    import mlflow
    import pandas as pd

    storage = tmp_path / "results" / "tracked"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = {
        "name": "tracked", "data": {"root": str(shapes_root), "image_size": 32}, "weights": "none",
        "models": ["mobilenet_v3_small"],
        "search": {"lr": {"grid": [1e-3, 1e-2]}, "batch_size": 16, "optimizer": "adam", "lr_scheduler": "none"},
        "epochs": 2, "scheduler": {"type": "fifo"}, "num_samples": 1, "max_concurrent": 2,
        "checkpoints": {"num_to_keep": 1}, "storage": str(storage),
        "loggers": ["tensorboard", {"mlflow": {"tracking_uri": tracking, "tags": {"team": "vision"}}}, "wandb"],
    }
    sweep = tmp_path / "tracked.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "TLSWEEP_TORCH_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    res = procs.run([sys.executable, "-m", "tlsweep.cli", "run", str(sweep), "--quiet"],
                    capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})
    assert list(summary["status"]) == ["finished", "finished"]
    last = {}
    for row in summary.itertuples():
        lines = (Path(row.path) / "result.json").read_text().splitlines()
        last[f"{row.trial_id}_{row.model}"] = json.loads(lines[-1])

    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(experiment_names=["tracked"])
    assert sorted(runs["tags.mlflow.runName"]) == sorted(last)
    client = mlflow.MlflowClient(tracking)
    for _, row in runs.iterrows():
        want = last[row["tags.mlflow.runName"]]
        assert float(row["params.lr"]) == pytest.approx(want["config"]["lr"])
        assert row["metrics.val_acc"] == pytest.approx(want["val_acc"])
        assert row["tags.team"] == "vision"
        assert [m.step for m in client.get_metric_history(row["run_id"], "val_acc")] == [1, 2]

    offline = sorted((storage / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2
    histories = []
    for run_dir in offline:
        records = list(wandb_records(next(run_dir.glob("run-*.wandb"))))
        assert {"run", "config", "history", "exit"} <= {r.WhichOneof("record_type") for r in records}
        histories.append([{".".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
                          for r in records if r.WhichOneof("record_type") == "history"])
    assert all([h["training_iteration"] for h in hist] == [1, 2] for hist in histories)
    assert sorted(hist[-1]["val_acc"] for hist in histories) == pytest.approx(sorted(r["val_acc"] for r in last.values()))
    assert list(storage.glob("*/events.out.tfevents.*"))  # TensorBoard as before


def wandb_records(path: Path):
    """The protobuf records of a W&B run file (LevelDB log format: 32 KiB blocks of checksummed chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record
