"""Dataset sources. Each turns the ``data`` section of a sweep into train/val/test datasets of
``(PIL.Image RGB, label)`` with a ``targets`` list, plus the class names."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..config.sections import DataConfig, SplitConfig
from ..errors import TLSweepError
from .images import open_rgb

SPLIT_NAMES = ("train", "val", "test")


class DataError(TLSweepError, ValueError):
    """A dataset problem, naming the path at fault."""


class ImageList(Dataset):
    """Images from ``(path, label)`` pairs, converted to RGB and downscaled to ``max_side`` at most."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], max_side: int | None = None):
        self.samples = samples
        self.classes = classes
        self.max_side = max_side
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return open_rgb(path, self.max_side), label


@dataclass
class Splits:
    classes: list[str]
    train: Dataset
    val: Dataset
    test: Dataset

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}


SOURCES: dict[str, Callable[["DataConfig", int], Splits]] = {}


def register_source(name: str):
    def deco(fn):
        SOURCES[name] = fn
        return fn

    return deco


def load_splits(data: DataConfig, seed: int = 0) -> Splits:
    """The train/val/test splits of the sweep's ``data`` section (seeded).

    Raises:
        DataError: an unknown source, or a root without usable images (the message names the file or folder).
    """
    source = data.source
    if source not in SOURCES:
        importlib.import_module("tlsweep.data.torchvision_sources")  # registers its sources
    if source not in SOURCES:
        raise DataError(f"unknown data source {source!r}; allowed: {', '.join(sorted(SOURCES))}")
    return SOURCES[source](data, seed)


def stratified_split(targets: list[int], fractions: SplitConfig, seed: int) -> dict[str, list[int]]:
    """Indices per split, stratified by class and reproducible for a seed."""
    from sklearn.model_selection import train_test_split

    indices = list(range(len(targets)))
    test_frac = fractions.test
    if test_frac > 0:
        rest, test = train_test_split(indices, test_size=test_frac, stratify=targets, random_state=seed)
    else:
        rest, test = indices, []
    val_share = fractions.val / (1.0 - test_frac)
    train, val = train_test_split(rest, test_size=val_share, stratify=[targets[i] for i in rest],
                                  random_state=seed)
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def check_folder_links(folder: Path) -> None:
    """Refuse a folder tree in which symbolic links reach a folder twice (a loop, where listing never ends, or a
    second path to the same images); links to folders elsewhere are fine."""
    seen: dict[tuple[int, int], str] = {}
    for parent, dirs, _ in os.walk(folder, followlinks=True):
        st = os.stat(parent)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise DataError(f"{parent}: a symbolic link leads back to {seen[key]} (a link loop, or the same folder "
                            f"twice); remove the link")
        seen[key] = parent


def _scan(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    check_folder_links(folder)
    found, _ = find_classes(str(folder))
    classes = classes or found
    if set(found) != set(classes):
        raise DataError(f"{folder}: class folders {sorted(found)} differ from train's {sorted(classes)}")
    mapping = {c: i for i, c in enumerate(classes)}
    samples = make_dataset(str(folder), mapping, extensions=IMG_EXTENSIONS, allow_empty=True)
    return classes, samples


@register_source("imagefolder")
def imagefolder(data: DataConfig, seed: int) -> Splits:
    """``root/{train,val,test}/<class>/*.jpg``, or ``root/<class>/*.jpg`` split by ``data.split`` fractions."""
    root = Path(data.root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder")
    if (root / "train").is_dir():
        missing = [s for s in SPLIT_NAMES if not (root / s).is_dir()]
        if missing:
            raise DataError(f"{root} has train/ but not {', '.join(m + '/' for m in missing)}")
        classes, train = _scan(root / "train")
        parts = {"train": train}
        for name in ("val", "test"):
            parts[name] = _scan(root / name, classes)[1]
    else:
        classes, samples = _scan(root)
        if not samples:
            raise DataError(f"{root}: no images found in its class folders ({', '.join(classes) or 'none'})")
        idx = stratified_split([y for _, y in samples], data.split, seed)
        parts = {name: [samples[i] for i in idx[name]] for name in SPLIT_NAMES}
    skip = set(data.skip_files)  # unreadable images left out (data.on_bad_image: skip)
    if skip:
        parts = {name: [s for s in items if s[0] not in skip] for name, items in parts.items()}
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folder(s); classification needs at least 2")
    for name in ("train", "val"):
        if not parts[name]:
            raise DataError(f"{root}: the {name} split has no images")
    max_side = data.max_image_side
    return Splits(classes, *(ImageList(parts[name], classes, max_side) for name in SPLIT_NAMES))
