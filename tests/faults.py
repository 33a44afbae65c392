"""Fault injection for the reliability tests and the chaos benchmark: ``Faults``, a ``tlsweep.sweep.hooks.TrialHooks``
given to ``run_sweep(..., hooks=Faults(folder))`` (or to the CLI through ``python -m tests.launch FOLDER run ...``).

``FOLDER/faults.json`` holds the rules, read at each epoch, and the markers they leave:

- ``{"raise_at": E}``: a trial raises ``InjectedFault`` in epoch E, before reporting it, once per trial
  (marker ``raised-<trial id>``): Tune retries it from its epoch E-1 checkpoint (``max_failures``).
- ``{"hold_after": E}`` / ``{"hold_before": E}``: after reporting epoch E (its checkpoint stored) / in epoch E
  before reporting it, a trial writes ``held-<trial id>`` (JSON: node id, worker pid) and waits until ``release``
  exists, once per trial, so a test acts on a trial that provably has epochs left (kills its node, its worker
  process, the driver). ``"labels": [...]`` limits both hold rules to trials of those model labels.
- ``{"track": true}``: each trial worker keeps ``at-<pid>.json`` (trial id, node id, epoch, whether it reported
  its last epoch) current, written when a run starts and after each report: which trial a worker process runs now.
- ``{"resources": {label: {resource: amount}}}``: extra Ray resources per trial of a model label (e.g. a custom
  resource only one node has), read on the driver: the test decides where trials run, not Ray.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tlsweep.sweep.hooks import EpochContext, TrialHooks


class InjectedFault(RuntimeError):
    """Raised by the ``raise_at`` rule."""


@dataclass(frozen=True)
class Faults(TrialHooks):
    folder: str

    @property
    def path(self) -> Path:
        return Path(self.folder)

    def rules(self) -> dict:
        try:
            return json.loads((self.path / "faults.json").read_text())
        except (OSError, ValueError):
            return {}

    def resources(self, label: str | None) -> dict[str, float]:
        return {k: float(v) for k, v in (self.rules().get("resources") or {}).get(str(label), {}).items()}

    def _once(self, name: str) -> bool:
        """Create marker ``name``; False when it already existed."""
        try:
            with open(self.path / name, "x"):
                return True
        except FileExistsError:
            return False

    def _hold(self, rule: str, ctx: EpochContext) -> None:
        r = self.rules()
        if r.get(rule) != ctx.epoch or ("labels" in r and ctx.label not in r["labels"]) \
                or not self._once(f"hold-{ctx.trial_id}"):
            return
        tmp = self.path / f".held-{ctx.trial_id}"
        tmp.write_text(json.dumps({"node_id": ctx.node_id, "pid": os.getpid(), "epoch": ctx.epoch}))
        tmp.replace(self.path / f"held-{ctx.trial_id}")
        while not (self.path / "release").exists():
            time.sleep(0.05)

    def _track(self, ctx: EpochContext, reported: bool) -> None:
        if not self.rules().get("track"):
            return
        tmp = self.path / f".at-{os.getpid()}"
        tmp.write_text(json.dumps({"trial_id": ctx.trial_id, "node_id": ctx.node_id, "epoch": ctx.epoch,
                                   "reported": reported, "time": time.time()}))
        tmp.replace(self.path / f"at-{os.getpid()}.json")

    def on_start(self, ctx: EpochContext) -> None:
        self._track(ctx, False)

    def before_report(self, ctx: EpochContext) -> None:
        if self.rules().get("raise_at") == ctx.epoch and self._once(f"raised-{ctx.trial_id}"):
            raise InjectedFault(f"injected fault in epoch {ctx.epoch}")
        self._hold("hold_before", ctx)

    def after_report(self, ctx: EpochContext) -> None:
        self._track(ctx, True)
        self._hold("hold_after", ctx)


def write_rules(folder: Path, **rules) -> Path:
    """Clear ``folder``'s markers of earlier runs and write ``rules``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        path.unlink()
    (folder / "faults.json").write_text(json.dumps(rules))
    return folder
