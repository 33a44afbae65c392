"""The Ray Tune function trainable: a thin wrapper over ``tlsweep.trial.loop.Trial``."""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import time
import zipfile
from pathlib import Path

_IMPORTS_START = time.perf_counter()

import ray  # noqa: E402
import ray.tune as tune  # noqa: E402
import torch  # noqa: E402

from ..config.plan import SweepPlan, model_label  # noqa: E402
from ..trial.gpus import trial_device  # noqa: E402
from ..trial.latency import cached_latency  # noqa: E402
from ..trial.loop import CHECKPOINT_FILE, Trial, load_checkpoint  # noqa: E402
from ..trial.objectives import needs  # noqa: E402
from .checkpoint_epochs import checkpoint_epochs  # noqa: E402
from .cluster import trial_resources  # noqa: E402
from .hooks import EpochContext, TrialHooks  # noqa: E402
from .ray_internals import training_result  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _IMPORTS_START  # what a fresh trial worker pays to import torch & co.
_trials_in_this_process = 0
_fallbacks: list[str] = []  # what FallbackRestore did in this worker, for the next run's restore_warning

UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile)
log = logging.getLogger(__name__)


def train_trial(config: dict, spec: dict, hooks: TrialHooks | None = None) -> None:
    """``config``: the values the searcher drew (model label, hyperparameters); ``spec``: ``SweepPlan.to_dict()``
    with GPUs resolved; ``hooks``: see ``tlsweep.sweep.hooks``. Train on the device Ray assigned (a GPU share, or
    the CPU with every GPU hidden); restore from the trial's last checkpoint if Tune hands one over, then report
    every epoch."""
    global _trials_in_this_process
    started_at, start = time.time(), time.perf_counter()
    _trials_in_this_process += 1
    plan = SweepPlan.from_dict(spec)
    label = model_label(config)
    demand = plan.resources_of(label).demand()
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    device = trial_device(gpu_ids, bool(demand.get("GPU")))
    torch.set_num_threads(max(1, int(os.environ.get("TLSWEEP_TORCH_THREADS", demand["CPU"]))))
    trial = Trial(plan.trial_config(config), device=device, gpu_share=demand.get("GPU", 0.0))
    checkpoint = tune.get_checkpoint()
    warning = restore(trial, checkpoint) if checkpoint is not None else None
    warning = "; ".join(filter(None, [*_fallbacks, warning])) or None
    _fallbacks.clear()
    info = {"model_label": label, "total_params": trial.total_params,
            "trainable_params": trial.trainable_params, "node_ip": _node_ip(),
            "node_id": ray.get_runtime_context().get_node_id(), "start_epoch": trial.epoch,
            "cpus": demand["CPU"], "gpus": demand.get("GPU", 0.0),  # what Ray gave the trial (report: cost)
            "gpu_ids": ",".join(gpu_ids), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "started_at": started_at, "setup_s": time.perf_counter() - start,
            "val_images": len(trial.splits.val),  # the noise band of ASHA's comparisons (tlsweep.sweep.noise_asha)
            "import_s": IMPORT_SECONDS if _trials_in_this_process == 1 else 0.0,  # 0: a reused worker
            **{f"setup_{k}": v for k, v in trial.setup_seconds.items()},
            **{f"cache_{k}": v for k, v in trial.cache_info.items()}}
    if needs(plan, "latency_ms"):
        info["latency_ms"] = trial_latency(trial)
    due = checkpoint_epochs(plan, trial.max_epochs)
    hooks = hooks or TrialHooks()
    trial_id = tune.get_context().get_trial_id()
    hooks.on_start(EpochContext(trial_id, label, trial.epoch, info["node_id"]))
    for metrics in trial.run():
        info["train_seconds_total"] = sum(m["epoch_seconds"] for m in trial.history)
        info["train_s"] = sum(m.get("train_seconds", 0.0) for m in trial.history)
        hooks.before_report(EpochContext(trial_id, label, trial.epoch, info["node_id"]))
        # training_iteration is the trial's own epoch, also after a restore from an older checkpoint than Tune's
        result = {**metrics, **info, "training_iteration": trial.epoch}
        if warning:
            result["restore_warning"], warning = warning, None
        if not due(trial.epoch):
            tune.report(result)
        else:
            with tempfile.TemporaryDirectory() as directory:
                trial.save(directory)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
        hooks.after_report(EpochContext(trial_id, label, trial.epoch, info["node_id"]))


def restore(trial: Trial, checkpoint) -> str | None:
    """Restore the newest readable checkpoint: Tune's, else the trial's older ones beside it (a truncated or
    corrupt file after a crash or a full disk), else none (epoch 0). Returns a warning when it fell back."""
    with checkpoint.as_directory() as directory:
        try:
            state = load_checkpoint(Path(directory) / CHECKPOINT_FILE)
        except UNREADABLE as err:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]
        else:
            trial.load_state_dict(state)
            return None
    newest = Path(checkpoint.path)
    older = sorted(newest.parent.glob("checkpoint_*"), reverse=True) if newest.parent.is_dir() else []
    for folder in (f for f in older if f.name < newest.name):
        try:
            state = load_checkpoint(folder / CHECKPOINT_FILE)
        except UNREADABLE:
            continue
        trial.load_state_dict(state)
        message = f"checkpoint {newest} is unreadable ({reason}); resumed from {folder.name} (epoch {trial.epoch})"
        break
    else:
        message = f"checkpoint {newest} is unreadable ({reason}) and no older one is readable; restarted at epoch 0"
    log.warning(message)
    return message


class FallbackRestore:
    """Mixed into Tune's trial class (``__mixins__``). Tune fails a trial on every retry when the checkpoint it
    restores from is gone (deleted, lost with a disk): restore from the newest older checkpoint beside it instead,
    or start the trial over when there is none."""

    def restore(self, checkpoint_path):
        checkpoint = getattr(checkpoint_path, "checkpoint", None)
        if checkpoint is None or _exists(checkpoint.filesystem, checkpoint.path):
            return super().restore(checkpoint_path)
        older = _older_checkpoint(checkpoint)
        if older is None:
            _fallbacks.append(f"checkpoint {checkpoint.path} is missing and no older one exists; restarted at "
                              "epoch 0")
            log.warning(_fallbacks[-1])
            return None
        _fallbacks.append(f"checkpoint {checkpoint.path} is missing; resumed from {Path(older.path).name}")
        log.warning(_fallbacks[-1])
        return super().restore(training_result(older))


def _exists(fs, path: str) -> bool:
    import pyarrow.fs

    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def _older_checkpoint(missing):
    """The newest ``checkpoint_*`` folder beside ``missing`` (a ``Checkpoint``) that sorts before it, or None."""
    import pyarrow.fs

    parent, name = os.path.dirname(missing.path), os.path.basename(missing.path)
    try:
        entries = missing.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    except (OSError, FileNotFoundError):
        return None
    older = sorted((e.path for e in entries if e.type == pyarrow.fs.FileType.Directory
                    and e.base_name.startswith("checkpoint_") and e.base_name < name), reverse=True)
    return tune.Checkpoint(older[0], filesystem=missing.filesystem) if older else None


def make_trainable(plan: SweepPlan, hooks: TrialHooks | None = None):
    """The Tune trainable of a sweep: ``train_trial`` with the plan bound (as JSON data), its hooks, per-model
    resources and ``FallbackRestore``."""
    trainable = tune.with_parameters(train_trial, spec=plan.to_dict(), hooks=hooks)
    trainable.__mixins__ = (FallbackRestore,)
    return tune.with_resources(trainable, trial_resources(plan, hooks))


def trial_latency(trial: Trial) -> float:
    """The trial's model's batch-1 latency on its device, measured once per model config (node-local cache)."""
    c = trial.config
    return cached_latency(trial.model, c.model, len(trial.classes), c.data.image_size, trial.device, c.performance,
                          c.data)


def _node_ip() -> str:
    import ray.util

    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"
