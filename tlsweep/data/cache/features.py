"""Frozen-feature cache: when a model's backbone is fully frozen (linear probe or MLP head) and training sees
no augmentation, run the backbone once per split and train only what follows it on the stored features.

Entries are keyed by sha256 of (backbone names, a hash of the backbone weights, image size, split fingerprint,
transform, precision), so any change of weights, size, data or transform misses the cache. The trial keeps the
full model: its checkpoints are full-model state dicts and only the training loop reads features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...models.ensemble import Ensemble
from ...models.transfer import TransferModel
from .store import ArrayWriter, build_once, content_key, open_array

VERSION = 1


@dataclass
class FeatureSplit:
    """A model cut after its frozen backbone(s): ``extract`` images → features, ``head`` features → logits."""

    names: list[str]
    backbones: list[nn.Module]
    extract: Callable[[torch.Tensor], torch.Tensor]
    head: nn.Module


class _FusedHead(nn.Module):
    def __init__(self, ensemble: Ensemble):
        super().__init__()
        self.ensemble = ensemble
        self.dims = [m.feature_dim for m in ensemble.members]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.ensemble.fuse(list(features.split(self.dims, dim=1)))


def _transfer_split(model: TransferModel) -> FeatureSplit | None:
    if not model.fully_frozen:
        return None
    return FeatureSplit([model.entry.name], [model.backbone], model.backbone, model.head)


def _ensemble_split(model: Ensemble) -> FeatureSplit | None:
    if not all(m.fully_frozen for m in model.members):
        return None
    members = list(model.members)
    return FeatureSplit([m.entry.name for m in members], [m.backbone for m in members],
                        lambda x: torch.cat([m.features(x) for m in members], dim=1), _FusedHead(model))


SPLITTERS: dict[type, Callable[[nn.Module], FeatureSplit | None]] = {
    TransferModel: _transfer_split, Ensemble: _ensemble_split}


def feature_split(model: nn.Module) -> FeatureSplit | None:
    """How to cut ``model`` after its backbone(s), or None when a backbone still trains."""
    splitter = SPLITTERS.get(type(model))
    return splitter(model) if splitter else None


def weights_hash(modules: list[nn.Module]) -> str:
    """sha256 of the modules' state dicts (names, dtypes, shapes, values): exact weights identity."""
    h = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def feature_key(split: FeatureSplit, weights: str, image_size: int, data_fingerprint: str, transform: str,
                precision: str = "fp32") -> str:
    return content_key("features", VERSION, split.names, weights, image_size, data_fingerprint, transform,
                       precision)


@torch.no_grad()
def extract_features(split: FeatureSplit, dataset: Dataset, device: torch.device, batch_size: int = 128,
                     collate=None, workers: int = 0, autocast=None, prepare=None):
    """Yield ``(features float32 numpy, labels numpy)`` batches of ``dataset`` through the frozen backbone(s)."""
    states = [b.training for b in split.backbones]
    for b in split.backbones:
        b.eval()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                            generator=torch.Generator())  # leaves the global RNG as it was
        for images, labels in loader:
            images = prepare(images) if prepare else images.to(device)
            if autocast is not None:
                with autocast():
                    out = split.extract(images)
            else:
                out = split.extract(images)
            yield out.float().cpu().numpy(), np.asarray(labels)
    finally:
        for b, mode in zip(split.backbones, states):
            b.train(mode)


def build_features(path: Path, split: FeatureSplit, dataset: Dataset, device: torch.device, **kw) -> Path:
    """Write the features of ``dataset`` to ``path`` once (under a lock) and return ``path``."""

    def build(tmp: Path) -> dict:
        n, at, feats, labels = len(dataset), 0, None, ArrayWriter(tmp / "labels.npy", (len(dataset),), np.int64)
        for x, y in extract_features(split, dataset, device, **kw):
            if feats is None:
                feats = ArrayWriter(tmp / "features.npy", (n, x.shape[1]), np.float32)
            feats.write(at, x)
            at = labels.write(at, y)
        feats.close(), labels.close()
        return {"kind": "features", "n": n, "backbones": split.names}

    build_once(path, build)
    return Path(path)


class FeatureSet(Dataset):
    """Cached features held as one tensor: on the training device when they fit in ``budget`` (a
    ``tlsweep.trial.budget.ResidentBudget``; without one, always), else in (pinned) host memory. ``__getitems__``
    serves whole batches (use it with ``collate_fn=passthrough``); ``FeatureBatches`` serves epochs without a sync."""

    def __init__(self, path: Path, device: torch.device | str = "cpu", budget=None):
        features = torch.from_numpy(np.array(open_array(Path(path) / "features.npy")))
        labels = torch.from_numpy(np.array(open_array(Path(path) / "labels.npy")))
        self.targets = labels.tolist()
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.budget, self.nbytes = budget, features.nbytes + labels.nbytes
        self.resident = not cuda or budget is None or budget.take(self.nbytes)
        if self.resident:
            self.features, self.labels = features.to(self.device), labels.to(self.device)
        else:
            self.features, self.labels = features.pin_memory(), labels.pin_memory()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.features[i], self.labels[i]

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, device=self.features.device)
        return self.features[idx], self.labels[idx]


class FeatureBatches:
    """Batches of a ``FeatureSet`` on its training device, in a ``DataLoader``'s order for the same generator:
    the epoch's permutation goes to the device once; host-held features are gathered and copied asynchronously."""

    def __init__(self, features: FeatureSet, batch_size: int, shuffle: bool, generator=None):
        self.data, self.batch_size, self.shuffle, self.generator = features, int(batch_size), shuffle, generator

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def release(self) -> None:
        """Give the features' GPU bytes back to the trial's budget (the trial has left the feature cache)."""
        data = self.data
        if data.resident and data.budget is not None and data.device.type == "cuda":
            data.budget.give(data.nbytes)
            data.resident, data.budget = False, None

    def __iter__(self):
        from .device import epoch_order, to_device

        data = self.data
        order = epoch_order(len(data), self.shuffle, self.generator)
        if data.resident:
            for idx in to_device(order, data.device).split(self.batch_size):
                yield data.features[idx], data.labels[idx]
            return
        for idx in order.split(self.batch_size):
            yield to_device(data.features[idx], data.device), to_device(data.labels[idx], data.device)
