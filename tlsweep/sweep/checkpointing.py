"""Which epochs of a trial save a checkpoint: every ``checkpoints.frequency`` epochs, the last epoch, and each
epoch where ASHA (epochs budget) may stop the trial, so a stopped trial's last epoch is always kept. Saving
every epoch (the default) costs a full model + optimizer ``torch.save`` and a copy into storage each time."""

from __future__ import annotations

import math

from .schedulers import asha_kwargs


def asha_rung_epochs(plain: dict) -> set[int]:
    """Epochs at which Ray's ASHA judges a trial (first epoch ≥ each milestone grace·rf^k ≤ max_t)."""
    sched = plain["scheduler"]
    if sched["type"] != "asha" or sched.get("budget", "epochs") != "epochs":
        return set()
    kw = asha_kwargs(plain)
    grace, rf, max_t = kw["grace_period"], kw["reduction_factor"], kw["max_t"]
    rungs = int(math.log(max_t / grace) / math.log(rf) + 1)
    return {math.ceil(grace * rf ** k) for k in range(rungs)}


def checkpoint_epochs(plain: dict, max_epochs: int):
    """``epoch → bool``: whether the trial saves a checkpoint after that (1-based) epoch."""
    every = int((plain.get("checkpoints") or {}).get("frequency", 1))
    rungs = asha_rung_epochs(plain) if every > 1 else set()
    return lambda epoch: every <= 1 or epoch % every == 0 or epoch >= max_epochs or epoch in rungs
