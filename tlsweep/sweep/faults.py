"""Test-only fault injection for the reliability tests (``tests/test_cluster.py``, ``tests/test_faults.py``).

Inert unless the environment variable ``TLSWEEP_TEST_FAULTS`` names a folder, in the processes that run trials
(for a cluster: set on ``ray start``). That folder holds ``faults.json`` with the rules and the markers they leave:

- ``{"raise_at": E}``: a trial raises ``InjectedFault`` in epoch E, before reporting it, once per trial
  (marker ``raised-<trial id>``): Tune retries it from its epoch E-1 checkpoint (``max_failures``).
- ``{"hold_after": E}`` / ``{"hold_before": E}``: after reporting epoch E (its checkpoint stored) / in epoch E
  before reporting it, a trial writes ``held-<trial id>`` (JSON: node id, worker pid) and waits until ``release``
  exists, once per trial, so a test acts on a trial that provably has epochs left (kills its node, its worker
  process, the driver). ``"labels": [...]`` limits both hold rules to trials of those model labels.
- ``{"resources": {label: {resource: amount}}}``: extra Ray resources per trial of a model label (e.g. a custom
  resource only one node has), read on the driver: the test decides where trials run, not Ray.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "TLSWEEP_TEST_FAULTS"


class InjectedFault(RuntimeError):
    """Raised by the ``raise_at`` rule."""


def _folder() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def rules() -> dict:
    folder = _folder()
    if folder is None:
        return {}
    try:
        return json.loads((folder / "faults.json").read_text())
    except (OSError, ValueError):
        return {}


def extra_resources(label: str | None) -> dict:
    return {k: float(v) for k, v in (rules().get("resources") or {}).get(str(label), {}).items()}


def _once(name: str) -> bool:
    """Create marker ``name``; False when it already existed."""
    try:
        with open(_folder() / name, "x"):
            return True
    except FileExistsError:
        return False


def _hold(rule: str, trial_id: str, label: str, epoch: int, node_id: str) -> None:
    r = rules()
    if r.get(rule) != epoch or ("labels" in r and label not in r["labels"]) or not _once(f"hold-{trial_id}"):
        return
    folder = _folder()
    tmp = folder / f".held-{trial_id}"
    tmp.write_text(json.dumps({"node_id": node_id, "pid": os.getpid(), "epoch": epoch}))
    tmp.replace(folder / f"held-{trial_id}")
    while not (folder / "release").exists():
        time.sleep(0.05)


def before_report(trial_id: str, label: str, epoch: int, node_id: str) -> None:
    if rules().get("raise_at") == epoch and _once(f"raised-{trial_id}"):
        raise InjectedFault(f"injected fault in epoch {epoch} (test only: {ENV})")
    _hold("hold_before", trial_id, label, epoch, node_id)


def after_report(trial_id: str, label: str, epoch: int, node_id: str) -> None:
    _hold("hold_after", trial_id, label, epoch, node_id)
