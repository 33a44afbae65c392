"""A real two-node Ray cluster on this machine (``ray start --head`` + ``ray start --address``, token auth
with its own token, its own temp dir and free ports); sweeps attach with ``tlsweep run --address`` in subprocesses.

The head has no CPUs, so trials run on the two worker nodes only (and which one hosts a trial never depends on
how fast a node starts its actors).

1. Killing the raylet of the worker node running a trial, mid-trial: the trial is retried on the other worker
   from its checkpoint and its epochs continue; the report's trials table shows both nodes.
2. With the lost worker replaced, killing the driver mid-sweep, then running again: the unfinished sweep resumes
   by itself, finished trials are not rerun, the trials count and Optuna history stay, and ASHA's rungs hold
   every trial's result (before and after).

Every process is started here and stopped by PID (never ``ray stop``: other Ray clusters may share the machine).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4
WORKERS = ("worker-a", "worker-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parents() -> dict[int, list[int]]:
    table: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            table.setdefault(ppid, []).append(int(entry.name))
    return table


def descendants(pid: int) -> list[int]:
    table, out, stack = _parents(), [], [pid]
    while stack:
        for child in table.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class LocalCluster:
    address: str
    env: dict
    temp: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # every PID of ours, for teardown

    def start(self, role: str, args: list[str], cpus: int = 1) -> subprocess.Popen:
        log = open(self.temp / f"{role}.log", "w")
        proc = subprocess.Popen([RAY, "start", *args, f"--num-cpus={cpus}", "--num-gpus=0", "--disable-usage-stats",
                                 f"--dashboard-agent-listen-port={free_port()}", "--block"],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[role] = proc
        self.seen.add(proc.pid)
        log_file = self.temp / f"{role}.log"
        wait_for(lambda: proc.poll() is not None or "Ray runtime started" in log_file.read_text(),
                 120, f"the Ray {role} node")
        assert proc.poll() is None, log_file.read_text()[-3000:]
        self.remember()
        return proc

    def remember(self) -> None:
        for proc in self.procs.values():
            self.seen.update(descendants(proc.pid))

    def raylet(self, role: str) -> tuple[int, str]:
        """PID and node id of a node's raylet (a child of the ``ray start --block`` we started)."""
        for pid in descendants(self.procs[role].pid):
            args = cmdline(pid)
            if args and args[0].endswith("/raylet"):
                node_id = next(a.split("=", 1)[1] for a in args if a.startswith("--node_id="))
                return pid, node_id
        raise AssertionError(f"no raylet under the {role} node")

    def role_of(self, node_id: str) -> str:
        return next(role for role in WORKERS if self.raylet(role)[1] == node_id)

    def ensure_worker(self, role: str) -> None:
        """A live worker node ``role``: a new one when it was killed (its ``ray start --block`` then exits)."""
        proc = self.procs[role]
        if proc.poll() is None and any(cmdline(p)[0].endswith("/raylet") for p in descendants(proc.pid) if cmdline(p)):
            return
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        self.procs[f"{role}-{proc.pid}"] = self.procs.pop(role)
        self.start(role, [f"--address={self.address}"])

    def wait_idle(self, cpus: int, timeout: float = 120) -> None:
        """Until ``ray status`` shows ``cpus`` alive CPUs, all free (earlier sweeps' actors gone)."""
        last = ""

        def idle():
            nonlocal last
            res = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True,
                                 env=self.env, timeout=60)
            last = res.stdout + res.stderr
            return f"0.0/{cpus:.1f} CPU" in [line.strip() for line in last.splitlines()]  # nothing reserved

        try:
            wait_for(idle, timeout, f"{cpus} idle CPUs", interval=1)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{last[-2000:]}") from None

    def stop(self) -> None:
        self.remember()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in self.seen:
            if cmdline(pid) and any("ray" in a for a in cmdline(pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="module")
def cluster():
    temp = Path(tempfile.mkdtemp(prefix="tlc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    # Token auth on, with this cluster's own token (``ray start --head`` does not create one; ~/.ray is left alone).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "TLSWEEP_TORCH_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    c = LocalCluster(f"127.0.0.1:{port}", env, temp)
    try:
        c.start("head", ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
                         f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"], cpus=0)
        for role in WORKERS:
            c.start(role, [f"--address={c.address}"])
        yield c
    finally:
        c.stop()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from tlsweep.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("cluster_data") / "shapes", num_classes=3,
                               per_class={"train": 48, "val": 9, "test": 3}, size=32, seed=0)  # epochs of ~2 s


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


def launch(cluster: LocalCluster, sweep: Path, *extra: str) -> subprocess.Popen:
    env = {**cluster.env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    return subprocess.Popen([sys.executable, "-m", "tlsweep.cli", "run", str(sweep), "--address", cluster.address,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=REPO, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"sweep still running after {timeout}s:\n{out[-4000:]}") from None
    assert proc.returncode == 0, out[-4000:]
    return out


def histories(storage: Path) -> dict[str, pd.DataFrame]:
    """Trial id → rows of its result.json, in the order written."""
    out = {}
    for result in storage.glob("*/result.json"):
        rows = []
        for line in result.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        if rows:
            out[result.parent.name.split("_")[0]] = pd.DataFrame(rows)
    return out


def statuses(storage: Path) -> dict[str, str]:
    """Trial id → status in the newest experiment state Tune wrote."""
    files = sorted(glob.glob(str(storage / "experiment_state-*.json")))
    if not files:
        return {}
    try:
        data = json.loads(Path(files[-1]).read_text())
    except (OSError, ValueError):
        return {}
    return {s["trial_id"]: s["status"] for s in (json.loads(t[0]) for t in data["trial_data"])}


def test_worker_node_lost_mid_trial_retries_from_checkpoint(cluster, data_root, tmp_path):
    from tlsweep.report.collect import collect, trials_table

    sweep, storage = sweep_file(tmp_path, data_root, "nodeloss", num_samples=2, scheduler={"type": "fifo"})
    cluster.wait_idle(2)
    driver = launch(cluster, sweep)

    def trial_mid_run():
        for trial_id, h in histories(storage).items():
            last = h.iloc[-1]
            if 1 <= last["epoch"] <= EPOCHS - 2:
                return trial_id, last["node_id"]
        return None

    try:
        victim, worker_id = wait_for(trial_mid_run, 240, "a trial mid-run")
        cluster.remember()
        os.kill(cluster.raylet(cluster.role_of(worker_id))[0], signal.SIGKILL)
        out = finish(driver)
    finally:
        if driver.poll() is None:
            driver.kill()
    summary = pd.read_csv(storage / "summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"finished"}, out[-3000:]

    h = histories(storage)[victim]
    assert h["epoch"].tolist() == list(range(1, EPOCHS + 1)), h[["epoch", "node_id", "start_epoch"]]
    moved = h[h["node_id"] != worker_id]
    assert len(moved) and (h.loc[: moved.index[0] - 1, "node_id"] == worker_id).all()
    assert moved["start_epoch"].iloc[0] == moved["epoch"].iloc[0] - 1 >= 1  # restored, not restarted

    other_id = moved["node_id"].iloc[0]
    assert {n for h in histories(storage).values() for n in h["node_id"]} == {worker_id, other_id}

    table = trials_table(collect(storage)).set_index("trial_id")
    assert table.loc[victim, "nodes"].count("→") == 1 and worker_id[:8] in table.loc[victim, "nodes"]
    assert summary.set_index("trial_id").loc[victim, "nodes"] == table.loc[victim, "nodes"]


def test_driver_killed_mid_sweep_resumes_without_rerunning_finished_trials(cluster, data_root, tmp_path):
    from tlsweep.sweep.resume import STATE_FILE, sweep_state

    sweep, storage = sweep_file(tmp_path, data_root, "resume", num_samples=3, epochs=3,
                                scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    for role in WORKERS:
        cluster.ensure_worker(role)  # the previous test killed one
    cluster.wait_idle(2)
    driver = launch(cluster, sweep)

    def some_finished_some_not():
        s = statuses(storage)
        done = {t for t, v in s.items() if v == "TERMINATED"}
        return done if done and (len(s) < 3 or len(done) < len(s)) else None

    try:
        finished = wait_for(some_finished_some_not, 240, "one finished trial while others still run")
        before = {t: (next(storage.glob(f"{t}_*")) / "result.json").read_bytes() for t in finished}
    finally:
        driver.kill()  # the driver only: the cluster and its nodes stay up
        out_killed, _ = driver.communicate()
    assert sweep_state(str(storage), 3) == "unfinished", out_killed[-3000:]
    assert not (storage / "summary.csv").exists()

    out = finish(launch(cluster, sweep))
    assert "unfinished sweep: resuming it" in out
    summary = pd.read_csv(storage / "summary.csv")
    assert len(summary) == 3 and summary["trial_id"].nunique() == 3  # the searcher kept its count
    assert set(summary["status"]) <= {"finished", "stopped"}, summary[["trial_id", "status", "error"]]
    for trial_id, content in before.items():  # finished trials were left alone
        assert (next(storage.glob(f"{trial_id}_*")) / "result.json").read_bytes() == content

    hist = histories(storage)
    nodes = {n for h in hist.values() for n in h["node_id"]}
    assert nodes == {cluster.raylet(role)[1] for role in WORKERS}, "trials did not run on both nodes"

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

    # The searcher's Optuna study holds every trial's result, from both driver runs.
    import optuna

    from tlsweep.sweep.searcher import GroupedSearcher

    searcher = GroupedSearcher.__new__(GroupedSearcher)
    searcher.restore(sorted(storage.glob("searcher-state-*.pkl"))[-1])
    told = searcher.studies[0]._ot_study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(told) == 3 and sum(searcher.assigned.values()) == 3
    stopped = summary[summary["status"] == "stopped"]
    assert set(stopped["epochs"]) <= {1, 2}  # ASHA (max_t 3, reduction factor 2) stops only at its milestones
