"""Every private Ray Tune attribute tlsweep reads, in one place (check them when upgrading Ray; 2.60 here).

- ASHA's rungs are not restored by ``Tuner.restore`` (ray-project/ray#30838): ``asha_state``/``set_asha_state``
  read and write ``ASHAScheduler._brackets[i]._rungs`` and ``_num_stopped``.
- Noise-aware ASHA (``noise_asha``) subclasses ASHA's private ``_Bracket`` (``AshaBracket``) and swaps a
  scheduler's brackets (``set_brackets``); its rule reads the scheduler's ``_metric`` and the bracket's ``_rungs`` (``rungs``: highest milestone
  first, each a milestone and its {trial id: signed metric}) and ``_stop_last_trials``.
- ``FallbackRestore`` (``trainable``) hands Tune's ``Trainable.restore`` a ``ray.train._internal.session
  ._TrainingResult`` (``training_result``), the type Tune passes it, for an older checkpoint.
- Ray's W&B callback kills its logging actor once the actor's ``run`` returns, while W&B's service may still be
  writing the run file: ``flushing_wandb_callback`` swaps in (``_logger_actor_cls``) a subclass of the private
  ``_WandbLoggingActor`` whose ``run`` waits for ``wandb.teardown()``.
- A ``ResultGrid`` does not say whether ``fit()`` returned early on Ctrl-C: ``grid_trials`` reads its
  ``_experiment_analysis.trials`` (each with ``.status``).
"""

from __future__ import annotations

from ray.tune.schedulers.async_hyperband import _Bracket as AshaBracket  # noqa: F401 (re-exported)


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


def rungs(bracket) -> list[tuple[float, dict]]:
    return bracket._rungs


def stops_last_trials(bracket) -> bool:
    return bracket._stop_last_trials


def metric_of(scheduler) -> str | None:
    return scheduler._metric


def brackets(scheduler) -> list:
    return scheduler._brackets


def set_brackets(scheduler, new: list) -> None:
    scheduler._brackets = new


def training_result(checkpoint):
    """What Tune hands ``Trainable.restore``: a checkpoint and the metrics reported with it (none here)."""
    from ray.train._internal.session import _TrainingResult

    return _TrainingResult(checkpoint=checkpoint, metrics={})


def flushing_wandb_callback(**kwargs):
    """Ray's ``WandbLoggerCallback`` whose logging actors return only after W&B's service has written the run
    (a service killed mid-teardown leaves a run file of its header alone)."""
    from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor

    class FlushingWandbActor(_WandbLoggingActor):
        def run(self):
            super().run()
            self._wandb.teardown()

    callback = WandbLoggerCallback(**kwargs)
    callback._logger_actor_cls = FlushingWandbActor
    return callback
