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

from .faults import write_rules
from .processes import Processes, wait_for

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[1]
EPOCHS = 3
WORKERS = {"worker-a": "node_a", "worker-b": "node_b"}


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


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@dataclass
class LocalCluster:
    address: str
    env: dict
    temp: Path
    processes: Processes
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # every PID of ours, for teardown

    @property
    def faults(self) -> Path:
        return self.temp / "faults"

    def spawn(self, role: str, args: list[str]) -> subprocess.Popen:
        """``ray start ... --block`` for node ``role``, not waiting for it (see ``started``)."""
        log = open(self.temp / f"{role}.log", "w")
        proc = self.processes.popen([RAY, "start", *args, "--num-gpus=0", "--disable-usage-stats",
                                     f"--dashboard-agent-listen-port={free_port()}", "--block"],
                                    stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs[role] = proc
        self.seen.add(proc.pid)
        return proc

    def started(self, role: str) -> None:
        proc, log_file = self.procs[role], self.temp / f"{role}.log"
        wait_for(lambda: proc.poll() is not None or "Ray runtime started" in log_file.read_text(),
                 120, f"the Ray {role} node")
        assert proc.poll() is None, log_file.read_text()[-3000:]
        self.remember()

    def ours(self) -> set[int]:
        """PIDs whose command line names this cluster's temp dir (orphans of a failed ``ray start`` too)."""
        return {int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and any(str(self.temp) in a for a in cmdline(int(p.name)))}

    def start(self, role: str, args: list[str], attempts: int = 3) -> None:
        """Start a node; on a loaded machine ``ray start`` may give up after its fixed 30 s registration wait
        ("timed out during startup"): then the attempt's leftovers are killed and it starts again."""
        for attempt in range(attempts):
            before = self.ours()
            self.spawn(role, args)
            try:
                return self.started(role)
            except AssertionError:
                if attempt == attempts - 1 or "timed out during startup" not in (self.temp / f"{role}.log").read_text():
                    raise
            for pid in self.ours() - before:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def start_workers(self, *roles: str) -> None:
        for role in roles:
            self.start(role, [f"--address={self.address}", "--num-cpus=1",
                              f"--resources={json.dumps({WORKERS[role]: 1})}"])

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

    def kill_node(self, role: str) -> list[int]:
        """SIGKILL node ``role`` as a lost machine: ``ray start``, its raylet and every worker process on it."""
        self.remember()
        proc = self.procs[role]
        pids = [proc.pid, *descendants(proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

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
        self.start_workers(role)

    def stop_node(self, role: str) -> None:
        self.remember()
        proc = self.procs[role]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()

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
def cluster(module_procs):
    temp = Path(tempfile.mkdtemp(prefix="tlc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    (temp / "faults").mkdir()
    # Token auth on, with this cluster's own token (``ray start --head`` does not create one; ~/.ray is left alone).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "TLSWEEP_TORCH_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    c = LocalCluster(f"127.0.0.1:{port}", env, temp, module_procs)
    try:
        c.start("head", ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
                         f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
                         "--num-cpus=0"])
        c.start_workers(*WORKERS)
        yield c
    finally:
        c.stop()
        shutil.rmtree(temp, ignore_errors=True)


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


def launch(cluster: LocalCluster, sweep: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``tlsweep run SWEEP --address CLUSTER`` with the fault rules on (``tests/launch.py``)."""
    env = {**(env or cluster.env), "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    return cluster.processes.popen([sys.executable, "-m", "tests.launch", str(cluster.faults), "run", str(sweep),
                                    "--address", cluster.address, *extra],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)


def finish(proc: subprocess.Popen, timeout: float = 300, code: int = 0) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"sweep still running after {timeout}s:\n{out[-4000:]}") from None
    assert proc.returncode == code, out[-4000:]
    return out


def histories(storage: Path) -> dict[str, pd.DataFrame]:
    """Trial id → rows of its result.json, in the order written."""
    out = {}
    for result in storage.glob("*/result.json"):
        rows = []
        try:
            text = result.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        if rows:
            out[rows[0]["trial_id"]] = pd.DataFrame(rows)
    return out


def statuses(storage: Path) -> dict[str, tuple[str, str]]:
    """Trial id → (model label, status) in the newest experiment state Tune wrote."""
    files = sorted(glob.glob(str(storage / "experiment_state-*.json")))
    if not files:
        return {}
    try:
        data = json.loads(Path(files[-1]).read_text())
    except (OSError, ValueError):
        return {}
    return {s["trial_id"]: (s["config"]["model"], s["status"]) for s in (json.loads(t[0]) for t in data["trial_data"])}


def held(cluster: LocalCluster) -> dict[str, dict]:
    """Trial id → {node_id, pid, epoch} of trials the ``hold_*`` rules hold."""
    return {p.name.removeprefix("held-"): json.loads(p.read_text()) for p in cluster.faults.glob("held-*")}


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
    summary = pd.read_csv(storage / "summary.csv")
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
    summary = pd.read_csv(storage / "summary.csv").set_index("trial_id")
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
