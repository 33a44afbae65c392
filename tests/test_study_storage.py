"""Studies in a real Optuna storage: the default journal file of a real sweep read back with ``optuna.load_study``,
``tlsweep dashboard`` (its HTTP API and its page in headless Chromium), two sweeps sharing a real PostgreSQL
(Debian's, started here with initdb/pg_ctl as the ``postgres`` user on a loopback port), bad storages refused
with exit 2 before Ray starts, and a searcher resumed from its checkpoint that adds no trial twice."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tlsweep.results.studies import load_studies, open_storage

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), default=Path("/missing"))
STATES = {"finished": "COMPLETE", "stopped": "COMPLETE", "diverged": "FAIL", "error": "FAIL"}
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_dict(shapes_root, storage: Path, name: str, **overrides) -> dict:
    """One model; lr on a grid (1e12 diverges), momentum sampled: two studies, num_samples trials each."""
    return {"name": name, "data": {"root": str(shapes_root), "image_size": 32}, "weights": "none",
            "models": ["resnet18"],
            "search": {"lr": {"grid": [1e-3, 1e12]}, "momentum": {"uniform": [0.0, 0.5]}, "batch_size": 16,
                       "optimizer": "sgd", "lr_scheduler": "none"},
            "epochs": 2, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
            "num_samples": 2, "max_concurrent": 1, "checkpoints": {"num_to_keep": 1}, "storage": str(storage),
            **overrides}


@pytest.fixture(scope="module")
def ray_session():
    yield
    import ray

    ray.shutdown()


def run(spec: dict):
    from tlsweep.config.spec import parse_spec
    from tlsweep.sweep.runner import run_sweep

    return run_sweep(parse_spec(spec), progress="none")


@pytest.fixture(scope="module")
def file_sweep(ray_session, shapes_root, tmp_path_factory):
    storage = tmp_path_factory.mktemp("results") / "journal"
    return storage, run(sweep_dict(shapes_root, storage, "journal")).trials


def by_trial_id(studies) -> dict[str, tuple[str, optuna.trial.FrozenTrial]]:
    found = {}
    for study in studies:
        for t in study.trials:
            trial_id = t.user_attrs["ray_trial_id"]
            assert trial_id not in found, f"trial {trial_id} is in the storage twice"
            found[trial_id] = (study.study_name, t)
    return found


@pytest.mark.slow
def test_default_journal_holds_every_trial_with_state_status_and_curve(file_sweep):
    storage, summary = file_sweep
    assert (storage / "optuna_journal.log").is_file()
    studies = load_studies(str(storage))
    assert sorted(s.study_name for s in studies) == ["journal/resnet18/lr=0.001", "journal/resnet18/lr=1e+12"]
    trials = by_trial_id(studies)
    assert set(trials) == set(summary["trial_id"]) and len(summary) == 4
    for row in summary.itertuples():
        name, t = trials[row.trial_id]
        assert t.user_attrs["model"] == row.model == "resnet18"
        assert t.user_attrs["tlsweep_status"] == row.status
        assert t.state.name == STATES[row.status], (row.status, t.state)
        assert f"lr={row.lr:g}" in name and t.params["momentum"] == pytest.approx(row.momentum)
        curve = [json.loads(line) for line in (Path(row.path) / "result.json").read_text().splitlines()]
        if row.status in ("finished", "stopped"):
            assert t.intermediate_values == pytest.approx({r["training_iteration"]: r["val_acc"] for r in curve})
            assert t.value == pytest.approx(curve[-1]["val_acc"])
    assert set(summary.loc[summary["lr"] > 1, "status"]) == {"diverged"}


@contextlib.contextmanager
def dashboard(target: str):
    """``tlsweep dashboard TARGET --port 0`` running: yields its page URL and (name → trials) from its HTTP API;
    Ctrl-C stops it cleanly at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "tlsweep.cli", "dashboard", target, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        base = match.group(0).removesuffix("/dashboard")
        listed = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"]
        served = {}
        for study in listed:
            detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{study['study_id']}?after=0", timeout=30))
            served[study["study_name"]] = (study["study_id"], len(detail["trials"]))
        yield match.group(0), served
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "dashboard stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_dashboard_serves_the_studies_to_its_api_and_to_chromium(file_sweep, tmp_path):
    from tests.test_report import rendered_dom

    storage, summary = file_sweep
    expected = {s.study_name: len(s.trials) for s in load_studies(str(storage))}
    with dashboard(str(storage)) as (url, served):
        assert {name: n for name, (_, n) in served.items()} == expected
        home = rendered_dom(url, tmp_path, 8000)
        assert all(name in home for name in expected), home[-2000:]
        for name, (study_id, _) in served.items():
            dom = rendered_dom(f"{url}/studies/{study_id}/trials", tmp_path, 8000)
            text = re.sub(r"<[^>]+>", " ", dom)
            assert name in text and re.search(rf"\b{expected[name]}\s+Trials\b", text), text[-2000:]


def test_dashboard_of_a_folder_without_studies_exits_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "tlsweep.cli", "dashboard", str(tmp_path), "--port", "0"],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert res.returncode == 2 and "no tlsweep_spec.json" in res.stderr


# --- a resumed searcher reads its studies back ---------------------------------------------------------------

def test_resumed_searcher_reads_the_storage_and_adds_no_trial_twice(tmp_path):
    from tlsweep.config.distributions import parse_param
    from tlsweep.config.space import Group
    from tlsweep.sweep.searcher import GroupedSearcher

    groups = [Group({"model": "m"}, {"lr": parse_param({"loguniform": [1e-4, 1e-1]})})]
    journal = str(tmp_path / "optuna_journal.log")
    searcher = GroupedSearcher(groups, 4, "val_acc", "max", seed=0, storage_url=journal, names=["s/m"], epochs=2)
    for trial_id in ("t1", "t2", "t3"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("t1", {"val_acc": 0.5, "training_iteration": 1})
    searcher.on_trial_complete("t1", {"val_acc": 0.6, "training_iteration": 2})
    checkpoint = tmp_path / "searcher-state.pkl"
    searcher.save(str(checkpoint))
    assert b"JournalStorage" not in checkpoint.read_bytes()  # the studies stay in the storage
    searcher.suggest("t4")  # created after the checkpoint: the driver dies before Tune records it
    searcher.on_trial_complete("t2", {"val_acc": 0.4, "training_iteration": 1})  # ASHA stopped it, then the kill

    resumed = pickle.loads(pickle.dumps(GroupedSearcher.__new__(GroupedSearcher)))
    resumed.restore(str(checkpoint))
    assert resumed.suggest("t5")  # the first call fails t4, which Tune does not know
    resumed.on_trial_result("t2", {"val_acc": 0.4, "training_iteration": 1})  # Tune reruns it: already told
    resumed.on_trial_complete("t2", {"val_acc": 0.4, "training_iteration": 1})
    resumed.on_trial_complete("t3", {"val_acc": 0.7, "training_iteration": 2})
    assert sum(resumed.assigned.values()) == 4

    study = optuna.load_study(study_name="s/m", storage=open_storage(journal))
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert len(study.trials) == len(trials) == 5
    assert {k: (t.state.name, t.user_attrs.get("tlsweep_status")) for k, t in trials.items()} == {
        "t1": ("COMPLETE", "finished"), "t2": ("COMPLETE", "stopped"), "t3": ("COMPLETE", "finished"),
        "t4": ("FAIL", "lost"), "t5": ("RUNNING", None)}
    assert trials["t1"].intermediate_values == {1: 0.5, 2: 0.6} and trials["t2"].value == 0.4


def test_in_memory_studies_keep_no_storage(tmp_path):
    from tlsweep.config.distributions import parse_param
    from tlsweep.config.space import Group
    from tlsweep.sweep.searcher import GroupedSearcher

    groups = [Group({"model": "m"}, {"lr": parse_param({"loguniform": [1e-4, 1e-1]})})]
    searcher = GroupedSearcher(groups, 2, "val_acc", "max", seed=0)
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"val_acc": 0.6, "training_iteration": 2})
    searcher.save(str(tmp_path / "state.pkl"))
    restored = GroupedSearcher.__new__(GroupedSearcher)
    restored.restore(str(tmp_path / "state.pkl"))
    assert [t.value for t in restored.studies[0].study.trials] == [0.6]
    assert not list(tmp_path.glob("*.log"))


# --- bad storages: exit 2 before Ray --------------------------------------------------------------------------

def _sweep_file(shapes_root, tmp_path, name: str, storage: str) -> tuple[Path, Path]:
    import yaml

    results = tmp_path / "results" / name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep_dict(shapes_root, results, name, searcher={"storage": storage})))
    return path, results


@pytest.mark.parametrize("url, message", [
    ("redis://127.0.0.1:6379/0", "unknown study storage 'redis://127.0.0.1:6379/0'"),
    ("postgresql://tlsweep:pw@127.0.0.1:{port}/db", "cannot open the study storage postgresql://tlsweep:***@"),
])
def test_bad_storage_exits_2_before_ray(shapes_root, tmp_path, url, message):
    url = url.format(port=free_port())  # nothing listens there
    sweep, results = _sweep_file(shapes_root, tmp_path, "bad", url)
    res = subprocess.run([sys.executable, "-m", "tlsweep.cli", "run", str(sweep)], capture_output=True, text=True,
                         env=ENV, timeout=120)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "searcher.storage" in res.stderr and message in res.stderr and ":pw@" not in res.stderr
    assert not (results / "tuner.pkl").exists() and "Ray" not in res.stderr


# --- PostgreSQL ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a loopback port, its data in a temporary folder owned by ``postgres`` (initdb
    refuses root; pytest's own temporary folders are root's only), password authentication; stopped and
    removed afterwards."""
    assert (PG_BIN / "initdb").is_file(), "PostgreSQL missing: bash scripts/setup.sh test"
    folder = Path(tempfile_dir := tempfile.mkdtemp(prefix="tlsweep-pg-"))
    data, pwfile = folder / "data", folder / "pw"
    pwfile.write_text("secret\n")
    os.chmod(folder, 0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()
    try:
        for step in ([str(PG_BIN / "initdb"), "-D", str(data), "-U", "tlsweep", "-A", "scram-sha-256",
                      f"--pwfile={pwfile}"],
                     [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                      f"-p {port} -k {tempfile_dir} -c listen_addresses=127.0.0.1", "start"]):
            res = subprocess.run([*as_postgres, *step], capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, res.stdout + res.stderr
        yield f"postgresql://tlsweep:secret@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_wrong_postgres_password_exits_2(postgres, shapes_root, tmp_path):
    sweep, _ = _sweep_file(shapes_root, tmp_path, "pw", postgres.replace(":secret@", ":Wr0ngPw@"))
    res = subprocess.run([sys.executable, "-m", "tlsweep.cli", "validate", str(sweep)], capture_output=True,
                         text=True, env=ENV, timeout=120)
    assert res.returncode == 2 and "password authentication failed" in res.stderr, res.stderr[-2000:]
    assert "Wr0ngPw" not in res.stderr


@pytest.mark.slow
def test_two_sweeps_share_one_postgres_without_mixing(postgres, ray_session, shapes_root, tmp_path):
    from tlsweep.sweep.cluster import StorageError

    def spec(name: str, folder: str) -> dict:  # one study (lr fixed), two one-epoch trials
        d = sweep_dict(shapes_root, tmp_path / folder, name, epochs=1, searcher={"storage": postgres})
        d["search"]["lr"] = 1e-3
        return d

    summaries = {name: run(spec(name, name)).trials for name in ("pga", "pgb")}
    every = load_studies(postgres)
    assert sorted(s.study_name for s in every) == ["pga/resnet18", "pgb/resnet18"]
    for name, summary in summaries.items():
        mine = load_studies(str(tmp_path / name))  # through the results folder: this sweep's studies only
        assert [s.study_name for s in mine] == [f"{name}/resnet18"]
        trials = by_trial_id(mine)
        assert set(trials) == set(summary["trial_id"]) and len(trials) == 2
        assert [t.user_attrs["tlsweep_status"] for _, t in trials.values()] == ["finished"] * 2
        assert all(t.state.name == "COMPLETE" and len(t.intermediate_values) == 1 for _, t in trials.values())
    with pytest.raises(StorageError, match="already holds trials of a sweep named 'pga'"):
        run(spec("pga", "again"))
    assert pd.read_csv(tmp_path / "pga" / "summary.csv", dtype={"trial_id": str}).shape[0] == 2
    with dashboard(postgres) as (_, served):  # the dashboard over the database URL: both sweeps' studies
        assert {name: n for name, (_, n) in served.items()} == {"pga/resnet18": 2, "pgb/resnet18": 2}


# --- warm start from a study storage ---------------------------------------------------------------------------

def test_warm_start_reads_a_journal_file(shapes_root, tmp_path):
    from tlsweep.config.space import build_groups
    from tlsweep.config.spec import parse_spec
    from tlsweep.sweep import warmstart
    from tlsweep.sweep.searcher import GroupedSearcher, study_names

    earlier = parse_spec(sweep_dict(shapes_root, tmp_path / "a", "a")).plan()
    groups = build_groups(earlier)
    journal = str(tmp_path / "a.log")
    searcher = GroupedSearcher(groups, 3, "val_acc", "max", seed=0, storage_url=journal, epochs=2,
                               names=study_names("a", groups, earlier.search.params()))
    told = {}
    for i, value in enumerate([0.5, 0.9, 0.7, 0.6]):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_acc": value, "training_iteration": 2})
        told[f"t{i}"] = (config, value)
    searcher.suggest("t9")  # still running: not taken
    later = parse_spec(sweep_dict(shapes_root, tmp_path / "b", "b", warm_start=[journal],
                                  warm_start_top_k=1)).plan()
    warm = warmstart.plan(later, build_groups(later))
    assert warm.added == 4
    for group, history, first in zip(build_groups(later), warm.history, warm.first):
        mine = {t: (c, v) for t, (c, v) in told.items() if c["lr"] == group.fixed["lr"]}
        assert sorted(t.value for t in history) == sorted(v for _, v in mine.values())
        best = max(mine.values(), key=lambda cv: cv[1])[0]
        assert first == [{"momentum": best["momentum"]}]
    assert "1 × state RUNNING" in warm.notes[0]
