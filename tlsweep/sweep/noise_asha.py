"""ASHA that stops a trial on signal, not on noise: Ray's ``ASHAScheduler`` with two changes to its rung rule.

- **Noise band.** Ray stops a trial whose metric at a rung is below the rung's cutoff (the ``1 - 1/rf`` quantile
  of the results recorded there), however small the gap. Here it must be below by more than a band: a fixed width
  in metric units, or ``binomial``: ``z·√(2·p(1-p)/n)``, the standard error of the difference of two accuracies
  measured on the same-sized validation set (``n`` = the ``val_images`` a trial reports, ``p`` = the cutoff).
  Near-ties within the band go on; the trials a rung can tell apart are still stopped.
- **Re-judging.** Asynchronous ASHA lets the first trials at a rung through with nothing to compare against, so
  in a small sweep the early configs run to the end whatever they are worth. With ``rejudge``, every report of a
  trial also judges it again at each rung it passed, against all the results recorded there since (as
  synchronous successive halving would, without waiting). Such a trial can stop at any epoch after its first
  rung, so every epoch from ``grace_period`` on keeps a checkpoint (``schedulers.decision_epochs``).

``noise_band=0, rejudge=False`` is Ray's ASHA exactly. The rungs stay Ray's (read through ``ray_internals``), so
``ResumableASHA``'s state round-trips unchanged.
"""

from __future__ import annotations

import math

from ray.tune.schedulers.trial_scheduler import TrialScheduler

from .ray_internals import (
    AshaBracket,
    brackets,
    metric_of,
    rungs,
    set_brackets,
    stops_last_trials,
)
from .scheduler_state import ResumableASHA

# metrics that are a proportion of the validation images, so a binomial band applies
PROPORTIONS = {"val_acc", "val_macro_f1"}
NOISE_Z = 1.0  # the spec's default (``scheduler.noise_z``); benchmarks/RESULTS.md has the scan behind it


def binomial_band(p: float, n: int, z: float) -> float:
    """``z`` standard errors of the difference of two proportions near ``p``, each measured on ``n`` images."""
    if n <= 0:
        return 0.0
    p = min(max(abs(p), 0.0), 1.0)
    return z * math.sqrt(2 * p * (1 - p) / n)


class NoiseBracket(AshaBracket):
    """Ray's ASHA bracket whose stop rule leaves a noise band below the cutoff and can re-judge lower rungs."""

    def __init__(self, *args, band=0.0, z: float = NOISE_Z, rejudge: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.band, self.z, self.rejudge = band, z, rejudge
        self.val_images = 0  # of the result being judged; set by the scheduler

    def width(self, cutoff: float) -> float:
        if self.band == "binomial":
            return binomial_band(cutoff, self.val_images, self.z)
        return float(self.band)

    def below(self, value: float, recorded: dict) -> bool:
        """Whether ``value`` falls below the rung's cutoff by more than the noise band."""
        cutoff = self.cutoff(recorded)
        return cutoff is not None and value < cutoff - self.width(cutoff)

    def on_result(self, trial, cur_iter: int, cur_rew: float | None) -> str:
        stale = self.rejudge and any(self.below(rec[trial.trial_id], rec) for _, rec in rungs(self)
                                     if trial.trial_id in rec)
        action = TrialScheduler.STOP if stale else TrialScheduler.CONTINUE
        for milestone, recorded in rungs(self):
            if cur_iter >= milestone and trial.trial_id in recorded and not stops_last_trials(self):
                break
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            if cur_rew is None:
                break
            if self.below(cur_rew, recorded):
                action = TrialScheduler.STOP
            recorded[trial.trial_id] = cur_rew
            break
        return action


class NoiseAwareASHA(ResumableASHA):
    """``ASHAScheduler`` whose brackets are ``NoiseBracket``s (see the module docstring)."""

    def __init__(self, *, noise_band: float | str = "binomial", noise_z: float = NOISE_Z, rejudge: bool = True,
                 **asha_kwargs):
        super().__init__(**asha_kwargs)
        grace, max_t = asha_kwargs.get("grace_period", 1), asha_kwargs.get("max_t", 100)
        rf = asha_kwargs.get("reduction_factor", 4)
        stop_last = asha_kwargs.get("stop_last_trials", True)
        set_brackets(self, [NoiseBracket(grace, max_t, rf, s, stop_last_trials=stop_last, band=noise_band,
                                         z=noise_z, rejudge=rejudge) for s in range(len(brackets(self)))])

    def _set_band_input(self, result: dict) -> None:
        n = int(result.get("val_images") or 0) if metric_of(self) in PROPORTIONS else 0
        for bracket in brackets(self):
            bracket.val_images = n

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._set_band_input(result)
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._set_band_input(result)
        super().on_trial_complete(tune_controller, trial, result)
