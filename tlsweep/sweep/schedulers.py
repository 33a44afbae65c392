"""Trial schedulers by name: ``fifo`` runs every trial to ``epochs``; ``asha`` stops weak trials early.

ASHA's budget is counted in epochs (Tune's ``training_iteration``) or, with ``budget: seconds``, in training
seconds (``train_seconds_total``: the trial's summed train+eval time, reported every epoch), so cheap linear
probes and full fine-tunes reach the same rungs after the same compute. Trials still end at ``epochs``.
"""

from __future__ import annotations

from collections.abc import Callable

# spec ``scheduler.budget`` → (the reported attribute ASHA compares, spec keys for max_t and grace_period)
BUDGETS: dict[str, tuple[str, str | None, str]] = {
    "epochs": ("training_iteration", None, "grace_period"),
    "seconds": ("train_seconds_total", "max_seconds", "grace_seconds"),
}


def asha_kwargs(plain: dict) -> dict:
    """ASHAScheduler keyword arguments for a plain spec (``max_t`` is ``epochs`` for the epochs budget)."""
    cfg = plain["scheduler"]
    time_attr, max_key, grace_key = BUDGETS[cfg.get("budget", "epochs")]
    return {"time_attr": time_attr, "max_t": cfg[max_key] if max_key else plain["epochs"],
            "grace_period": cfg[grace_key], "reduction_factor": cfg["reduction_factor"]}


def _asha(plain: dict):
    from .resume import ResumableASHA  # ASHA whose rungs survive a resume

    return ResumableASHA(**asha_kwargs(plain))


def _fifo(plain: dict):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, Callable[[dict], object]] = {"asha": _asha, "fifo": _fifo}


def build_scheduler(plain: dict):
    """The Tune trial scheduler named by ``plain["scheduler"]["type"]``."""
    return SCHEDULERS[plain["scheduler"]["type"]](plain)
