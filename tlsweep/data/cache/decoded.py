"""Decoded-image cache: each split decoded and resized once per (dataset, size) into a uint8 ``N×3×S×S``
memory-mapped array shared by all trials on a node; augmentation and normalization then run on tensors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..sources import ImageList
from ..torchvision_sources import RGBView
from ..transforms import decode_steps, tensor_steps
from .store import ArrayWriter, build_once, content_key, open_array

VERSION = 1
AUTO_MAX_BYTES = 16 * 2**30  # ``images: auto`` caches a split only below this size


def _files_fingerprint(ds: ImageList) -> str:
    h = hashlib.sha256(f"max_side={ds.max_side}\n".encode())
    for path, label in ds.samples:
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
    return h.hexdigest()


def _view_fingerprint(ds: RGBView) -> str:
    base = ds.base
    h = hashlib.sha256(f"{type(base).__name__}\0{getattr(base, 'root', '')}\0{getattr(base, 'train', '')}"
                       f"\0{len(base)}\n".encode())
    h.update(np.asarray(ds.indices, dtype=np.int64).tobytes())
    return h.hexdigest()


FINGERPRINTS = {ImageList: _files_fingerprint, RGBView: _view_fingerprint}
DECODES_FILES = (ImageList,)  # sources whose images are encoded files (worth caching under ``auto``)


def fingerprint(dataset: Dataset) -> str | None:
    """Content identity of a source dataset (file paths, sizes, mtimes, labels), or None if unknown."""
    fn = FINGERPRINTS.get(type(dataset))
    return fn(dataset) if fn else None


def image_key(dataset: Dataset, image_size: int, pre=None) -> str | None:
    fp = fingerprint(dataset)
    return None if fp is None else content_key("images", VERSION, fp, image_size,
                                               repr(v2.Compose(decode_steps(image_size, pre))))


class _Decoded(Dataset):
    def __init__(self, base: Dataset, image_size: int, pre=None):
        self.base, self.decode = base, v2.Compose(decode_steps(image_size, pre))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return self.decode(image).as_subclass(torch.Tensor), label


def build_images(dataset: Dataset, image_size: int, root: Path, workers: int = 0, pre=None,
                 key: str | None = None) -> Path:
    """Decode ``dataset`` once into ``root/images/<key>/`` (if not there yet) and return that folder."""
    key = key or image_key(dataset, image_size, pre)
    if key is None:
        raise ValueError(f"no fingerprint for {type(dataset).__name__}; cannot cache its images")
    path = Path(root) / "images" / key

    def build(tmp: Path) -> dict:
        n = len(dataset)
        images = ArrayWriter(tmp / "images.npy", (n, 3, image_size, image_size), np.uint8)
        labels = ArrayWriter(tmp / "labels.npy", (n,), np.int64)
        at = 0
        for x, y in DataLoader(_Decoded(dataset, image_size, pre), batch_size=64, num_workers=workers,
                               generator=torch.Generator()):
            images.write(at, x.numpy())
            at = labels.write(at, y.numpy())
        images.close(), labels.close()
        return {"kind": "images", "n": n, "image_size": image_size}

    build_once(path, build)
    return path


class CachedImages(Dataset):
    """Rows of a decoded-image entry through the tensor half of the transform. ``__getitems__`` serves a whole
    batch (read with one fancy index; one batched transform when it has no random step); use it with
    ``collate_fn=passthrough``."""

    def __init__(self, path: Path, image_size: int, augment: str | list | tuple = "none", train: bool = False,
                 strength: float = 1.0, pre=None):
        self.path = Path(path)
        self.targets = open_array(self.path / "labels.npy").tolist()
        self.transform = v2.Compose(tensor_steps(image_size, augment, train, strength, pre))
        self.per_sample = train and augment != "none"
        self._images = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:  # opened lazily, so each loader worker maps the file itself
            self._images = open_array(self.path / "images.npy")
        return self._images

    def __getstate__(self):
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = tv_tensors.Image(torch.from_numpy(np.array(self.images[i])))
        return self.transform(image).as_subclass(torch.Tensor), self.targets[i]

    def __getitems__(self, indices: list[int]):
        batch = torch.from_numpy(self.images[np.asarray(indices)])
        if self.per_sample:
            images = torch.stack([self.transform(tv_tensors.Image(x)).as_subclass(torch.Tensor) for x in batch])
        else:
            images = self.transform(tv_tensors.Image(batch)).as_subclass(torch.Tensor)
        return images, torch.tensor([self.targets[i] for i in indices])


def passthrough(batch):
    """Collate for datasets whose ``__getitems__`` already returns ``(inputs, labels)`` tensors."""
    return batch
