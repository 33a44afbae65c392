"""Find the checkpoint a user means: a ``checkpoint.pt`` file, a checkpoint folder, a trial folder (its best
checkpoint by the sweep's val metric, else its last) or a sweep results folder (the best trial overall, or the
best of one model with ``model=``). Selection reuses ``tlsweep.report`` (val metric only, never test)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import TLSweepError
from .layout import CHECKPOINT_FILE, PARAMS_FILE, SPEC_FILE, ResultsError, read_plan


class CheckpointError(TLSweepError, ValueError):
    """No usable checkpoint at the given path."""


def load_error(path: Path, err: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed."""
    if path.is_file() and path.stat().st_size == 0:
        return f"{path}: empty file (0 bytes), not a checkpoint"
    text = str(err).strip()
    if "Weights only load failed" in text:
        named = re.search(r"GLOBAL (\S+)", text)
        return (f"{path}: not a tlsweep checkpoint: it holds Python objects other than tensors and plain data"
                f"{f' ({named.group(1)})' if named else ''}; refused without running any of it (weights-only loading)")
    return f"{path}: cannot load checkpoint ({type(err).__name__}: {text.splitlines()[0][:200] if text else ''})"


@dataclass(frozen=True)
class Resolved:
    path: Path  # the checkpoint.pt file
    how: str  # what was picked and why, for messages


def _from_sweep(storage: Path, model: str | None) -> Resolved:
    from ..report.collect import ReportError, collect
    from ..report.leaderboard import pick_best

    try:
        sweep = collect(storage)
    except ReportError as err:
        raise CheckpointError(str(err)) from None
    picks = pick_best(sweep)
    if not picks:
        raise CheckpointError(f"{storage}: no trial has a checkpoint with a finite {sweep.metric} yet")
    if model is None:
        model = next(iter(picks))
    elif model not in picks:
        known = sorted({t.model for t in sweep.trials})
        raise CheckpointError(f"{storage}: no checkpoint for model {model!r}; models: {', '.join(known)}")
    pick = picks[model]
    return Resolved(pick.checkpoint, f"best {model} by {sweep.metric}={pick.val[sweep.metric]:.4g} "
                                     f"(trial {pick.trial.trial_id}, epoch {pick.epoch})")


def _iteration(folder: Path) -> int:
    digits = re.findall(r"\d+", folder.name)
    return int(digits[-1]) if digits else -1


def _from_trial(trial_dir: Path) -> Resolved:
    if (trial_dir.parent / SPEC_FILE).is_file():
        from ..report.collect import Sweep, read_trial

        try:
            plan = read_plan(trial_dir.parent)
        except ResultsError as err:
            raise CheckpointError(str(err)) from None
        sweep = Sweep(trial_dir.parent, plan, [])
        trial = read_trial(trial_dir, plan.epochs)
        row = trial.best_row(sweep.metric, sweep.mode)
        if row is not None:
            epoch = int(row["training_iteration"])
            return Resolved(trial.checkpoints[epoch], f"best epoch {epoch} of trial {trial.trial_id} by "
                                                      f"{sweep.metric}={row[sweep.metric]:.4g}")
    found = sorted(trial_dir.glob(f"*/{CHECKPOINT_FILE}"), key=lambda p: _iteration(p.parent))
    if not found:
        raise CheckpointError(f"{trial_dir}: trial folder without any */{CHECKPOINT_FILE}")
    return Resolved(found[-1], f"last checkpoint of trial folder {trial_dir.name}")


def resolve_checkpoint(path: str | Path, model: str | None = None) -> Resolved:
    """Find the checkpoint a path means.

    Args:
        path: A ``checkpoint.pt``, a checkpoint folder, a trial folder (its best checkpoint by the sweep's val
            metric, else its last) or a sweep's results folder (the best trial overall).
        model: With a results folder, a model label: that model's best trial.

    Returns:
        The ``checkpoint.pt`` path and what was picked and why (for messages).

    Raises:
        CheckpointError: Nothing at ``path``, or nothing there is a checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    is_sweep = path.is_dir() and (path / SPEC_FILE).is_file()
    if model is not None and not is_sweep:
        raise CheckpointError(f"{path}: --model needs a sweep results folder (one with {SPEC_FILE})")
    if is_sweep:
        return _from_sweep(path, model)
    if path.is_file():
        return Resolved(path, "checkpoint file")
    if (path / CHECKPOINT_FILE).is_file():
        return Resolved(path / CHECKPOINT_FILE, "checkpoint folder")
    if (path / PARAMS_FILE).is_file() or any(path.glob(f"*/{CHECKPOINT_FILE}")):
        return _from_trial(path)
    raise CheckpointError(f"{path}: not a checkpoint file, checkpoint folder, trial folder or sweep results folder")
