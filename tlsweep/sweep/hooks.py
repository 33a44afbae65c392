"""A seam for code that runs beside every trial, given to ``run_sweep(..., hooks=...)``: fault injection in tests
and benchmarks, instrumentation. A sweep run by the CLI has none."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochContext:
    """Where a trial is: its Tune id, model label, the epoch it trains (before) or reported (after), its node."""

    trial_id: str
    label: str
    epoch: int
    node_id: str


class TrialHooks:
    """Base class, every method a no-op. Instances are pickled to the trial workers (``on_start``,
    ``before_report``, ``after_report`` run there); ``resources`` runs on the driver."""

    def resources(self, label: str | None) -> dict[str, float]:
        """Extra Ray resources per trial of model ``label`` (e.g. a custom resource only one node has)."""
        return {}

    def on_start(self, ctx: EpochContext) -> None:
        """When a run of the trial starts on its worker, after any restore (``ctx.epoch``: the epochs it has)."""

    def before_report(self, ctx: EpochContext) -> None:
        """In each epoch, after training it and before reporting it (raising fails the trial there)."""

    def after_report(self, ctx: EpochContext) -> None:
        """After each epoch's report (and its checkpoint) went to Tune."""
