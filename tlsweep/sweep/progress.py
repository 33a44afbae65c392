"""Live progress in the terminal: one line per epoch result and per finished trial."""

from __future__ import annotations

import time

from ray.tune import Callback
from rich.console import Console
from rich.markup import escape


class ProgressPrinter(Callback):
    def __init__(self, metric: str = "val_acc", total: int | None = None):
        self.metric = metric
        self.total = total
        self.done = 0

    @property
    def console(self) -> Console:
        return _CONSOLE

    def on_trial_result(self, iteration, trials, trial, result, **info):
        model = escape(str((trial.config or {}).get("model", "?")))
        value = result.get(self.metric)
        if result.get("restore_warning"):
            self.console.print(f"[yellow]warning:[/] trial {trial.trial_id}: {escape(result['restore_warning'])}",
                               soft_wrap=True)
        flag = " [red]diverged[/]" if result.get("diverged") else ""
        self.console.print(f"  {trial.trial_id} {model:<28} epoch {result.get('training_iteration'):>3}  "
                           f"{self.metric} {value:.4f}  ({result.get('epoch_seconds', 0):.1f}s){flag}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self._finished(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        self._finished(trial, "[red]error[/]")

    def _finished(self, trial, what):
        of = f"/{self.total}" if self.total else ""
        self.console.print(f"[bold]{trial.trial_id} {what}[/] ({self.done}{of} trials)")


_CONSOLE = Console()


class TrialLaunches(Callback):
    """When Tune started each trial (its actor is up; wall clock), for ``start_s`` in summary.csv."""

    def __init__(self):
        self.at: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.at.setdefault(trial.trial_id, time.time())
