"""A real two-node Ray cluster on this machine (``ray start --head`` + two ``ray start --address`` worker nodes,
token auth with its own token, its own temp dir and free ports); sweeps attach with ``tlsweep run --address`` in
subprocesses. Nothing asserted depends on a choice Ray or the clock makes:

- the head has no CPUs and each worker one CPU plus its own custom resource (``node_a``, ``node_b``), so two
  trials at once run one per worker, and a model label pinned to ``node_a`` runs there only (per-label resources
  through the fault rules of ``tests/faults.py``, given to ``tlsweep run`` by ``python -m tests.launch``);
- a trial acted upon is *held* by a test-only rule (after reporting epoch 1, or in epoch 1 before reporting it)
  until the test releases it, so it provably has epochs left when its node, worker process or driver is killed.

1. Driver killed while the ``a`` trial is finished and the ``b`` trial is held: running again resumes the sweep,
   the finished trial is not rerun, the trials count, Optuna history and ASHA's rungs stay.
2. Both trials held after epoch 1: one trial's node is killed (its raylet and worker processes) and the other
   trial's worker process is killed: both are retried from their epoch-1 checkpoints on the surviving worker;
   every epoch once.
3. Drivers without the cluster's token, or with another one, are refused in one line (exit 2); a node on another
   address (127.0.0.2) with local ``storage``: exit 2 naming it, before any trial.

The cluster and its processes: ``tests/cluster.py``.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .cluster import (
    WORKERS,
    finish,
    gone,
    held,
    histories,
    launch,
    local_cluster,
    statuses,
)
from .faults import write_rules
from .processes import wait_for

pytestmark = pytest.mark.slow
EPOCHS = 3


@pytest.fixture(scope="module")
def cluster(module_procs):
    with local_cluster(module_procs) as c:
        yield c


@pytest.fixture()
def faults(cluster):
    """This test's fault rules (``tests/faults.py``), markers of earlier tests cleared."""
    write_rules(cluster.faults)
    return lambda **kw: write_rules(cluster.faults, **kw)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from tlsweep.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("cluster_data") / "shapes", num_classes=3,
                               per_class={"train": 16, "val": 6, "test": 3}, size=32, seed=0)


def sweep_file(folder: Path, data_root, name: str, **overrides) -> tuple[Path, Path]:
    spec = {"name": name, "data": {"root": str(data_root), "image_size": 32}, "weights": "none",
            "models": ["mobilenet_v3_small"],
            "search": {"lr": {"loguniform": [1e-3, 1e-2]}, "batch_size": 16, "optimizer": "adam",
                       "lr_scheduler": "none"},
            "epochs": EPOCHS, "searcher": {"type": "optuna", "seed": 0}, "max_failures": 2,
            "storage": str(folder / name), **overrides}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, folder / name



def test_driver_killed_mid_sweep_resumes_without_rerunning_finished_trials(cluster, faults, data_root, tmp_path):
    from tlsweep.sweep.resume import sweep_state
    from tlsweep.sweep.scheduler_state import STATE_FILE

    for role in WORKERS:
        cluster.ensure_worker(role)  # when run after a test that killed one
    # a's trial runs on node_a only, b's on node_b only; b's is held in epoch 1 (nothing reported) until released.
    faults(hold_before=1, labels=["b"], resources={"a": {"node_a": 1}, "b": {"node_b": 1}})
    sweep, storage = sweep_file(tmp_path, data_root, "resume", num_samples=1,
                                models=[{"name": "mobilenet_v3_small", "id": "a"},
                                        {"name": "mobilenet_v3_small", "id": "b"}],
                                scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    driver = launch(cluster, sweep)

    def a_done_b_held():
        s = statuses(storage)
        done = {t for t, (label, status) in s.items() if label == "a" and status == "TERMINATED"}
        return done if done and held(cluster) else None

    try:
        finished = wait_for(a_done_b_held, 240, "the a trial finished while the b trial is held")
        before = {t: (next(storage.glob(f"{t}_*")) / "result.json").read_bytes() for t in finished}
    finally:
        driver.kill()  # the driver only: the cluster and its nodes stay up
        out_killed, _ = driver.communicate()
    assert sweep_state(str(storage), 2) == "unfinished", out_killed[-3000:]
    assert not (storage / "summary.csv").exists()

    (cluster.faults / "release").touch()
    out = finish(launch(cluster, sweep))
    assert "unfinished sweep: resuming it" in out
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == 2 and summary["trial_id"].nunique() == 2  # the searcher kept its count
    assert sorted(summary["model"]) == ["a", "b"]
    assert set(summary["status"]) <= {"finished", "stopped"}, summary[["trial_id", "status", "error"]]
    for trial_id, content in before.items():  # finished trials were left alone
        assert (next(storage.glob(f"{trial_id}_*")) / "result.json").read_bytes() == content

    hist = histories(storage)
    node = {label: cluster.raylet(f"worker-{label}")[1] for label in ("a", "b")}
    for trial_id, h in hist.items():
        assert set(h["node_id"]) == {node[h["model_label"].iloc[0]]}

    # ASHA's rungs came back: every trial that reached a milestone is recorded there with its own result,
    # including the trials that finished before the driver died.
    rungs = {int(m): rec for m, rec in yaml.safe_load((storage / STATE_FILE).read_text())["brackets"][0]}
    for milestone in (1, 2):
        for trial_id, h in hist.items():
            last = h.drop_duplicates("training_iteration", keep="last").set_index("training_iteration")
            if milestone in last.index:
                assert rungs[milestone].get(trial_id) == pytest.approx(last.loc[milestone, "val_acc"]), \
                    (milestone, trial_id, rungs)
    assert set(finished) <= set(rungs[1])

    # The searcher's Optuna studies (one per model) hold every trial's result, from both driver runs.
    import optuna

    from tlsweep.sweep.searcher import GroupedSearcher

    searcher = GroupedSearcher.__new__(GroupedSearcher)
    searcher.restore(sorted(storage.glob("searcher-state-*.pkl"))[-1])
    told = [s._ot_study.get_trials(states=[optuna.trial.TrialState.COMPLETE]) for s in searcher.studies]
    assert [len(t) for t in told] == [1, 1] and sum(searcher.assigned.values()) == 2
    # ... read back from the sweep's study journal, as any Optuna tool reads it: each trial once, told complete.
    from tlsweep.results.studies import load_studies

    stored = [t for study in load_studies(str(storage)) for t in study.trials]
    assert sorted(t.user_attrs["ray_trial_id"] for t in stored) == sorted(summary["trial_id"])
    assert {t.state.name for t in stored} == {"COMPLETE"}
    stopped = summary[summary["status"] == "stopped"]
    assert set(stopped["epochs"]) <= {1, 2}  # ASHA (max_t 3, reduction factor 2) stops only at its milestones


def test_lost_node_and_killed_worker_process_retry_from_checkpoint(cluster, faults, data_root, tmp_path):
    from tlsweep.report.collect import collect, trials_table

    faults(hold_after=1)
    sweep, storage = sweep_file(tmp_path, data_root, "nodeloss", num_samples=2, scheduler={"type": "fifo"})
    driver = launch(cluster, sweep)

    def both_held_and_recorded():
        h, hist = held(cluster), histories(storage)
        return h if len(h) == 2 and all(t in hist and hist[t]["epoch"].max() == 1 for t in h) else None

    try:
        hold = wait_for(both_held_and_recorded, 240, "both trials held after epoch 1")
        lost, killed = sorted(hold)
        assert hold[lost]["node_id"] != hold[killed]["node_id"]  # one CPU per worker, none on the head
        lost_node, kept_node = hold[lost]["node_id"], hold[killed]["node_id"]
        dead = cluster.kill_node(cluster.role_of(lost_node))  # the node: raylet and worker processes
        os.kill(hold[killed]["pid"], signal.SIGKILL)  # the trial's worker process; its raylet stays
        assert hold[lost]["pid"] in dead
        # Released only once both held processes are gone: neither can report epoch 2 from its first run.
        wait_for(lambda: all(gone(pid) for pid in (*dead, hold[killed]["pid"])), 30, "the killed processes to exit")
        (cluster.faults / "release").touch()
        out = finish(driver)
    finally:
        if driver.poll() is None:
            driver.kill()
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert len(summary) == 2 and set(summary["status"]) == {"finished"}, out[-3000:]

    hist = histories(storage)
    for trial_id in (lost, killed):
        h = hist[trial_id]
        assert h["epoch"].tolist() == list(range(1, EPOCHS + 1)), h[["epoch", "node_id", "start_epoch"]]
        assert h["node_id"].iloc[0] == hold[trial_id]["node_id"] and h["start_epoch"].iloc[0] == 0
        assert (h["start_epoch"].iloc[1:] == 1).all(), h  # retried from the epoch-1 checkpoint, not restarted
        assert (h["node_id"].iloc[1:] == kept_node).all()  # the only worker left
    table = trials_table(collect(storage)).set_index("trial_id")
    assert table.loc[lost, "nodes"].count("→") == 1 and lost_node[:8] in table.loc[lost, "nodes"]
    assert "→" not in table.loc[killed, "nodes"]
    assert summary.loc[lost, "nodes"] == table.loc[lost, "nodes"]


def test_bad_cluster_input_fails_before_any_trial_in_one_line(cluster, faults, data_root, tmp_path):
    """Drivers without the cluster's token, or with another one, are refused; local ``storage`` with a node on
    another address (a real node on 127.0.0.2) is refused naming it. Each exits 2 with one error line."""
    drivers = {}
    for token in ("another", None):
        sweep, storage = sweep_file(tmp_path, data_root, f"token-{token}", scheduler={"type": "fifo"})
        env = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
        if token:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        drivers[token] = (launch(cluster, sweep, env=env), storage)
    try:
        for token, (driver, storage) in drivers.items():
            out = finish(driver, timeout=120, code=2)
            errors = [line for line in out.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "refused this driver's auth token" in errors[0], (token, out)
            assert "RAY_AUTH_TOKEN" in errors[0] and "Traceback" not in out and "gcs_client" not in out, out
            assert not storage.exists()

        cluster.start("other-address", [f"--address={cluster.address}", "--node-ip-address=127.0.0.2",
                                        "--num-cpus=0"])
        sweep, storage = sweep_file(tmp_path, data_root, "remote", scheduler={"type": "fifo"})
        out = finish(launch(cluster, sweep), timeout=120, code=2)
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "127.0.0.2" in errors[0] and "storage_shared" in errors[0], out
        assert "Traceback" not in out and not storage.exists()  # checked before the sweep wrote anything
    finally:
        for driver, _ in drivers.values():
            if driver.poll() is None:
                driver.kill()
        if "other-address" in cluster.procs:
            cluster.stop_node("other-address")
