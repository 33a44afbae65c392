"""Sweep progress without Ray: trial states, best so far per model, epochs done and left, ETA.

One ``Progress`` is fed either live (``tlsweep.sweep.progress_callback.ProgressCallback`` inside Ray Tune) or from a
sweep's storage alone (``Progress.from_storage``: spec, experiment state, trial folders), and drawn by the same
views: ``render`` (a rich renderable for a live terminal or notebook), ``plain`` lines for logs, ``to_dict``.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config.plan import model_label
from .layout import ERROR_FILE

ENDED = ("finished", "stopped", "diverged", "error")
STATUSES = ("pending", "running", *ENDED)
STYLE = {"running": "cyan", "finished": "green", "stopped": "yellow", "diverged": "magenta", "error": "red"}


@dataclass
class TrialState:
    trial_id: str
    model: str
    status: str = "pending"
    epochs: int = 0
    best: float | None = None
    best_epoch: int | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    error: str | None = None
    error_file: str | None = None
    restarts: int = 0  # runs after the first: the trial recovered from a fault (a lost worker, node or driver)
    retries: int = 0  # failures Tune retried (a lost worker process or node, an error), from its experiment state
    run_started: float | None = None


def error_line(text: str) -> str:
    """The failing exception's ``Type: message`` from a traceback or Ray's error.txt (last failure)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    hits = [i for i, ln in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b:?", ln)]
    line = lines[hits[-1]] if hits else (lines[-1] if lines else "error")
    return re.sub(r"^ray\.exceptions\.\w+: ", "", line)[:300]


class Progress:
    """What a sweep has done and has left; ``metric``/``mode`` rank the best so far."""

    def __init__(self, name: str, metric: str, mode: str, total_trials: int, max_epochs: int,
                 storage: str = "", clock=time.monotonic):
        self.name, self.metric, self.mode = name, metric, mode
        self.total_trials, self.max_epochs, self.storage = total_trials, max_epochs, storage
        self.trials: dict[str, TrialState] = {}
        self._clock = clock
        self.started: float | None = clock()

    # feeding
    def trial(self, trial_id: str, model: str) -> TrialState:
        if trial_id not in self.trials:
            self.trials[trial_id] = TrialState(trial_id, model)
        return self.trials[trial_id]

    def start(self, trial_id: str, model: str) -> TrialState:
        state = self.trial(trial_id, model)
        state.status = "running"
        return state

    def result(self, trial_id: str, model: str, metrics: dict) -> TrialState:
        """One epoch's metrics (``training_iteration``, the metric, ``time_this_iter_s``/``epoch_seconds``)."""
        state = self.trial(trial_id, model)
        if state.status == "pending":
            state.status = "running"
        run = metrics.get("started_at")  # set once per run of the trial: a new value is a restart
        if run is not None and state.run_started is not None and run != state.run_started:
            state.restarts += 1
        state.run_started = run if run is not None else state.run_started
        epoch = int(metrics.get("training_iteration") or state.epochs + 1)
        if epoch <= state.epochs:  # re-reported after a restore
            return state
        state.epochs = epoch
        seconds = metrics.get("time_this_iter_s", metrics.get("epoch_seconds"))
        if isinstance(seconds, (int, float)) and math.isfinite(seconds):
            state.epoch_seconds.append(float(seconds))
        value = metrics.get(self.metric)
        finite = isinstance(value, (int, float)) and math.isfinite(value)
        if finite and (state.best is None or self._better(value, state.best)):
            state.best, state.best_epoch = float(value), epoch
        if metrics.get("diverged"):
            state.status = "diverged"
        return state

    def end(self, trial_id: str, model: str, error: str | None = None, error_file: str | None = None,
            diverged: bool = False) -> TrialState:
        state = self.trial(trial_id, model)
        if error is not None:
            state.status, state.error, state.error_file = "error", error, error_file
        elif diverged or state.status == "diverged":
            state.status = "diverged"
        else:
            state.status = "finished" if state.epochs >= self.max_epochs else "stopped"
        return state

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    # reading
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for t in self.trials.values():
            counts[t.status] += 1
        counts["pending"] += max(0, self.total_trials - len(self.trials))
        return counts

    def epochs_done(self) -> int:
        return sum(t.epochs for t in self.trials.values())

    def epochs_left(self) -> int:
        """At most this many epochs to go (ASHA may stop trials sooner)."""
        open_trials = [t for t in self.trials.values() if t.status in ("pending", "running")]
        unseen = max(0, self.total_trials - len(self.trials))
        return sum(max(0, self.max_epochs - t.epochs) for t in open_trials) + unseen * self.max_epochs

    def epoch_seconds(self) -> float | None:
        """Mean measured seconds per epoch (as Tune saw it: training, evaluation, checkpoint)."""
        times = [s for t in self.trials.values() for s in t.epoch_seconds]
        return sum(times) / len(times) if times else None

    def eta_seconds(self) -> float | None:
        """Upper bound: epochs left × mean epoch time ÷ trials running at once."""
        left, per_epoch = self.epochs_left(), self.epoch_seconds()
        if left == 0:
            return 0.0
        running = self.counts()["running"]
        if per_epoch is None or running == 0:
            return None
        return left * per_epoch / running

    def best_per_model(self) -> dict[str, TrialState]:
        best: dict[str, TrialState] = {}
        for t in self.trials.values():
            if t.best is not None and (t.model not in best or self._better(t.best, best[t.model].best)):
                best[t.model] = t
        return best

    def models(self) -> list[str]:
        return list(dict.fromkeys(t.model for t in self.trials.values()))

    def failures(self) -> list[TrialState]:
        return [t for t in self.trials.values() if t.status == "error"]

    def restarts(self) -> int:
        """Trial runs after a fault (restored from a checkpoint, or from the start when none was readable)."""
        return sum(t.restarts for t in self.trials.values())

    def retries(self) -> int:
        """Trial failures Tune retried (a trial's last failure counts only when it was retried)."""
        return sum(t.retries for t in self.trials.values())

    def done(self) -> bool:
        c = self.counts()
        return c["pending"] == 0 and c["running"] == 0

    def to_dict(self) -> dict:
        best = self.best_per_model()
        return {
            "name": self.name, "storage": self.storage, "metric": self.metric, "mode": self.mode,
            "total_trials": self.total_trials, "max_epochs": self.max_epochs, "counts": self.counts(),
            "epochs_done": self.epochs_done(), "epochs_left_at_most": self.epochs_left(),
            "epoch_seconds": self.epoch_seconds(), "eta_seconds": self.eta_seconds(), "done": self.done(),
            "restarts": self.restarts(), "retries": self.retries(),
            "models": {m: {"trials": sum(t.model == m for t in self.trials.values()),
                           "running": sum(t.model == m and t.status == "running" for t in self.trials.values()),
                           "best": best[m].best if m in best else None,
                           "best_trial": best[m].trial_id if m in best else None,
                           "best_epoch": best[m].best_epoch if m in best else None} for m in self.models()},
            "trials": [{"trial_id": t.trial_id, "model": t.model, "status": t.status, "epochs": t.epochs,
                        "best": t.best, "error": t.error, "error_file": t.error_file, "restarts": t.restarts,
                        "retries": t.retries}
                       for t in self.trials.values()],
        }

    # views
    def summary_line(self) -> str:
        c = self.counts()
        parts = [f"{c[s]} {s}" for s in STATUSES if c[s]]
        eta = self.eta_seconds()
        return (f"{self.name}: {', '.join(parts) or 'no trials'} of {self.total_trials} trials; epochs "
                f"{self.epochs_done()} done, ≤{self.epochs_left()} left; ETA {format_seconds(eta)}")

    def render(self):
        """A rich renderable: summary, epochs bar, per-model table, failures."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        c = self.counts()
        head = Text.assemble((f"{self.name} ", "bold"), *(
            (f"{c[s]} {s}  ", STYLE.get(s, "")) for s in STATUSES if c[s]))
        done, left = self.epochs_done(), self.epochs_left()
        eta = self.eta_seconds()
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(1, done + left), completed=done, width=40),
                    f"epochs {done}/≤{done + left}", f"ETA {format_seconds(eta)}",
                    f"elapsed {format_seconds(self._clock() - self.started)}" if self.started is not None else "")
        table = Table("model", "trials", "running", f"best {self.metric}", "trial", "epoch", box=None,
                      header_style="bold")
        best = self.best_per_model()
        for m in self.models():
            trials = [t for t in self.trials.values() if t.model == m]
            b = best.get(m)
            table.add_row(m, str(len(trials)), str(sum(t.status == "running" for t in trials)),
                          f"{b.best:.4f}" if b else "-", b.trial_id if b else "-", str(b.best_epoch) if b else "-")
        parts = [head, bar, table]
        if hit := [t for t in self.trials.values() if t.restarts or t.retries]:
            trials = ", ".join(f"{t.trial_id} ×{max(t.restarts, t.retries)}" for t in hit[:8])
            parts.append(Text(f"recovered: {self.retries()} trial failure(s) retried, {self.restarts()} restart(s) "
                              f"from checkpoints ({trials})", style="yellow"))
        for t in self.failures()[-5:]:
            parts.append(Text.assemble(("error ", "red bold"), f"{t.trial_id} {t.model}: {t.error}"
                                       + (f"\n  full error: {t.error_file}" if t.error_file else "")))
        return Group(*parts)

    @classmethod
    def from_storage(cls, storage: str, local_dir: str | None = None) -> Progress:
        """Rebuild the progress of a sweep running elsewhere, or finished, from its results folder.

        Args:
            storage: The sweep's storage folder or URI.
            local_dir: A local copy of a remote ``storage`` to read instead.

        Returns:
            The sweep's ``Progress``: trial states, best so far per model, epochs done and left.

        Raises:
            ResultsError: The folder holds no sweep tlsweep can read.
        """
        from ..config.space import total_trials
        from .layout import read_plan

        plan = read_plan(local_dir or storage)
        root = local_dir or storage
        progress = cls(plan.name, plan.scheduler.metric, plan.scheduler.mode, total_trials(plan), plan.epochs,
                       storage)
        progress.started = None  # unknown: the sweep ran elsewhere
        tune_trials = _tune_trials(root)  # the experiment state, read once
        statuses = {t["trial_id"]: t.get("status") for t, _ in tune_trials if "trial_id" in t}
        failures = _failures(tune_trials)
        for trial_dir in sorted(glob.glob(os.path.join(root, "*", "params.json"))):
            folder = os.path.dirname(trial_dir)
            trial_id = os.path.basename(folder).split("_", 1)[0]
            model = model_label(json.loads(open(trial_dir).read())) or "?"
            for metrics in _results(os.path.join(folder, "result.json")):
                progress.result(trial_id, model, metrics)
            state = progress.trial(trial_id, model)
            tune_status = statuses.get(trial_id)
            state.retries = max(0, failures.get(trial_id, 0) - (tune_status == "ERROR"))
            error_path = os.path.join(folder, ERROR_FILE)
            if tune_status == "ERROR" or (tune_status is None and os.path.isfile(error_path)):
                text = open(error_path).read() if os.path.isfile(error_path) else ""
                progress.end(trial_id, model, error=error_line(text),
                             error_file=f"{storage.rstrip('/')}/{os.path.basename(folder)}/{ERROR_FILE}")
            elif tune_status == "TERMINATED":
                progress.end(trial_id, model)
            elif state.status != "diverged" and tune_status in ("RUNNING", None):
                state.status = "running" if tune_status == "RUNNING" else state.status
        return progress


def _tune_trials(root: str) -> list[tuple[dict, dict]]:
    """(state, runtime metadata) of each trial in the newest experiment state file (empty if none)."""
    files = sorted(glob.glob(os.path.join(root, "experiment_state-*.json")))
    if not files:
        return []
    try:
        data = json.loads(open(files[-1]).read())
        return [(json.loads(t[0]), json.loads(t[1]) if len(t) > 1 else {}) if isinstance(t, list)
                else (json.loads(t), {}) for t in data.get("trial_data", [])]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return []


def _failures(tune_trials: list[tuple[dict, dict]]) -> dict[str, int]:
    """Trial id → how often the trial failed (Tune's ``num_failures``)."""
    return {t["trial_id"]: int(m.get("num_failures") or 0) for t, m in tune_trials if "trial_id" in t}


def _tune_failures(root: str) -> dict[str, int]:
    return _failures(_tune_trials(root))


def _results(path: str) -> Iterable[dict]:
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return out


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class View:
    """Draws a ``Progress`` as events arrive: ``live`` (rich, redrawn in place: terminal or notebook), ``plain``
    (a line per trial event plus a summary line at most every ``every`` seconds: logs, CI) or ``none``."""

    def __init__(self, progress: Progress, mode: str = "auto", console=None, every: float = 30.0):
        from rich.console import Console

        self.progress = progress
        self.console = console or Console(soft_wrap=True)
        if mode == "auto":
            mode = "live" if self.console.is_terminal or self.console.is_jupyter else "plain"
        if mode not in VIEW_MODES:
            raise ValueError(f"progress must be one of {', '.join(VIEW_MODES)}, not {mode!r}")
        self.mode, self.every = mode, every
        self._live = None
        self._last_line = progress._clock()

    def __enter__(self) -> View:
        if self.mode == "live":
            from rich.live import Live

            self._live = Live(get_renderable=self.progress.render, console=self.console, refresh_per_second=2,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        elif self.mode == "plain":
            self.console.print(self.progress.summary_line(), highlight=False)

    def event(self, kind: str, state: TrialState) -> None:
        """``kind``: start, result or end."""
        if self.mode == "none":
            return
        if kind == "end":
            self.console.print(self._end_line(state), highlight=False)
        elif kind == "start" and self.mode == "plain":
            self.console.print(f"  {state.trial_id} {state.model} started", highlight=False, markup=False)
        if self.mode == "plain" and (kind == "end" or self.progress._clock() - self._last_line >= self.every):
            self._last_line = self.progress._clock()
            self.console.print(self.progress.summary_line(), highlight=False, markup=False)
        if self._live is not None:
            self._live.refresh()

    def warning(self, text: str) -> None:
        """A line that stays (above a live view), whatever the mode: e.g. a trial resumed from an older checkpoint."""
        from rich.markup import escape

        self.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)

    def _end_line(self, t: TrialState) -> str:
        from rich.markup import escape

        style = STYLE.get(t.status, "")
        head = f"  [{style}]{t.status}[/] {t.trial_id} {escape(t.model)}"
        if t.status == "error":
            where = f"\n    full error: {escape(t.error_file)}" if t.error_file else ""
            return head + f": {escape(t.error or '')}" + where
        best = f"{self.progress.metric} {t.best:.4f} at epoch {t.best_epoch}" if t.best is not None else "no result"
        return head + f" after {t.epochs}/{self.progress.max_epochs} epochs: {best}"


VIEW_MODES = ("auto", "live", "plain", "none")
