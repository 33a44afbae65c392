"""Trial schedulers by name: ``fifo`` runs every trial to ``epochs``; ``asha`` stops weak trials early.

``SCHEDULERS`` is the one list: the spec's ``scheduler.type`` takes its names from it. An entry builds the Tune
scheduler from the ``SweepPlan`` and may say at which epochs it can stop a trial (``decision_epochs``: those
epochs always keep a checkpoint) and give a Tune callback that saves its state across a resume (``state``).

ASHA's budget is counted in epochs (Tune's ``training_iteration``) or, with ``budget: seconds``, in training
seconds (``train_seconds_total``: the trial's summed train+eval time, reported every epoch), so cheap linear
probes and full fine-tunes reach the same rungs after the same compute. Trials still end at ``epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.registry import Registry

if TYPE_CHECKING:
    from ..config.plan import SweepPlan

# spec ``scheduler.budget`` → (the reported attribute ASHA compares, plan fields for max_t and grace_period)
BUDGETS: dict[str, tuple[str, str | None, str]] = {
    "epochs": ("training_iteration", None, "grace_period"),
    "seconds": ("train_seconds_total", "max_seconds", "grace_seconds"),
}


@dataclass(frozen=True)
class SchedulerEntry:
    build: Callable[[SweepPlan], object]  # → a ray.tune scheduler
    decision_epochs: Callable[[SweepPlan], set[int]] = lambda plan: set()
    state: Callable[[object, SweepPlan], object] | None = None  # (scheduler, plan) → Tune callback, for resume


SCHEDULERS: Registry[SchedulerEntry] = Registry("scheduler")


def asha_kwargs(plan: SweepPlan) -> dict:
    """ASHAScheduler keyword arguments (``max_t`` is ``epochs`` for the epochs budget)."""
    cfg = plan.scheduler
    time_attr, max_key, grace_key = BUDGETS[cfg.budget]
    return {"time_attr": time_attr, "max_t": getattr(cfg, max_key) if max_key else plan.epochs,
            "grace_period": getattr(cfg, grace_key), "reduction_factor": cfg.reduction_factor}


def noise_kwargs(plan: SweepPlan) -> dict:
    """``NoiseAwareASHA``'s own arguments: the noise band below a rung's cutoff, and re-judging of lower rungs."""
    cfg = plan.scheduler
    return {"noise_band": cfg.noise_band, "noise_z": cfg.noise_z, "rejudge": cfg.rejudge}


def asha_rung_epochs(plan: SweepPlan) -> set[int]:
    """Epochs at which Ray's ASHA judges a trial (first epoch ≥ each milestone grace·rf^k ≤ max_t)."""
    if plan.scheduler.budget != "epochs":
        return set()
    kw = asha_kwargs(plan)
    grace, rf, max_t = kw["grace_period"], kw["reduction_factor"], kw["max_t"]
    rungs = int(math.log(max_t / grace) / math.log(rf) + 1)
    return {math.ceil(grace * rf ** k) for k in range(rungs)}


def asha_decision_epochs(plan: SweepPlan) -> set[int]:
    """The rung epochs, or with ``rejudge`` every epoch from the first rung (a re-judged trial stops at any)."""
    rungs = asha_rung_epochs(plan)
    if rungs and plan.scheduler.rejudge:
        return set(range(min(rungs), plan.epochs + 1))
    return rungs


def _asha(plan: SweepPlan):
    from .noise_asha import (
        NoiseAwareASHA,  # Ray's ASHA, resumable, stopping on signal (noise band, re-judging)
    )

    return NoiseAwareASHA(**asha_kwargs(plan), **noise_kwargs(plan))


def _asha_state(scheduler, plan: SweepPlan):
    from .scheduler_state import SchedulerState

    return SchedulerState(scheduler, plan.storage)


def _fifo(plan: SweepPlan):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS.register("asha", SchedulerEntry(_asha, asha_decision_epochs, _asha_state))
SCHEDULERS.register("fifo", SchedulerEntry(_fifo))


def build_scheduler(plan: SweepPlan):
    """The Tune trial scheduler named by ``plan.scheduler.type``."""
    return SCHEDULERS[plan.scheduler.type].build(plan)
