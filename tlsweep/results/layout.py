"""The results folder of a sweep, free of Ray (pandas imported on use): file names, trial folders and ids,
trial status, best epoch, per-epoch history and the one per-trial table (``summary.csv`` of the runner,
``trials.csv`` of the report).

    <storage>/tlsweep_spec.json           the SweepPlan (``SweepPlan.to_dict()``)
    <storage>/summary.csv                 one row per trial (TRIAL_COLUMNS + hyperparameters), after a run
    <storage>/optuna_journal.log          the sweep's Optuna studies (``searcher.storage: file``, the default)
    <storage>/<trial id>_<model>/         params.json (sampled values), result.json / progress.csv (one row per
                                          epoch), error.txt, checkpoint_*/checkpoint.pt
"""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.plan import SweepPlan, model_label
from ..config.sections import ConfigError
from ..errors import TLSweepError
from .storage import is_uri  # noqa: F401 (the storage module owns it; re-exported here)

if TYPE_CHECKING:
    import pandas as pd

SPEC_FILE = "tlsweep_spec.json"
SUMMARY_FILE = "summary.csv"
TRIALS_FILE = "trials.csv"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
ERROR_FILE = "error.txt"
STUDY_FILE = "optuna_journal.log"  # Optuna's JournalStorage: one line per study/trial change
CHECKPOINT_FILE = "checkpoint.pt"
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
TRIAL_COLUMNS = ("trial_id", "model", "status", "epochs", "best_epoch", *METRICS, "wall_s", "nodes", "error",
                 "path")  # then the trial's sampled hyperparameters, by name


class ResultsError(TLSweepError, ValueError):
    """A results folder that cannot be read (missing, no spec, written by an incompatible tlsweep)."""


class Status(str, Enum):
    """A trial's status in ``summary.csv``, the report and ``tlsweep status``."""

    FINISHED = "finished"  # ran all epochs
    STOPPED = "stopped"  # stopped early by the scheduler
    DIVERGED = "diverged"  # the training loss became NaN/inf
    ERROR = "error"
    PENDING = "pending"  # no epoch reported yet
    INTERRUPTED = "interrupted"  # still running when the sweep was interrupted; ``--resume`` continues it

    def __str__(self) -> str:
        return self.value


USABLE = (Status.FINISHED.value, Status.STOPPED.value)  # trials whose checkpoints may be picked


def _safe(model) -> str:
    return str(model).replace("/", "_")


def trial_dirname(trial_id: str, model: str | None) -> str:
    """A trial's folder: ``<trial id>_<model label>``."""
    return f"{trial_id}_{_safe(model or 'trial')}"


def parse_trial_id(dirname: str, model: str | None = None) -> str:
    """The trial id of a folder named by ``trial_dirname``."""
    name = Path(dirname).name
    return name.removesuffix("_" + _safe(model)) if model else name.split("_")[0]


def dedupe_history(history: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch: a trial restored from an older checkpoint reports some epochs again (the latest
    report of each counts)."""
    import pandas as pd

    if "training_iteration" not in history:
        history = history.assign(training_iteration=pd.Series(dtype=int))
    history = history.sort_values("training_iteration", kind="stable")
    return history.drop_duplicates("training_iteration", keep="last").reset_index(drop=True)


def read_history(trial_dir: Path) -> pd.DataFrame:
    """Per-epoch rows: ``result.json`` (JSON lines, survives copying) else ``progress.csv``."""
    import pandas as pd

    rows = []
    result = trial_dir / RESULT_FILE
    if result.is_file():
        for line in result.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                continue
    if not rows and (trial_dir / PROGRESS_FILE).is_file():
        try:
            return pd.read_csv(trial_dir / PROGRESS_FILE, dtype={"trial_id": str})
        except pd.errors.EmptyDataError:
            pass
    return dedupe_history(pd.DataFrame(rows))


def read_error(trial_dir: Path, history: pd.DataFrame) -> str | None:
    """The last line of ``error.txt``, else the last ``error`` a trial reported (a divergence)."""
    error_file = trial_dir / ERROR_FILE
    if error_file.is_file():
        lines = error_file.read_text().strip().splitlines()
        if lines:
            return lines[-1][:300]
    return reported_error(history)


def reported_error(history: pd.DataFrame) -> str | None:
    if "error" in history and history["error"].notna().any():
        return str(history["error"].dropna().iloc[-1])
    return None


def trial_status(history: pd.DataFrame, error: str | None, max_epochs: int, running: bool = False) -> Status:
    """The one definition of a trial's status from its per-epoch history and error; ``running``: Tune had not
    ended the trial when the sweep returned (Ctrl-C, SIGTERM)."""
    if "diverged" in history and history["diverged"].fillna(False).astype(bool).any():
        return Status.DIVERGED
    reported = not history.empty and "training_iteration" in history
    finished = reported and int(history["training_iteration"].max()) >= max_epochs
    if error and not finished:  # Tune leaves error.txt behind when a retry from a checkpoint then finishes
        return Status.ERROR
    if not reported:
        return Status.PENDING
    if finished:
        return Status.FINISHED
    return Status.INTERRUPTED if running else Status.STOPPED


def best_row(history: pd.DataFrame, metric: str, mode: str, epochs=None) -> pd.Series | None:
    """The epoch with the best finite ``metric`` (only among ``epochs`` when given, e.g. those with a kept
    checkpoint); None when there is none."""
    h = history
    if h.empty or metric not in h:
        return None
    if epochs is not None:
        h = h[h["training_iteration"].isin(list(epochs))]
    h = h[h[metric].map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
    if h.empty:
        return None
    return h.loc[h[metric].idxmin() if mode == "min" else h[metric].idxmax()]


def kept_checkpoints(trial_dir: Path, history: pd.DataFrame) -> dict[int, Path]:
    """Kept checkpoints by epoch, matched through the ``checkpoint_dir_name`` Tune records per row."""
    found = {}
    if "checkpoint_dir_name" in history:
        for it, name in zip(history["training_iteration"], history["checkpoint_dir_name"]):
            path = trial_dir / str(name) / CHECKPOINT_FILE
            if isinstance(name, str) and path.is_file():
                found[int(it)] = path
    return found


def trial_nodes(history: pd.DataFrame) -> str | None:
    """The nodes a trial's epochs ran on, in order (``ip/node-id prefix``), e.g. a retry after a node loss."""
    import pandas as pd

    if "node_id" not in history and "node_ip" not in history:
        return None
    ids = history["node_id"] if "node_id" in history else pd.Series([""] * len(history))
    ips = history["node_ip"] if "node_ip" in history else pd.Series([""] * len(history))
    nodes: list[str] = []
    for ip, node in zip(ips.fillna(""), ids.fillna("")):
        label = f"{ip}/{str(node)[:8]}" if node else str(ip)
        if label and (not nodes or nodes[-1] != label):
            nodes.append(label)
    return " → ".join(nodes) or None


def trial_row(trial_id: str, config: dict, status: Status | str, history: pd.DataFrame, metric: str, mode: str,
              error: str | None = None, path: str | Path | None = None, tracked: tuple[str, ...] = ()) -> dict:
    """One row of the per-trial table (``TRIAL_COLUMNS``, the ranking metric, the ``tracked`` objective and
    constraint metrics at the best epoch (``tlsweep.trial.objectives``), then the sampled hyperparameters)."""
    import pandas as pd

    from ..trial.objectives import values_of

    best = best_row(history, metric, mode)
    epochs = int(history["training_iteration"].max()) if len(history) else 0
    row = {"trial_id": trial_id, "model": model_label(config), "status": str(status), "epochs": epochs,
           "best_epoch": int(best["training_iteration"]) if best is not None else None}
    for m in dict.fromkeys((*METRICS, metric)):
        row[m] = float(best[m]) if best is not None and m in best and pd.notna(best[m]) else None
    if tracked:
        row.update(values_of(best if best is not None else {}, list(tracked)))
    row["wall_s"] = float(history["epoch_seconds"].sum()) if "epoch_seconds" in history else None
    row["nodes"] = trial_nodes(history)
    row["error"] = error
    row["path"] = str(path) if path is not None else None
    row.update({k: v for k, v in config.items() if k != "model"})
    return row


def trials_frame(rows: list[dict], plan: SweepPlan | None = None) -> pd.DataFrame:
    """The per-trial table; with a multi-objective or constrained ``plan``, plus ``feasible``/``pareto``."""
    import pandas as pd

    from ..trial.objectives import annotate

    frame = pd.DataFrame(rows, columns=None if rows else list(TRIAL_COLUMNS))
    return annotate(frame, plan, USABLE) if plan is not None else frame


def read_plan(storage: str | Path) -> SweepPlan:
    """Read the plan a sweep was run with from its results folder (``tlsweep_spec.json``).

    Args:
        storage: The sweep's local storage folder.

    Returns:
        The ``SweepPlan``, every default resolved.

    Raises:
        ResultsError: The folder holds no ``tlsweep_spec.json``, or one an incompatible tlsweep wrote; the message
            names the folder and what to do.
    """
    path = Path(storage) / SPEC_FILE
    if not path.is_file():
        raise ResultsError(f"{storage}: no {SPEC_FILE} here; give the sweep's storage folder "
                           f"(the `storage` of the sweep file)")
    try:
        return SweepPlan.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:  # ConfigError, JSONDecodeError, a layout we cannot read
        raise ResultsError(f"{storage}: its {SPEC_FILE} was written by an incompatible tlsweep ({err}); report "
                           f"it with the tlsweep version that ran the sweep, or run the sweep again") from None


def write_plan(plan: SweepPlan, storage: str | None = None) -> None:
    """Write ``tlsweep_spec.json`` into the storage (a local folder or URI, see ``tlsweep.results.storage``)."""
    from .storage import locate, write_text

    write_text(locate(storage or plan.storage), SPEC_FILE, json.dumps(plan.to_dict(), indent=2))


__all__ = ["CHECKPOINT_FILE", "ConfigError", "ResultsError", "SPEC_FILE", "SUMMARY_FILE", "Status", "TRIALS_FILE",
           "best_row", "is_uri", "parse_trial_id", "read_history", "read_plan", "trial_dirname", "trial_row",
           "trial_status", "write_plan"]
