"""A real Ray cluster on this machine for tests and benchmarks: ``ray start --head`` plus worker nodes on
loopback, token auth with its own token, its own temp dir and free ports. Sweeps attach with ``tlsweep run
--address`` in subprocesses that run the fault rules of ``tests/faults.py`` (``python -m tests.launch``).

Every process is started here and stopped by PID (never ``ray stop``: other Ray clusters may share the machine).
"""

from __future__ import annotations

import contextlib
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

from .processes import Processes, wait_for

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[1]
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


@contextlib.contextmanager
def local_cluster(processes: Processes, head_cpus: int = 0, workers=tuple(WORKERS)):
    """A running cluster: a head with ``head_cpus`` CPUs and the ``workers`` nodes (one CPU each); every process
    of it is ended on exit, pass or fail."""
    temp = Path(tempfile.mkdtemp(prefix="tlc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    (temp / "faults").mkdir()
    # Token auth on, with this cluster's own token (``ray start --head`` does not create one; ~/.ray is left alone).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "TLSWEEP_TORCH_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_ADDRESS", None)
    c = LocalCluster(f"127.0.0.1:{port}", env, temp, processes)
    try:
        c.start("head", ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
                         f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
                         f"--num-cpus={head_cpus}"])
        c.start_workers(*workers)
        yield c
    finally:
        c.stop()
        shutil.rmtree(temp, ignore_errors=True)


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


def result_rows(storage: Path) -> dict[str, list[dict]]:
    """Trial id → rows of its result.json, in the order written (half-written lines skipped)."""
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
            out[rows[0]["trial_id"]] = rows
    return out


def histories(storage: Path) -> dict[str, pd.DataFrame]:
    """Trial id → rows of its result.json as a frame."""
    return {trial_id: pd.DataFrame(rows) for trial_id, rows in result_rows(storage).items()}


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
