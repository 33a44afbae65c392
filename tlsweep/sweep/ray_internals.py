"""Every private Ray Tune attribute tlsweep reads, in one place (check them when upgrading Ray; 2.60 here).

- ASHA's rungs are not restored by ``Tuner.restore`` (ray-project/ray#30838): ``asha_state``/``set_asha_state``
  read and write ``ASHAScheduler._brackets[i]._rungs`` and ``_num_stopped``.
- A ``ResultGrid`` does not say whether ``fit()`` returned early on Ctrl-C: ``grid_trials`` reads its
  ``_experiment_analysis.trials`` (each with ``.status``).
"""

from __future__ import annotations


def asha_state(scheduler) -> dict:
    """ASHA's rungs as plain data: milestone → {trial id: recorded metric}, per bracket."""
    return {"num_stopped": scheduler._num_stopped,
            "brackets": [[[float(milestone), {str(t): float(v) for t, v in recorded.items()}]
                          for milestone, recorded in b._rungs]
                         for b in scheduler._brackets]}


def set_asha_state(scheduler, state: dict) -> None:
    scheduler._num_stopped = state.get("num_stopped", scheduler._num_stopped)
    for bracket, rungs in zip(scheduler._brackets, state["brackets"]):
        saved = {float(m): rec for m, rec in rungs}
        for milestone, recorded in bracket._rungs:
            recorded.update(saved.get(float(milestone), {}))


def grid_trials(grid) -> list:
    """The Tune ``Trial`` objects behind a ``ResultGrid`` (with ``status``: TERMINATED, ERROR, PENDING, ...)."""
    return list(grid._experiment_analysis.trials)
