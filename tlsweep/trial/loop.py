"""One trial, free of Ray: build data and model from a ``TrialConfig``, train epoch by epoch, yield metrics.

A ``tlsweep.config.plan.TrialConfig`` holds the resolved hyperparameters plus model, data, epochs, seed and performance
(``SweepPlan.trial_config``; ``TrialConfig.from_dict`` reads a checkpoint's). A checkpoint is a plain dict of
tensors and numbers (its ``config`` is ``TrialConfig.to_dict()``), loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config.plan import TrialConfig
from ..data import load_splits
from ..data.cache.pipeline import train_images, trial_data
from ..data.transforms import TransformedDataset  # noqa: F401 (re-exported)
from ..models import build_model
from ..models.heads import head_seed, reseed_head
from ..models.transfer import count_parameters
from ..results.layout import CHECKPOINT_FILE
from .fastpath import FastPath
from .finetune import Recipe, frozen_counts, param_groups, thaw
from .gpus import device_metrics
from .memory import TrialMemory
from .optim import LR_SCHEDULERS, OPTIMIZERS

FINITE_EVERY = 32  # steps between checks that the training loss is finite (each check waits for the GPU)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_device(requested: str | None = "auto") -> torch.device:
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, generator=None,
                pin_memory: bool = False, collate_fn=None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=generator, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      drop_last=False, collate_fn=collate_fn)


class Trial:
    """Holds a trial's data, model, optimizer and LR scheduler; ``run()`` yields one metrics dict per epoch.

    Args:
        config: The trial's ``TrialConfig`` (``SweepPlan.trial_config``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; None takes ``config.device``.
        splits: Train/val/test datasets already loaded; None loads them from ``config.data``.
        gpu_share: The share of its GPU the trial was given (sizes the device input path).
    """

    def __init__(self, config: TrialConfig, device: str | torch.device | None = None, splits=None,
                 gpu_share: float = 1.0):
        self.config = config
        self.gpu_share = gpu_share  # of the GPU it trains on (Ray's), for the device input path
        self.device = resolve_device(device if device is not None else config.device)
        self.memory = TrialMemory.for_trial(config, self.device, gpu_share)  # estimate, allocator cap, budget
        self.epoch = 0
        self.history: list[dict] = []
        torch.manual_seed(config.seed)
        clock = time.perf_counter()
        self.splits = splits or load_splits(config.data, config.seed)
        self.classes = self.splits.classes
        self.fast = FastPath(config.performance, self.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        batch_size = int(config.batch_size)
        self.setup_seconds = {"data_s": time.perf_counter() - clock}
        clock = time.perf_counter()
        model = reseed_head(build_model(config.model, len(self.classes), config.freeze_depth), head_seed(config))
        self.model = self.fast.prepare_model(model.to(self.device))
        self.setup_seconds["model_s"], clock = time.perf_counter() - clock, time.perf_counter()
        plan = trial_data(config, self.splits, self.model, self.device, self.fast,  # caches: see tlsweep.data.cache
                          self.memory.budget)
        self.cache_info, self.forward = plan.info, self.fast.compiled(plan.forward)
        self._pin = self.fast.pin_memory and plan.pin_memory
        self._plan, self.train_size = plan, plan.train_size
        self.train_loader = self._batches(plan.train, batch_size, True, self.generator, plan.collate)
        self.val_loader = self._batches(plan.val, max(batch_size, 64), False, None, plan.collate)
        self.setup_seconds["loaders_s"] = time.perf_counter() - clock
        self.recipe = Recipe.from_config(config)  # discriminative LRs, gradual unfreezing: see tlsweep.trial.finetune
        self.initial_frozen = frozen_counts(self.model)
        self.optimizer = OPTIMIZERS[config.optimizer](param_groups(self.model, self.recipe), config)
        lr_scheduler = LR_SCHEDULERS[config.lr_scheduler]
        self.sched_step = lr_scheduler.step
        self.scheduler = lr_scheduler.build(self.optimizer, config, len(self.train_loader))
        self.loss_fn = nn.CrossEntropyLoss(weight=self._class_weights() if config.class_weighted_loss else None,
                                           label_smoothing=float(config.label_smoothing))
        self.total_params, self.trainable_params = count_parameters(self.model)
        self.precise_bn_images = precise_bn_images(config)

    def _batches(self, dataset: Dataset, batch_size: int, shuffle: bool, generator, collate):
        """A loader on the CPU path, or batches augmented on the device (``tlsweep.data.cache.device``)."""
        from ..data.cache.decoded import CachedImages
        from ..data.cache.features import FeatureBatches, FeatureSet

        if isinstance(dataset, FeatureSet):
            return FeatureBatches(dataset, batch_size, shuffle, generator)
        if self._plan.device_input and isinstance(dataset, CachedImages):
            from ..data.cache.device import DeviceBatches

            return DeviceBatches(dataset, batch_size, shuffle, self.device, generator, budget=self.memory.budget)
        return make_loader(dataset, batch_size, shuffle, self._plan.workers, generator, self._pin, collate)

    def _class_weights(self) -> torch.Tensor:
        """n / (k · count) per class from the training targets: rare classes weigh more."""
        counts = torch.bincount(torch.as_tensor(self.splits.train.targets), minlength=len(self.classes)).float()
        return (counts.sum() / (len(self.classes) * counts.clamp(min=1))).to(self.device)

    def _resize_train(self) -> None:
        """Rebuild the train loader when ``data.image_size_schedule`` changes the size at this epoch."""
        size = self.config.data.train_size(self.epoch)
        if self.train_size is None or size == self.train_size:
            return
        dataset, collate = train_images(self.config, self.splits, size)
        _release(self.train_loader)
        self.train_loader = self._batches(dataset, int(self.config.batch_size), True, self.generator, collate)
        self.train_size = size

    @property
    def max_epochs(self) -> int:
        return int(self.config.epochs)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _thaw(self, epoch: int) -> None:
        """Unfreeze what ``unfreeze_every`` thaws by ``epoch``; leave the feature cache once a backbone trains."""
        if not thaw(self.model, self.initial_frozen, epoch, self.recipe, self.optimizer, self.scheduler):
            return
        self.total_params, self.trainable_params = count_parameters(self.model)
        if self.train_size is None:  # the plan served cached features: no longer valid
            _release(self.train_loader)
            _release(self.val_loader)
            plan = trial_data(self.config, self.splits, self.model, self.device, self.fast, self.memory.budget)
            self.forward, self._plan, self.train_size = self.fast.compiled(plan.forward), plan, plan.train_size
            self.cache_info = {**plan.info, "feature_cache": f"until epoch {epoch}"}
            self._pin = self.fast.pin_memory and plan.pin_memory
            batch_size = int(self.config.batch_size)
            self.train_loader = self._batches(plan.train, batch_size, True, self.generator, plan.collate)
            self.val_loader = self._batches(plan.val, max(batch_size, 64), False, None, plan.collate)

    def train_epoch(self) -> dict:
        """One epoch. Nothing per step waits for the GPU: sums stay on the device and are read once at the end;
        the loss is checked to be finite every ``FINITE_EVERY`` steps and at the end."""
        self._thaw(self.epoch)
        self._resize_train()
        self.model.train()
        total, step = 0, 0
        loss_sum, correct = self._zeros()
        start = time.perf_counter()
        with self.memory.explained(self.config):
            for step, (images, labels) in enumerate(self.train_loader, 1):
                images = self.fast.inputs(images)
                labels = labels.to(self.device, non_blocking=True)
                with self.fast.autocast():
                    logits = self.forward(images)
                    loss = self.loss_fn(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                self.fast.backward_step(loss, self.optimizer)
                if self.scheduler is not None and self.sched_step == "batch":
                    self.scheduler.step()
                n = labels.size(0)
                total += n
                loss_sum += loss.detach().to(loss_sum.dtype) * n
                correct += (logits.argmax(1) == labels).sum()
                if step % FINITE_EVERY == 0:
                    self._check_finite(loss_sum, step)
            loss_sum, correct = self._read(loss_sum, correct)
        if not math.isfinite(loss_sum):
            raise Diverged(f"training loss became {loss_sum} by step {step} of epoch {self.epoch + 1}")
        seconds = time.perf_counter() - start
        return {"train_loss": loss_sum / total, "train_acc": correct / total,
                "train_seconds": seconds, "images_per_s": total / seconds, "train_size": self.train_size,
                "trainable_params": self.trainable_params, "param_groups": len(self.optimizer.param_groups)}

    def _zeros(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A loss sum (float64 where the device has it: the same figures as Python floats) and a count."""
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        return (torch.zeros((), dtype=dtype, device=self.device),
                torch.zeros((), dtype=torch.int64, device=self.device))

    @staticmethod
    def _read(loss_sum: torch.Tensor, count: torch.Tensor) -> tuple[float, int]:
        """Both sums in one read from the device."""
        loss, n = torch.stack([loss_sum.double(), count.double()]).tolist()
        return loss, int(n)

    def _check_finite(self, loss_sum: torch.Tensor, step: int) -> None:
        if not bool(torch.isfinite(loss_sum)):
            raise Diverged(f"training loss became {loss_sum.item()} by step {step} of epoch {self.epoch + 1}")

    @torch.no_grad()
    def precise_bn(self) -> int:
        """"Precise BN" (pycls, Detectron2): recompute the running statistics of the BatchNorm layers that train as
        a plain average over ``precise_bn_images`` training images, so that eval-mode statistics match the weights
        instead of lagging them (momentum 0.01 and below). Returns the images used (0: nothing to do)."""
        if not self.precise_bn_images or self.train_size is None:  # off, or the head trains on cached features
            return 0
        self.model.train()  # frozen stages keep their BatchNorm in eval mode: those are left alone
        norms = [m for m in self.model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
        if not norms:
            return 0
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        seen = 0
        for images, _ in self.train_loader:
            with self.fast.autocast():
                self.forward(self.fast.inputs(images))
            seen += images.size(0)
            if seen >= self.precise_bn_images:
                break
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        return seen

    @torch.no_grad()
    def evaluate(self, loader: DataLoader | None = None) -> dict:
        self.model.eval()
        total = 0
        loss_sum, correct = self._zeros()
        k = len(self.classes)
        pairs = torch.zeros(k * k, dtype=torch.long, device=self.device)  # confusion counts, true * k + predicted
        forward = self.forward if loader is None else self.model
        for images, labels in loader or self.val_loader:
            images, labels = self.fast.inputs(images), labels.to(self.device, non_blocking=True)
            with self.fast.autocast():
                logits = forward(images).float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").to(loss_sum.dtype)
            preds = logits.argmax(1)
            correct += (preds == labels).sum()
            total += labels.size(0)
            cells = labels * k + preds
            pairs.scatter_add_(0, cells, torch.ones_like(cells))
        sums = torch.cat([loss_sum.double().view(1), correct.double().view(1), pairs.double()]).tolist()  # one read
        loss_sum, correct = sums[0], int(sums[1])
        return {"val_loss": loss_sum / max(total, 1), "val_acc": correct / max(total, 1),
                "val_macro_f1": macro_f1(torch.tensor(sums[2:], dtype=torch.float64).view(k, k))}

    def step(self) -> dict:
        """Train one epoch and evaluate.

        Returns:
            The epoch's metrics (``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
            ``val_macro_f1``, ``lr``, ...); ``diverged`` is True when the loss became NaN or infinite.
        """
        start = time.perf_counter()
        lr = self.lr()
        try:
            metrics = self.train_epoch()
        except Diverged as err:
            self.epoch += 1
            metrics = {"epoch": self.epoch, "train_loss": math.inf, "train_acc": 0.0, "val_loss": math.inf,
                       "val_acc": 0.0, "val_macro_f1": 0.0, "lr": lr, "diverged": True, "error": str(err),
                       "epoch_seconds": time.perf_counter() - start}
            self.history.append(metrics)
            return metrics
        metrics["precise_bn_images"] = self.precise_bn()
        metrics.update(self.evaluate())
        if self.scheduler is not None:
            if self.sched_step == "metric":
                self.scheduler.step(metrics["val_loss"])
            elif self.sched_step == "epoch":
                self.scheduler.step()
        self.epoch += 1
        metrics.update(epoch=self.epoch, lr=lr, diverged=False, epoch_seconds=time.perf_counter() - start,
                       **device_metrics(self.device))
        self.history.append(metrics)
        return metrics

    def run(self) -> Iterator[dict]:
        """Train from the current epoch to ``epochs``, stopping after a diverged epoch.

        Yields:
            Each epoch's metrics, as ``step`` returns them.
        """
        while self.epoch < self.max_epochs:
            metrics = self.step()
            yield metrics
            if metrics["diverged"]:
                return

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.fast.scaler.state_dict() if self.fast.scaler.is_enabled() else None,
            "epoch": self.epoch,
            "frozen_stages": frozen_counts(self.model),
            "rng": rng_state(self.device, self.generator),
            "history": self.history,
            "classes": self.classes,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for epoch in range(int(state["epoch"])):  # the thawed stages and their groups, as when it was saved
            self._thaw(epoch)
        saved = state.get("frozen_stages")
        if saved is not None and list(saved) != frozen_counts(self.model):
            raise ValueError(f"checkpoint has {list(saved)} frozen stages at epoch {state['epoch']}, this trial's "
                             f"config gives {frozen_counts(self.model)} (freeze_depth or unfreeze_every changed)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.fast.scaler.is_enabled() and state.get("scaler"):
            self.fast.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"], self.device, self.generator)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (temp file, then rename).

        Args:
            directory: The checkpoint folder; ``checkpoint.pt`` is written inside it.

        Returns:
            The checkpoint file's path.
        """
        return save_checkpoint(self.state_dict(), Path(directory) / CHECKPOINT_FILE)

    def restore(self, directory: str | os.PathLike) -> None:
        self.load_state_dict(load_checkpoint(Path(directory) / CHECKPOINT_FILE))


PRECISE_BN_AUTO = 256  # images: what pycls and Detectron2 use per GPU is of this order (they default to ~1k-8k)


def precise_bn_images(config: TrialConfig) -> int:
    """``precise_bn`` resolved: ``auto`` is ``PRECISE_BN_AUTO`` when a backbone's BatchNorm momentum is below 0.1."""
    if config.precise_bn != "auto":
        return int(config.precise_bn)
    from ..models.backbones import get_backbone

    momenta = [get_backbone(name).bn_momentum for name in config.model.backbones]
    return PRECISE_BN_AUTO if any(m is not None and m < 0.1 for m in momenta) else 0


def _release(loader) -> None:
    release = getattr(loader, "release", None)
    if release is not None:
        release()


def rng_state(device: torch.device, loader: torch.Generator) -> dict:
    """Every generator a trial draws from: torch's CPU RNG (init, dropout on the CPU, CPU-path augmentation), the
    loader's (sample order) and, on a GPU, every CUDA generator (dropout, device-path augmentation)."""
    state = {"torch": torch.get_rng_state(), "loader": loader.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, device: torch.device, loader: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    loader.set_state(state["loader"])
    if device.type == "cuda" and state.get("cuda") is not None:
        cuda = list(state["cuda"])
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean over classes of 2·TP / (2·TP + FP + FN) (0 for a class never true nor predicted), as sklearn's
    ``f1_score(average="macro", labels=all classes, zero_division=0)``."""
    confusion = confusion.double()
    tp = confusion.diag()
    denom = confusion.sum(0) + confusion.sum(1)  # (TP + FP) + (TP + FN)
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return float(f1.mean()) if len(f1) else 0.0


def save_checkpoint(state: dict, path: Path) -> Path:
    """``torch.save`` to a temp file, then rename. Without zip CRC32s (a quarter of the save time for a
    resnet18 + Adam state; ``torch.load`` does not check them): the rename already keeps half-written files out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(state, tmp)
    finally:
        torch.serialization.set_crc32_options(crc)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint file as tensors only (``torch.load(weights_only=True)``: no code is unpickled).

    Args:
        path: A ``checkpoint.pt``.
        map_location: Where tensors are loaded (``torch.load``'s ``map_location``).

    Returns:
        The checkpoint dict: model, optimizer, LR scheduler, epoch, RNG state, history, classes and ``config``
        (``TrialConfig.to_dict()``).
    """
    return torch.load(path, map_location=map_location, weights_only=True)


def fit(config: TrialConfig, device=None) -> list[dict]:
    """Run a whole trial without Ray.

    Args:
        config: The trial's ``TrialConfig``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; None takes ``config.device``.

    Returns:
        The metrics of every epoch trained, as ``Trial.step`` returns them.
    """
    trial = Trial(config, device)
    return list(trial.run())
