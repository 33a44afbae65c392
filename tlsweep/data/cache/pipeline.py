"""Which datasets a trial trains on: cached features, cached decoded images, or images decoded per epoch.

``data.cache`` modes: ``features`` — ``auto`` uses the feature cache when every backbone is frozen and training
has no augmentation; ``on`` also when augmentation is set (frozen trials then train without it); ``off``.
A ``data.image_size_schedule`` turns the feature cache off (features would differ per size).
``images`` — ``auto`` caches image files (imagefolder) up to ``images.AUTO_MAX_BYTES`` per split; ``on`` caches
any source with a fingerprint (also torchvision ones); ``off``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from ...config.plan import TrialConfig
from ...config.sections import DataConfig
from ...models import Preprocessing, preprocessing
from ..transforms import TransformedDataset, build_transform
from . import decoded as I
from . import features as F
from .store import cache_root, entry_ready


@dataclass
class TrialData:
    train: Dataset
    val: Dataset
    forward: nn.Module  # what the training loop calls: the model, or the part after its cached backbone
    collate: Callable | None = None
    workers: int = 0
    pin_memory: bool = True
    info: dict = field(default_factory=dict)
    train_size: int | None = None  # the size ``train`` was built at; None when it serves cached features
    device_input: bool = False  # cached images are augmented on the training device (``cache.device``)


def _use_image_cache(mode: str, dataset: Dataset, size: int) -> bool:
    if mode == "off" or I.fingerprint(dataset) is None:
        return False
    return mode == "on" or (isinstance(dataset, I.DECODES_FILES) and
                            len(dataset) * 3 * size * size <= I.AUTO_MAX_BYTES)


def image_dataset(source: Dataset, data: DataConfig, train: bool, augment: str | list | tuple,
                  size: int | None = None, strength: float = 1.0,
                  pre: Preprocessing | None = None) -> tuple[Dataset, Callable | None]:
    """``source`` through the decoded-image cache when ``data.cache.images`` allows it, else decoded per item."""
    size = size or data.image_size
    if _use_image_cache(data.cache.images, source, size):
        key = I.image_key(source, size, pre)
        ready = entry_ready(cache_root(data) / "images" / key)
        path = I.build_images(source, size, cache_root(data), data.num_workers, pre, key)
        images = I.CachedImages(path, size, augment, train, strength, pre)
        images.cache_status = "hit" if ready else "built"
        return images, I.passthrough
    return TransformedDataset(source, build_transform(size, augment, train, strength, pre)), None


def train_images(config: TrialConfig, splits, size: int) -> tuple[Dataset, Callable | None]:
    """The training images at ``size`` with the trial's augmentation policy and strength."""
    return image_dataset(splits.train, config.data, True, config.data.augment, size, config.augment_strength,
                         preprocessing(config.model, config.preprocess))


def trial_data(config: TrialConfig, splits, model: nn.Module, device: torch.device, fast=None,
               budget=None) -> TrialData:
    """``budget``: the trial's ``tlsweep.trial.budget.ResidentBudget`` for cached features kept on its GPU."""
    data = config.data
    size = data.image_size
    pre = preprocessing(config.model, config.preprocess)
    mode = data.cache.features
    split = None
    if not data.image_size_schedule and (mode == "on" or (mode == "auto" and data.augment == "none")):
        split = F.feature_split(model)
    prints = {name: I.fingerprint(getattr(splits, name)) for name in ("train", "val")} if split else {}
    if split is not None and all(prints.values()):
        weights = F.weights_hash(split.backbones)
        transform = repr(build_transform(size, pre=pre))
        precision = getattr(fast, "precision", "fp32")
        entries = {}
        status = "hit"
        for name, fp in prints.items():
            path = cache_root(data) / "features" / F.feature_key(split, weights, size, fp, transform, precision)
            if not entry_ready(path):
                status = "built"
                images, collate = image_dataset(getattr(splits, name), data, False, "none", pre=pre)
                F.build_features(path, split, images, device, collate=collate,
                                 autocast=fast.autocast if fast else None, prepare=fast.inputs if fast else None)
            entries[name] = F.FeatureSet(path, device, budget)
        return TrialData(entries["train"], entries["val"], split.head, I.passthrough, 0, False,
                         {"feature_cache": status, "image_cache": "unused"})
    first = data.train_size(0)
    train, collate = train_images(config, splits, first)
    val, _ = image_dataset(splits.val, data, False, "none", pre=pre)
    on_device = device_input(config, device, train)
    info = {"feature_cache": "off", "image_cache": "on" if collate else "off",
            "images": getattr(train, "cache_status", None), "input": "device" if on_device else "cpu"}
    return TrialData(train, val, model, collate, 0 if on_device else data.num_workers, True, info, first,
                     on_device)


def device_input(config: TrialConfig, device: torch.device, train: Dataset) -> bool:
    """``performance.input``: ``device`` augments cached images on the training device, ``cpu`` in loaders,
    ``auto`` on the device when it is a GPU and every op of the policy has a batched form (else the ops without
    one would run image by image on the GPU: slower than loader workers). Images not in the decoded-image cache
    always take the CPU path."""
    mode = config.performance.input
    if not isinstance(train, I.CachedImages) or mode == "cpu":
        return False
    if mode == "device":
        return True
    from .device import unbatched

    return torch.device(device).type == "cuda" and not unbatched(train.transform)
