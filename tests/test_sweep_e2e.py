"""End to end: `tlsweep run` on a real local Ray with ASHA + Optuna over two backbones and an ensemble."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow


def scalars(event_file: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_file))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def test_cli_sweep_runs_asha_optuna_and_keeps_everything(spec_dict, tmp_path):
    spec_dict.update(num_samples=3, epochs=4)
    spec_dict["search"]["lr"] = {"loguniform": [1e-4, 3e-2]}
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump(spec_dict))
    env = {**os.environ, "TLSWEEP_TORCH_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "tlsweep.cli", "run", str(sweep)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "best trial per model" in res.stdout
    for label in ("resnet18", "mobilenet_v3_small", "resnet18+mobilenet_v3_small-logits"):
        assert label in res.stdout

    storage = Path(spec_dict["storage"])
    summary = pd.read_csv(storage / "summary.csv")
    assert len(summary) == 9
    assert summary.groupby("model").size().to_dict() == {
        "resnet18": 3, "mobilenet_v3_small": 3, "resnet18+mobilenet_v3_small-logits": 3}
    assert set(summary["status"]) <= {"finished", "stopped"}
    assert (summary["status"] == "stopped").sum() >= 1, "ASHA stopped no trial early"
    assert (summary["epochs"] < 4).sum() == (summary["status"] == "stopped").sum()
    assert summary["val_acc"].max() > 0.6  # chance is 1/3

    spec_saved = json.loads((storage / "tlsweep_spec.json").read_text())
    assert spec_saved["name"] == "tiny"
    for path in summary["path"]:
        trial_dir = Path(path)
        checkpoints = sorted(trial_dir.glob("checkpoint_*/checkpoint.pt"))
        assert 1 <= len(checkpoints) <= 2  # num_to_keep
        events = list(trial_dir.glob("events.out.tfevents.*"))
        assert events, f"no TensorBoard events in {trial_dir}"
        val_acc = scalars(events[0], "ray/tune/val_acc")
        epochs = summary.loc[summary["path"] == path, "epochs"].item()
        assert len(val_acc) == epochs
