"""Faults users hit, survived with nothing lost.

Ray-free: a truncated or corrupt newest checkpoint falls back to the previous one with a warning.
On a real local Ray through the CLI (slow, ``python -m tests.launch``), trials acted upon are held by the rules
of ``tests/faults.py``, so every assertion is on an order the test forces:
SIGTERM to the driver stops like Ctrl-C (prints what finished, exit 130) and running again resumes, past a
truncated last checkpoint; a trial raising once in epoch 2 is retried from its epoch-1 checkpoint; every trial
failing exits 1; storage filling up mid-sweep is a clear error, finished trials stay and the sweep resumes once
space is back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tlsweep.sweep.trainable import restore
from tlsweep.trial.loop import CHECKPOINT_FILE, Trial

from .conftest import trial_config_for
from .faults import write_rules
from .processes import wait_for

REPO = Path(__file__).resolve().parents[1]


def _checkpoints(shapes_root, folder: Path, epochs: int) -> list[Path]:
    trial = Trial(trial_config_for(shapes_root, model={"name": "mobilenet_v3_small"}, epochs=epochs))
    out = []
    for epoch in range(epochs):
        trial.step()
        out.append(trial.save(folder / f"checkpoint_{epoch:06d}").parent)
    return out


def test_unreadable_newest_checkpoint_falls_back_to_the_previous_one(shapes_root, tmp_path):
    from ray.tune import Checkpoint

    first, second = _checkpoints(shapes_root, tmp_path, 2)
    fresh = lambda: Trial(trial_config_for(shapes_root, model={"name": "mobilenet_v3_small"}, epochs=2))  # noqa: E731

    trial = fresh()
    assert restore(trial, Checkpoint.from_directory(second)) is None and trial.epoch == 2

    data = (second / CHECKPOINT_FILE).read_bytes()
    (second / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])  # truncated, as a crash mid-copy leaves it
    trial = fresh()
    warning = restore(trial, Checkpoint.from_directory(second))
    assert trial.epoch == 1 and [h["epoch"] for h in trial.history] == [1]
    assert str(second) in warning and "resumed from checkpoint_000000 (epoch 1)" in warning

    (first / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")  # corrupt too: start over, still no crash
    trial = fresh()
    warning = restore(trial, Checkpoint.from_directory(second))
    assert trial.epoch == 0 and "no older one is readable; restarted at epoch 0" in warning


def test_a_deleted_newest_checkpoint_restores_from_the_one_before_or_starts_over(tmp_path):
    """Tune would fail the trial on every retry ("does not exist on storage anymore"); ``FallbackRestore`` hands it
    the newest older checkpoint, or no restore at all, and says so in the next run's ``restore_warning``."""
    from ray.tune import Checkpoint

    from tlsweep.sweep import trainable
    from tlsweep.sweep.ray_internals import training_result

    class Base:
        def restore(self, result):
            self.restored = result.checkpoint.path

    class Trainable(trainable.FallbackRestore, Base):
        restored = None

    for name in ("checkpoint_000000", "checkpoint_000001", "checkpoint_000003"):
        (tmp_path / name).mkdir()
    present = Trainable()
    present.restore(training_result(Checkpoint.from_directory(str(tmp_path / "checkpoint_000003"))))
    assert present.restored == str(tmp_path / "checkpoint_000003") and trainable._fallbacks == []

    t = Trainable()
    t.restore(training_result(Checkpoint.from_directory(str(tmp_path / "checkpoint_000002"))))  # deleted
    assert t.restored == str(tmp_path / "checkpoint_000001")
    assert trainable._fallbacks == [f"checkpoint {tmp_path / 'checkpoint_000002'} is missing; resumed from "
                                    "checkpoint_000001"]
    trainable._fallbacks.clear()
    (tmp_path / "alone").mkdir()
    t = Trainable()
    t.restore(training_result(Checkpoint.from_directory(str(tmp_path / "alone" / "checkpoint_000004"))))
    assert t.restored is None and "no older one exists; restarted at epoch 0" in trainable._fallbacks[0]
    trainable._fallbacks.clear()


# ---- through the CLI on a real local Ray ------------------------------------------------------------------------

def sweep_file(tmp_path: Path, shapes_root, name: str, **fields) -> tuple[Path, Path]:
    spec = {"name": name, "data": {"root": str(shapes_root), "image_size": 32}, "weights": "none",
            "models": ["mobilenet_v3_small"],
            "search": {"lr": 1e-3, "batch_size": 16, "optimizer": "sgd", "momentum": 0.0, "lr_scheduler": "none"},
            "epochs": 3, "scheduler": {"type": "fifo"}, "num_samples": 1, "max_concurrent": 1,
            "storage": str(tmp_path / "results" / name), **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, Path(spec["storage"])


@pytest.fixture()
def faults(tmp_path):
    """Rules for ``tests/faults.py`` and the environment of a CLI run with them (``python -m tests.launch``)."""
    folder = tmp_path / "faults"

    def rules(**kw) -> dict:
        write_rules(folder, **kw)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        return {**env, "TLSWEEP_TORCH_THREADS": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    rules.folder = folder
    return rules


@pytest.fixture()
def cli(procs, faults):
    """``tlsweep run SWEEP EXTRA...`` with the fault rules on, in a subprocess that ``procs`` ends."""
    def start(sweep: Path, env: dict, *extra: str) -> subprocess.Popen:
        return procs.popen([sys.executable, "-m", "tests.launch", str(faults.folder), "run", str(sweep), *extra],
                           env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return start


def done(proc: subprocess.Popen, code: int, timeout: float = 300) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout}s:\n{out[-3000:]}\n{err[-3000:]}") from None
    assert proc.returncode == code, out[-3000:] + err[-3000:]
    return out, err


def history(storage: Path, model: str) -> list[dict]:
    """The rows of model ``model``'s trial's result.json; [] before it exists, half-written lines skipped."""
    rows = []
    for result in storage.glob(f"*_{model}/result.json"):
        for line in result.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_resume_survives_a_truncated_last_checkpoint(shapes_root, tmp_path, faults,
                                                                                    cli):
    env = faults(hold_after=2, labels=["b"])  # b stops after reporting epoch 2 (two checkpoints stored)
    sweep, storage = sweep_file(tmp_path, shapes_root, "term", checkpoints={"num_to_keep": 2},
                                models=[{"name": "mobilenet_v3_small", "id": "a"},
                                        {"name": "mobilenet_v3_small", "id": "b"}])
    proc = cli(sweep, env)
    wait_for(lambda: list(faults.folder.glob("held-*")), what="a held trial", proc=proc)
    wait_for(lambda: [r["epoch"] for r in history(storage, "b")] == [1, 2], 60, "b's epochs 1-2", proc)
    a_before = next(storage.glob("*_a/result.json")).read_bytes()  # a ran first (one trial at a time)
    assert [r["epoch"] for r in history(storage, "a")] == [1, 2, 3]

    os.kill(proc.pid, signal.SIGTERM)  # the driver only, as a job scheduler stops a job
    out, err = done(proc, 130)
    assert "trials: 1 finished, 1 interrupted" in out, out  # b was running: not "stopped" as by ASHA
    assert "Continue with: tlsweep run" in err and "Traceback" not in err

    newest = storage.glob(f"*_b/{history(storage, 'b')[-1]['checkpoint_dir_name']}/checkpoint.pt")
    (newest,) = list(newest)
    newest.write_bytes(newest.read_bytes()[:1000])  # a truncated copy, as a crash or a full disk leaves it

    out, err = done(cli(sweep, env), 0)  # no --resume: the unfinished sweep is found
    assert "unfinished sweep: resuming it" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning: trial")]
    assert len(warnings) == 1 and str(newest.parent) in warnings[0], out
    assert "resumed from checkpoint_000000 (epoch 1)" in warnings[0]
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str}).set_index("model")
    assert list(summary["status"]) == ["finished", "finished"] and list(summary["epochs"]) == [3, 3]
    b = history(storage, "b")
    assert [r["epoch"] for r in b] == [1, 2, 2, 3] and [r["start_epoch"] for r in b] == [0, 0, 1, 1]
    assert next(storage.glob("*_a/result.json")).read_bytes() == a_before  # the finished trial was not rerun


@pytest.mark.slow
def test_trial_raising_once_is_retried_from_its_checkpoint_and_diverged_trial_is_reported(
        shapes_root, tmp_path, faults, cli):
    from typer.testing import CliRunner

    from tlsweep.cli import app

    env = faults(raise_at=2)  # each trial raises once, in epoch 2 before reporting it
    sweep, storage = sweep_file(tmp_path, shapes_root, "retry", max_failures=1,
                                search={"lr": {"grid": [1e-3, 1e12]}, "batch_size": 16, "optimizer": "sgd",
                                        "momentum": 0.0, "lr_scheduler": "none"})
    out, err = done(cli(sweep, env), 0)
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str}).set_index("lr")
    assert summary.loc[1e-3, "status"] == "finished" and summary.loc[1e12, "status"] == "diverged", out
    (retried,) = storage.glob(f"{summary.loc[1e-3, 'trial_id']}_*/result.json")
    rows = [json.loads(line) for line in retried.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # each epoch once
    assert [r["start_epoch"] for r in rows] == [0, 1, 1]  # epochs 2-3 after a restore from epoch 1
    assert (faults.folder / f"raised-{rows[0]['trial_id']}").is_file()

    report = CliRunner().invoke(app, ["report", str(storage), "--cam-images", "1"])
    assert report.exit_code == 0, report.output
    trials = pd.read_csv(storage / "report" / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert trials.loc[summary.loc[1e12, "trial_id"], "status"] == "diverged"
    assert trials.loc[summary.loc[1e-3, "trial_id"], "status"] == "finished"


@pytest.mark.slow
def test_every_trial_failing_exits_1(shapes_root, tmp_path, faults, cli):
    env = faults(raise_at=1)
    sweep, storage = sweep_file(tmp_path, shapes_root, "allfail", max_failures=0, epochs=2)
    out, err = done(cli(sweep, env), 1)
    assert "trials: 1 error" in out
    assert "InjectedFault" in pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})["error"].item()


@pytest.fixture()
def small_disk(tmp_path):
    """A 60 MiB tmpfs: a storage that can fill up (needs root to mount; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros until the file system holding ``folder`` is full."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_storage_filling_up_is_a_clear_error_and_the_sweep_resumes_once_space_is_back(
        shapes_root, tmp_path, faults, cli, small_disk):
    env = {**faults(hold_after=1, labels=["b"]), "TUNE_GLOBAL_CHECKPOINT_S": "1"}  # a finishes; b is held
    sweep, storage = sweep_file(small_disk, shapes_root, "full", max_failures=0,
                                models=[{"name": "mobilenet_v3_small", "id": "a"},
                                        {"name": "mobilenet_v3_small", "id": "b"}])
    proc = cli(sweep, env)

    def a_done_and_b_checkpointed_in_the_last_good_state():
        """a finished and b's epoch 1 (and so its checkpoint) recorded, in the state a full disk leaves."""
        from tlsweep.sweep.resume import BACKUP_SUFFIX

        for backup in storage.glob(f"experiment_state-*.json{BACKUP_SUFFIX}"):
            try:
                trials = [(json.loads(t[0]), json.loads(t[1])) for t in json.loads(backup.read_text())["trial_data"]]
            except (OSError, ValueError, KeyError, IndexError):
                return False
            model = {t["config"]["model"]: (t, meta) for t, meta in trials}
            return "a" in model and "b" in model and model["a"][0]["status"] == "TERMINATED" \
                and (model["b"][1].get("last_result") or {}).get("training_iteration") == 1

    wait_for(lambda: list(faults.folder.glob("held-*")), what="a held trial", proc=proc)
    wait_for(a_done_and_b_checkpointed_in_the_last_good_state, what="a finished and b's epoch 1 in the last good "
             "state", proc=proc)
    filler = fill(small_disk)
    (faults.folder / "release").touch()  # b's next checkpoint no longer fits
    out, err = done(proc, 2)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and "no space left on the storage" in errors[-1] and str(storage) in errors[-1], err[-3000:]
    assert "--resume" in errors[-1]

    a_result = next(storage.glob("*_a/result.json"))
    a_before = a_result.read_bytes()
    assert [json.loads(line)["epoch"] for line in a_before.decode().splitlines()] == [1, 2, 3]
    import torch

    for checkpoint in storage.glob("*_a/checkpoint_*/checkpoint.pt"):  # the finished trial's files are whole
        assert torch.load(checkpoint, weights_only=True)["epoch"] >= 1

    filler.unlink()
    out, err = done(cli(sweep, env, "--resume"), 0)
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str}).set_index("model")
    assert list(summary["status"]) == ["finished", "finished"], summary
    b = history(storage, "b")
    assert [r["epoch"] for r in b][-2:] == [2, 3] and b[-1]["start_epoch"] == 1  # from its epoch-1 checkpoint
    assert a_result.read_bytes() == a_before


def test_last_good_state_is_kept_and_put_back_over_a_truncated_one(tmp_path):
    import pickle

    from tlsweep.sweep.resume import StateBackup, repair_state

    state, searcher = tmp_path / "experiment_state-x.json", tmp_path / "searcher-state-x.pkl"
    state.write_text(json.dumps({"trial_data": [["{}", "{}"]]}))
    searcher.write_bytes(pickle.dumps({"assigned": 3}))
    StateBackup(str(tmp_path)).get_state()  # what Tune calls at each experiment checkpoint
    assert repair_state(str(tmp_path)) == []  # both readable: nothing to do

    state.write_text(state.read_text()[:10])  # what a full disk leaves
    searcher.write_bytes(searcher.read_bytes()[:5])
    StateBackup(str(tmp_path)).get_state()  # an unreadable file never replaces the last good copy
    warnings = repair_state(str(tmp_path))
    assert len(warnings) == 2 and all("last good copy" in w for w in warnings)
    assert json.loads(state.read_text()) == {"trial_data": [["{}", "{}"]]}
    assert pickle.loads(searcher.read_bytes()) == {"assigned": 3}
