"""Processes the tests start, and proof that none outlives them (Linux ``/proc``).

``Processes`` starts each subprocess in a session of its own and, when closed (pass or fail), ends every process
of those sessions and every descendant of them: SIGTERM, then SIGKILL after a grace period. ``leftovers`` lists
processes still alive that this pytest process started: its descendants (it is a child subreaper, so orphans
stay its descendants) and processes of its own Ray temp dir. Other programs' processes are never matched.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
# Helpers that interpreters keep for their own lifetime and end at exit (not started by a test).
INTERPRETER_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "joblib.externals.loky")


def make_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, is not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in _pids():
        if (stat := _stat(p)) is not None:
            children.setdefault(int(stat[1]), []).append(p)
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def in_sessions(sessions: set[int]) -> list[int]:
    return [p for p in _pids() if (stat := _stat(p)) is not None and int(stat[3]) in sessions]


def _signal(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pids) -> None:
    """Collect our exited children that no ``Popen`` owns (orphans handed to us as subreaper)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def stop_all(pids, grace: float = 10.0) -> None:
    """SIGTERM ``pids``, SIGKILL those alive after ``grace`` seconds."""
    pids = [p for p in pids if p != os.getpid()]
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal([p for p in pids if alive(p)], signal.SIGKILL)


class Processes:
    """Subprocesses of one test or fixture: ``popen``/``run`` like ``subprocess``'s, each in a new session."""

    def __init__(self, grace: float = 10.0):
        self.grace = grace
        self.started: list[subprocess.Popen] = []
        self.seen: set[int] = set()

    def popen(self, args, **kw) -> subprocess.Popen:
        kw.pop("start_new_session", None)
        if kw.pop("capture_output", False):
            kw.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc = subprocess.Popen(args, start_new_session=True, **kw)
        self.started.append(proc)
        return proc

    def run(self, args, timeout: float = 600, input=None, check: bool = False, **kw) -> subprocess.CompletedProcess:
        """``subprocess.run`` whose timeout ends the whole process tree and fails the test with its output."""
        proc = self.popen(args, **({"stdin": subprocess.PIPE} if input is not None else {}), **kw)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            out, err = proc.communicate()
            raise AssertionError(f"{args} still running after {timeout}s:\n{str(out)[-3000:]}\n{str(err)[-3000:]}") \
                from None
        if check and proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, args, out, err)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    def tree(self, proc: subprocess.Popen) -> list[int]:
        """``proc``, its descendants and every process of its session (orphans too)."""
        pids = {proc.pid, *descendants(proc.pid), *in_sessions({proc.pid})}
        self.seen |= pids
        return [p for p in pids if alive(p)]

    def stop(self, proc: subprocess.Popen) -> None:
        stop_all(self.tree(proc), self.grace)
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        for proc in self.started:
            self.stop(proc)
        _reap(self.seen - {p.pid for p in self.started})
        for proc in self.started:
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def leftovers(ray_tmpdir: str, grace: float = 0.0) -> dict[int, str]:
    """PID → command line of processes still alive that this process started (see the module docstring),
    waiting up to ``grace`` seconds for those on their way out."""
    deadline = time.monotonic() + grace
    while True:
        mine = set(descendants(os.getpid())) | {p for p in _pids() if ray_tmpdir in cmdline(p)}
        left = {p: cmdline(p) for p in mine if p != os.getpid() and alive(p)}
        left = {p: c for p, c in left.items() if not any(h in c for h in INTERPRETER_HELPERS)}
        _reap(p for p in mine if not alive(p))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.5)


def wait_for(predicate, timeout: float = 240, what: str = "the condition", proc: subprocess.Popen | None = None,
             interval: float = 0.2):
    """Poll ``predicate`` until it returns a truthy value, and return that value. ``proc``: fail at once when
    that process ended first (with its output). Predicates return a falsy value while the files they read are
    missing or half-written; they never raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            output = "\n".join(str(o)[-3000:] for o in proc.communicate() if o)
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n{output}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def listening_sockets(pids) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket that ``pids`` listen on (IPv4 and IPv6)."""
    import ipaddress

    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc/net shows each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            out.append((str(getattr(ip, "ipv4_mapped", None) or ip), int(hex_port, 16), inodes[fields[9]]))
    return out


def size(path: Path) -> int:
    """Bytes in ``path``; 0 while it is missing (for ``wait_for`` predicates)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
