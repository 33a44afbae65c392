"""Split images as tensors, made once per (split, image size, preprocessing) and shared by every checkpoint
that reads them; logits of a model over such a tensor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BATCH = 128


class Inputs:
    """``get(split, size, pre)`` → (images (n, 3, S, S) float tensor, labels array); ``bn_images`` caps the
    training images (a seeded random subset) used to recompute BatchNorm statistics."""

    def __init__(self, splits, bn_images: int = 512, seed: int = 0):
        self.splits = splits
        self.bn_images = bn_images
        self.seed = seed
        self._cache: dict = {}

    def _dataset(self, split: str):
        data = getattr(self.splits, split)
        if split == "train" and len(data) > self.bn_images:
            from torch.utils.data import Subset

            rng = np.random.default_rng(self.seed)
            data = Subset(data, sorted(rng.choice(len(data), self.bn_images, replace=False).tolist()))
        return data

    def get(self, split: str, size: int, pre) -> tuple[torch.Tensor, np.ndarray]:
        key = (split, size, pre)
        if key not in self._cache:
            from ..data.transforms import build_transform

            transform, data = build_transform(size, pre=pre), self._dataset(split)
            items = [data[i] for i in range(len(data))]
            images = torch.stack([transform(x) for x, _ in items]) if items else torch.zeros(0, 3, size, size)
            self._cache[key] = (images, np.array([int(y) for _, y in items], dtype=np.int64))
        return self._cache[key]

    def batches(self, split: str, size: int, pre, batch: int = BATCH):
        images, _ = self.get(split, size, pre)
        return (images[i:i + batch] for i in range(0, len(images), batch))


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, batch: int = BATCH) -> np.ndarray:
    model.eval()
    out = [model(images[i:i + batch]).float() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
