"""torchvision's built-in datasets as sources (``source: fashionmnist | mnist | cifar10``), never downloaded.

The official test set is ``test``; ``val`` is carved from the official train set (stratified, seeded) by
``data.val_fraction`` or else ``data.split``'s val share. ``data.subset`` caps each split (stratified, seeded).
Grey images become RGB. ``prepare_fashionmnist`` fills ``<root>/FashionMNIST/raw/`` from Debian's package.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..config.sections import DataConfig, SplitConfig, SubsetConfig
from .sources import DataError, Splits, register_source, stratified_split

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class TorchvisionSource:
    cls_name: str  # torchvision.datasets class
    folder: str  # where torchvision looks under root
    files: tuple[str, ...]  # what must be there
    how: str  # how to prepare it offline


TORCHVISION_SOURCES = {
    "fashionmnist": TorchvisionSource(
        "FashionMNIST", "FashionMNIST/raw", MNIST_FILES,
        "run `tlsweep data prepare fashionmnist --root ROOT` (Debian package dataset-fashion-mnist), or put the "
        "uncompressed idx files from https://github.com/zalandoresearch/fashion-mnist there"),
    "mnist": TorchvisionSource(
        "MNIST", "MNIST/raw", MNIST_FILES,
        "put the uncompressed MNIST idx files there (or run torchvision.datasets.MNIST(ROOT, download=True) "
        "on a machine with internet and copy ROOT)"),
    "cifar10": TorchvisionSource(
        "CIFAR10", "cifar-10-batches-py", ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"),
        "unpack cifar-10-python.tar.gz there (or run torchvision.datasets.CIFAR10(ROOT, download=True) on a "
        "machine with internet and copy ROOT)"),
}


class RGBView(Dataset):
    """Selected indices of a torchvision dataset as ``(PIL RGB, label)`` with ``targets``."""

    def __init__(self, base, indices: list[int], classes: list[str]):
        self.base = base
        self.indices = list(indices)
        self.classes = classes
        all_targets = [int(t) for t in base.targets]
        self.targets = [all_targets[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, label = self.base[self.indices[index]]
        return image.convert("RGB"), int(label)


def stratified_subset(targets: list[int], indices: list[int], size: int | None, seed: int) -> list[int]:
    """At most ``size`` of ``indices`` with class counts within one of each other where the classes allow it
    (seeded; each class shuffled, then taken round-robin)."""
    if not size or size >= len(indices):
        return list(indices)
    import random

    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i in indices:
        by_class.setdefault(targets[i], []).append(i)
    queues = [rng.sample(members, len(members)) for _, members in sorted(by_class.items())]
    keep = []
    for rank in range(max(map(len, queues))):
        keep += [q[rank] for q in queues if rank < len(q)]
        if len(keep) >= size:
            break
    return sorted(keep[:size])


def check_files(name: str, root: Path) -> None:
    src = TORCHVISION_SOURCES[name]
    folder = Path(root) / src.folder
    missing = [f for f in src.files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} in {folder} (tlsweep never downloads data); "
                        f"to prepare it: {src.how.replace('ROOT', str(root))}")


def load_torchvision(name: str, data: DataConfig, seed: int) -> Splits:
    import torchvision.datasets as tvd

    root = Path(data.root)
    check_files(name, root)
    cls = getattr(tvd, TORCHVISION_SOURCES[name].cls_name)
    try:
        train_all = cls(str(root), train=True, download=False)
        test_all = cls(str(root), train=False, download=False)
    except (RuntimeError, OSError, ValueError) as err:
        raise DataError(f"{name} under {root}: cannot read it: {err}") from None
    classes = list(train_all.classes)
    train_targets = [int(t) for t in train_all.targets]
    val_fraction = data.val_fraction or data.split.val
    idx = stratified_split(train_targets, SplitConfig(train=1 - val_fraction, val=val_fraction, test=0.0), seed)
    subset = data.subset or SubsetConfig()
    test_targets = [int(t) for t in test_all.targets]
    parts = {
        "train": stratified_subset(train_targets, idx["train"], subset.train, seed),
        "val": stratified_subset(train_targets, idx["val"], subset.val, seed),
        "test": stratified_subset(test_targets, list(range(len(test_targets))), subset.test, seed),
    }
    return Splits(classes, RGBView(train_all, parts["train"], classes), RGBView(train_all, parts["val"], classes),
                  RGBView(test_all, parts["test"], classes))


for _name in TORCHVISION_SOURCES:
    register_source(_name)(lambda data, seed, _n=_name: load_torchvision(_n, data, seed))


def prepare_fashionmnist(root: str | Path = "data", source: str | Path = DEBIAN_FASHION_MNIST) -> Path:
    """Uncompress Fashion-MNIST's idx ``*.gz`` files into ``<root>/FashionMNIST/raw/`` (files there are kept).

    Args:
        root: The sweep's ``data.root``.
        source: Where the ``.gz`` files are (Debian's ``dataset-fashion-mnist`` by default).

    Returns:
        The ``raw`` folder.

    Raises:
        DataError: A file is neither in ``source`` nor already uncompressed.
    """
    source, raw = Path(source), Path(root) / TORCHVISION_SOURCES["fashionmnist"].folder
    missing = [f"{f}.gz" for f in MNIST_FILES if not (source / f"{f}.gz").is_file() and not (raw / f).is_file()]
    if missing:
        raise DataError(f"Fashion-MNIST: {', '.join(missing)} not found in {source}; install the Debian package "
                        "dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist) or download the files "
                        "from https://github.com/zalandoresearch/fashion-mnist into that folder")
    raw.mkdir(parents=True, exist_ok=True)
    for f in MNIST_FILES:
        target = raw / f
        if target.is_file():
            continue
        tmp = target.with_suffix(".part")
        with gzip.open(source / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    return raw


PREPARERS = {"fashionmnist": prepare_fashionmnist}
