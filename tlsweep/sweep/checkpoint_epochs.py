"""Which epochs of a trial save a checkpoint: every ``checkpoints.frequency`` epochs, the last epoch, and each
epoch where the scheduler (ASHA, epochs budget) may stop the trial, so a stopped trial's last epoch is always kept.
Saving every epoch (the default) costs a full model + optimizer ``torch.save`` and a copy into storage each time."""

from __future__ import annotations

from ..config.plan import SweepPlan
from .schedulers import SCHEDULERS, asha_rung_epochs  # noqa: F401 (asha_rung_epochs re-exported)


def checkpoint_epochs(plan: SweepPlan, max_epochs: int):
    """``epoch → bool``: whether the trial saves a checkpoint after that (1-based) epoch."""
    every = plan.checkpoints.frequency
    rungs = SCHEDULERS[plan.scheduler.type].decision_epochs(plan) if every > 1 else set()
    return lambda epoch: every <= 1 or epoch % every == 0 or epoch >= max_epochs or epoch in rungs
