"""Chaos: a sweep loses nothing while a seeded loop breaks what it runs on.

Each round runs one sweep (12 short mobilenet_v3_small trials, 8 with ``--quick``; ASHA) with
``tlsweep run --address`` on a two-node loopback cluster with token auth (``tests/cluster.py``: a head and a
worker node, one CPU each). While it runs, faults come at random times (seeded), each kind as often as the others:

- ``worker``: SIGKILL a running trial's worker process;
- ``node``: SIGKILL the worker node's whole ``ray start`` process group, then start a new worker node;
- ``driver``: SIGKILL the driver, then ``tlsweep run --resume``;
- ``checkpoint``: truncate or delete a running trial's newest checkpoint, then SIGKILL its worker so it restores.

After each round: every trial the sweep started is accounted for (``num_samples`` trials, each once, ended
finished, stopped or diverged: nothing but the faults makes these trials fail, so an error is a loss); each trial's history has no gaps and no duplicates within
a run, and every run after the first starts from a checkpoint at or before where the previous run got to (an
epoch whose checkpoint was destroyed runs again, its run starting earlier, with ``restore_warning`` set); the
report builds; no trial worker or driver process is left; ``tlsweep status`` counts the restarts the results
hold. A fault is *recovered* when its round passes every check; a trial is *lost* when a check fails for it.

    python -m benchmarks.bench_chaos [--quick] [--rounds N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ._common import WORK

REPO = Path(__file__).resolve().parents[1]
KINDS = ("worker", "node", "driver", "checkpoint")
TRIALS, QUICK_TRIALS, EPOCHS = 12, 8, 4
ROUNDS, FAULTS_PER_ROUND = 10, 2
ENDED = {"finished", "stopped", "diverged", "error"}
sys.path.insert(0, str(REPO))  # tests/cluster.py, tests/processes.py


@dataclass
class Fault:
    kind: str
    round: int
    at_s: float  # seconds into the round
    trial: str | None = None
    detail: str = ""


@dataclass
class Round:
    index: int
    faults: list[Fault] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    restarts: int = 0  # runs of a trial after its first, in its results
    retries: int = 0  # failures Tune retried (experiment state)
    reruns: int = 0  # epochs run a second time after a restore from an older checkpoint
    seconds: float = 0.0


def trial_count(quick: bool) -> int:
    return QUICK_TRIALS if quick else TRIALS


def make_data(root: Path, train: int) -> Path:
    from tlsweep.data.synthetic import make_shapes_dataset

    shutil.rmtree(root, ignore_errors=True)
    return make_shapes_dataset(root, num_classes=3, per_class={"train": train, "val": 8, "test": 4}, size=32, seed=0)


def sweep_file(folder: Path, root: Path, seed: int, trials: int) -> tuple[Path, Path]:
    storage = folder / "results"
    spec = {"name": "chaos", "data": {"root": str(root), "image_size": 32, "augment": "none"}, "weights": "none",
            "models": ["mobilenet_v3_small"],
            "search": {"lr": {"loguniform": [1e-3, 3e-2]}, "batch_size": 16, "optimizer": "adam",
                       "lr_scheduler": "none"},
            "epochs": EPOCHS, "num_samples": trials, "max_concurrent": 2, "max_failures": 10,
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
            "searcher": {"type": "optuna", "seed": seed}, "checkpoints": {"num_to_keep": EPOCHS},
            "resources": {"cpu": 1}, "seed": seed, "storage": str(storage)}
    path = folder / "chaos.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, storage


def tune_trials(storage: Path) -> list[tuple[dict, dict]]:
    """(state, runtime metadata) of each trial in Tune's newest experiment state, read here on its own."""
    files = sorted(storage.glob("experiment_state-*.json"))
    data = json.loads(files[-1].read_text()) if files else {"trial_data": []}
    return [(json.loads(t[0]), json.loads(t[1])) for t in data["trial_data"]]


def runs(history: list[dict]) -> list[list[dict]]:
    """The rows of each run of a trial (a run starts when ``started_at`` changes)."""
    out: list[list[dict]] = []
    for row in history:
        if not out or row.get("started_at") != out[-1][0].get("started_at"):
            out.append([])
        out[-1].append(row)
    return out


def running(faults: Path) -> dict[str, dict]:
    """Trial id → {pid, node_id, epoch, reported} of the trials worker processes run now (the ``track`` rule of
    ``tests/faults.py``), leaving out those that reported their last epoch."""
    from tests.cluster import cmdline

    out = {}
    for path in faults.glob("at-*.json"):
        try:
            at = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = int(path.stem.removeprefix("at-"))
        args = cmdline(pid)
        if args and "ImplicitFunc" in args[0] and not (at["reported"] and at["epoch"] >= EPOCHS):
            out[at["trial_id"]] = {**at, "pid": pid}
    return out


class Chaos:
    def __init__(self, cluster, folder: Path, root: Path, rng: random.Random, seed: int, trials: int):
        self.cluster, self.folder, self.rng, self.trials = cluster, folder, rng, trials
        self.sweep, self.storage = sweep_file(folder, root, seed, trials)
        self.drivers: list[subprocess.Popen] = []
        self.destroyed = 0
        self.start = time.monotonic()

    def launch(self, *extra: str) -> subprocess.Popen:
        log = open(self.folder / f"driver-{len(self.drivers)}.log", "w")
        env = {**self.cluster.env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
        proc = self.cluster.processes.popen(
            [sys.executable, "-m", "tests.launch", str(self.cluster.faults), "run", str(self.sweep),
             "--address", self.cluster.address, "--progress", "plain", *extra],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        log.close()
        self.drivers.append(proc)
        return proc

    @property
    def driver(self) -> subprocess.Popen:
        return self.drivers[-1]

    def log(self, k: int = -1) -> str:
        return (self.folder / f"driver-{len(self.drivers) + k if k < 0 else k}.log").read_text(errors="replace")

    def target(self, kind: str, deadline: float) -> tuple[str, dict] | None:
        """A running trial to act on (one with two checkpoints for ``checkpoint``), or None once the sweep ended."""
        while time.monotonic() < deadline and self.driver.poll() is None:
            live = running(self.cluster.faults)
            if kind != "worker":  # a trial with a checkpoint to come back from
                live = {t: r for t, r in live.items() if r["epoch"] >= 1}
            if kind == "checkpoint":
                live = {t: r for t, r in live.items() if len(self.checkpoints(t)) >= 2}
            if kind == "node":
                node = self.cluster.raylet("worker-a")[1]
                live = {t: r for t, r in live.items() if r.get("node_id") == node}
            if live:
                trial = self.rng.choice(sorted(live))
                return trial, live[trial]
            time.sleep(0.2)
        return None

    def checkpoints(self, trial_id: str) -> list[Path]:
        folder = next(self.storage.glob(f"{trial_id}_*"), None)
        return sorted(folder.glob("checkpoint_*")) if folder else []

    def inject(self, kind: str, round_: int) -> Fault | None:
        """Inject one fault of ``kind``; None when the sweep ended before there was anything to act on."""
        from tests.cluster import descendants
        from tlsweep.trial.loop import CHECKPOINT_FILE

        got = self.target(kind, time.monotonic() + 60)
        if got is None:
            return None
        trial, row = got
        at = time.monotonic() - self.start
        if kind == "driver":
            os.killpg(self.driver.pid, signal.SIGKILL)
            self.driver.wait()
            self.launch("--resume")
            return Fault(kind, round_, at, trial, f"driver SIGKILLed while {trial} ran epoch {row['epoch']}; "
                                                  "tlsweep run --resume")
        if kind == "node":
            proc = self.cluster.procs["worker-a"]
            pids = [proc.pid, *descendants(proc.pid)]
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.cluster.kill_node("worker-a")  # and any descendant that left the group
            time.sleep(self.rng.uniform(0, 3))
            self.cluster.ensure_worker("worker-a")
            return Fault(kind, round_, at, trial, f"node killed ({len(pids)} processes), a new one started")
        detail = ""
        if kind == "checkpoint":
            newest = self.checkpoints(trial)[-1]
            self.destroyed += 1
            if self.destroyed % 2 == 0:  # deleted first (Tune alone fails the trial then), truncated next
                data = (newest / CHECKPOINT_FILE).read_bytes()
                (newest / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
                detail = f"{newest.name} truncated; "
            else:
                shutil.rmtree(newest)
                detail = f"{newest.name} deleted; "
        try:
            os.kill(int(row["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
        return Fault(kind, round_, at, trial, detail + f"worker {row['pid']} SIGKILLed in epoch "
                                                       f"{row['epoch'] + row['reported']}")

    def finish(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while self.driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        if self.driver.poll() is None:
            self.cluster.processes.stop(self.driver)
            raise RuntimeError(f"sweep still running after {timeout:.0f}s:\n{self.log()[-3000:]}")


def check(chaos: Chaos, result: Round) -> None:
    """The round's invariants (module docstring); failures go to ``result.problems`` and ``result.lost``."""
    import pandas as pd

    from tests.cluster import cmdline, descendants, result_rows
    from tests.processes import alive, in_sessions

    storage, problems = chaos.storage, result.problems
    if chaos.driver.returncode != 0:
        problems.append(f"driver exited {chaos.driver.returncode}: {chaos.log()[-1500:]}")
    summary = pd.read_csv(storage / "summary.csv", dtype={"trial_id": str}) if (storage / "summary.csv").exists() else None
    trial_dirs = {p.name.split("_", 1)[0] for p in storage.iterdir() if p.is_dir() and "_" in p.name
                  and (p / "params.json").exists()}
    if summary is None:
        problems.append("no summary.csv")
        result.lost |= trial_dirs
        return
    ids = set(summary["trial_id"])
    if len(summary) != chaos.trials or summary["trial_id"].nunique() != chaos.trials:
        problems.append(f"summary has {len(summary)} rows, {summary['trial_id'].nunique()} trials "
                        f"(want {chaos.trials})")
    if trial_dirs != ids:
        problems.append(f"trial folders {sorted(trial_dirs - ids)} missing from the summary, "
                        f"{sorted(ids - trial_dirs)} without a folder")
        result.lost |= trial_dirs ^ ids
    for row in summary.itertuples():  # nothing but the faults makes these trials fail: an error is a loss
        if row.status not in ENDED or row.status == "error":
            problems.append(f"trial {row.trial_id}: status {row.status!r}, error {row.error!r}")
            result.lost.add(row.trial_id)

    history = result_rows(storage)
    for trial_id in ids:
        trial_runs = runs(history.get(trial_id, []))
        if not trial_runs:
            problems.append(f"trial {trial_id}: no history")
            result.lost.add(trial_id)
            continue
        reached = 0
        for k, run in enumerate(trial_runs):
            epochs = [int(r["training_iteration"]) for r in run]
            start = int(run[0].get("start_epoch", 0))
            if epochs != list(range(start + 1, start + 1 + len(epochs))) or (k == 0 and start != 0) \
                    or start > reached:
                problems.append(f"trial {trial_id} run {k}: epochs {epochs} from start_epoch {start}, "
                                f"{reached} reached before")
                result.lost.add(trial_id)
            result.reruns += max(0, reached - start)
            reached = max(reached, epochs[-1])
        final = int(summary.loc[summary["trial_id"] == trial_id, "epochs"].iloc[0])
        if final != trial_runs[-1][-1]["training_iteration"]:
            problems.append(f"trial {trial_id}: summary says {final} epochs, its last run reached "
                            f"{trial_runs[-1][-1]['training_iteration']}")
            result.lost.add(trial_id)
        result.restarts += len(trial_runs) - 1

    for fault in result.faults:  # a destroyed checkpoint: its trial ran again from an earlier one
        if fault.kind == "checkpoint":
            later = runs(history.get(fault.trial, []))
            warned = [r[0] for r in later if r[0].get("restore_warning")]
            fault.detail += f"; restore_warning in {len(warned)} run(s), runs {len(later)}"

    report = subprocess.run([sys.executable, "-m", "tlsweep.cli", "report", str(storage), "--no-soups",
                             "--cam-images", "2", "--threads", "1"], capture_output=True, text=True, cwd=REPO,
                            env=chaos.cluster.env, timeout=600)
    if report.returncode != 0 or not (storage / "report" / "report.html").exists():
        problems.append(f"report exited {report.returncode}: {(report.stdout + report.stderr)[-1500:]}")

    retried = sum(max(0, int(m.get("num_failures") or 0) - (t.get("status") == "ERROR"))
                  for t, m in tune_trials(storage))
    status = subprocess.run([sys.executable, "-m", "tlsweep.cli", "status", str(storage), "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    try:
        shown = json.loads(status.stdout)
        shown = (shown["restarts"], shown["retries"])
    except (ValueError, KeyError):
        shown = None
    result.retries = retried
    if shown != (result.restarts, retried) or (result.faults and not sum(shown or ())):
        problems.append(f"tlsweep status shows (restarts, retries) {shown}; the results hold "
                        f"{(result.restarts, retried)} after {len(result.faults)} fault(s)")

    def busy() -> list[str]:
        left = [" ".join(cmdline(p)) for p in in_sessions({d.pid for d in chaos.drivers}) if alive(p)]
        for role in [r for r in chaos.cluster.procs if chaos.cluster.procs[r].poll() is None]:
            left += [a[0].strip() for p in descendants(chaos.cluster.procs[role].pid) if (a := cmdline(p))
                     and "ImplicitFunc" in a[0]]  # a trial worker still running
        return left

    deadline = time.monotonic() + 60
    while (left := busy()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        problems.append(f"processes left over: {left[:5]}")


def plan_faults(rng: random.Random, quick: bool, rounds: int) -> list[list[str]]:
    """Fault kinds per round: every kind equally often, in a seeded order."""
    if quick:  # one short round: the driver's restart, the slowest to recover from, comes last
        kinds = [k for k in KINDS if k != "driver"]
        rng.shuffle(kinds)
        return [kinds + ["driver"]]
    kinds = [KINDS[i % len(KINDS)] for i in range(rounds * FAULTS_PER_ROUND)]
    rng.shuffle(kinds)
    return [kinds[i:i + FAULTS_PER_ROUND] for i in range(0, len(kinds), FAULTS_PER_ROUND)]


def chaos_rounds(quick: bool = False, rounds: int = ROUNDS, seed: int = 0, work: Path | None = None) -> list[Round]:
    """Run the rounds in ``work`` (default ``benchmarks/_work/results/chaos``, emptied first)."""
    from tests.cluster import local_cluster
    from tests.faults import write_rules
    from tests.processes import Processes

    rng = random.Random(seed)
    if work is None:
        work = WORK / "results" / "chaos"
        shutil.rmtree(work, ignore_errors=True)
    root = make_data(work / "data", train=32 if quick else 64)  # quick: shorter epochs, the same faults
    plan = plan_faults(rng, quick, rounds)
    done: list[Round] = []
    with Processes() as processes, local_cluster(processes, head_cpus=1, workers=("worker-a",)) as cluster:
        k, limit = 0, len(plan) + 4
        while plan and k < limit:  # a kind that did not fire (the sweep ended first) goes to the next round
            kinds = plan.pop(0)
            folder = work / f"round{k}"
            folder.mkdir(parents=True)
            chaos, result = Chaos(cluster, folder, root, rng, seed + k, trial_count(quick)), Round(k)
            write_rules(cluster.faults, track=True)
            cluster.ensure_worker("worker-a")
            chaos.launch()
            missed = []
            for kind in kinds:
                time.sleep(rng.uniform(0.5, 4.0))
                fault = chaos.inject(kind, k)
                (result.faults.append(fault) if fault else missed.append(kind))
            chaos.finish()
            result.seconds = time.monotonic() - chaos.start
            check(chaos, result)
            done.append(result)
            for fault in result.faults:
                print(f"  {fault.at_s:5.1f} s {fault.kind}: {fault.detail}", file=sys.stderr, flush=True)
            print(f"round {k}: {len(result.faults)} faults ({', '.join(f.kind for f in result.faults)}), "
                  f"missed {missed}, {result.restarts} restarts, {result.retries} retries, {result.reruns} epochs re-run, "
                  f"{result.seconds:.0f} s, problems: {result.problems or 'none'}", file=sys.stderr, flush=True)
            if missed:
                if plan:
                    plan[0] = missed + plan[0]
                else:
                    plan.append(missed)
            k += 1
    from tests.processes import leftovers

    if left := leftovers(str(cluster.temp), grace=30):
        done[-1].problems.append(f"processes left after the cluster stopped: {list(left.values())[:5]}")
    return done


def row(done: list[Round], quick: bool, seed: int) -> dict:
    fired, trials = Counter(f.kind for r in done for f in r.faults), trial_count(quick)
    recovered = sum(len(r.faults) for r in done if not r.problems)
    lost = sum(len(r.lost) for r in done)
    need = 1 if quick else 3
    met = lost == 0 and all(not r.problems for r in done) and all(fired[k] >= need for k in KINDS) \
        and (quick or len(done) >= ROUNDS)
    problems = [p for r in done for p in r.problems]
    return {"benchmark": "chaos" + (" (quick)" if quick else ""),
            "baseline": f"{len(done)} rounds × {trials} trials, {sum(fired.values())} faults",
            "candidate": f"{recovered} recovered, {lost} trials lost",
            "ratio": lost / max(1, len(done) * trials), "target": "0 lost; every kind ≥ " + str(need),
            "met": met,
            "notes": (f"seed {seed}; faults by kind: " + ", ".join(f"{k} {fired[k]}" for k in KINDS)
                      + f"; trial restarts {sum(r.restarts for r in done)}, failures retried "
                      f"{sum(r.retries for r in done)}, epochs re-run "
                      f"{sum(r.reruns for r in done)}; round seconds "
                      + ", ".join(f"{r.seconds:.0f}" for r in done)
                      + (f"; problems: {'; '.join(problems)[:600]}" if problems else ""))}


def run(quick: bool = False, rounds: int = ROUNDS, seed: int = 0) -> list[dict]:
    done = chaos_rounds(quick, rounds, seed)
    return [row(done, quick, seed)]


if __name__ == "__main__":
    from .run import format_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: end the cluster and drivers first
    print(format_table(run(args.quick, args.rounds, args.seed)))
