"""HParams summaries, written once per trial.

Tune's TensorBoard logger already writes each trial's scalars and, when the trial ends, its HParams into the
trial folder (one log tree: ``tensorboard --logdir <storage>``). The report adds ``<out>/tensorboard/<trial>``
runs only for trials that have no event file of Tune's (TensorBoard logging off, or files not copied), so no
trial shows twice.
"""

from __future__ import annotations

from pathlib import Path

from .collect import Sweep, TrialRecord

EVENTS = "events.out.tfevents.*"


def has_tune_events(trial: TrialRecord) -> bool:
    return any(trial.path.glob(EVENTS))


def write_hparams(sweep: Sweep, log_dir: Path) -> list[str]:
    """HParams runs for the trials Tune wrote none for; returns their trial ids."""
    missing = [t for t in sweep.trials if not has_tune_events(t)]
    if not missing:
        return []
    from torch.utils.tensorboard import SummaryWriter

    for t in missing:
        best = t.best_row(sweep.metric, sweep.mode, with_checkpoint=False)
        hparams = {k: v for k, v in t.config.items() if isinstance(v, (int, float, str, bool))}
        metrics = {f"hparam/{k}": float(best[k]) for k in ("val_acc", "val_loss")
                   if best is not None and k in best}
        metrics["hparam/epochs"] = float(t.epochs)
        with SummaryWriter(log_dir / f"{t.trial_id}_{t.model}") as writer:
            writer.add_hparams(hparams, metrics, run_name=".")
    return [t.trial_id for t in missing]
