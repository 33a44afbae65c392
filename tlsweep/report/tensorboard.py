"""An HParams summary per trial, so TensorBoard's HParams tab compares configs side by side.

Tune already writes each trial's scalars under the storage folder (one log tree: ``tensorboard --logdir
<storage>``); this adds ``<out>/tensorboard/<trial>`` runs carrying the config and best metrics.
"""

from __future__ import annotations

from pathlib import Path

from .collect import Sweep


def write_hparams(sweep: Sweep, log_dir: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    for t in sweep.trials:
        best = t.best_row(sweep.metric, sweep.mode, with_checkpoint=False)
        hparams = {k: v for k, v in t.config.items() if isinstance(v, (int, float, str, bool))}
        metrics = {f"hparam/{k}": float(best[k]) for k in ("val_acc", "val_loss")
                   if best is not None and k in best}
        metrics["hparam/epochs"] = float(t.epochs)
        with SummaryWriter(log_dir / f"{t.trial_id}_{t.model}") as writer:
            writer.add_hparams(hparams, metrics, run_name=".")
    return log_dir
