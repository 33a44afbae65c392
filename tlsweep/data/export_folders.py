"""Write any data source as an ImageFolder (``out/{train,val,test}/<class>/<n>.png``) to look at it or reuse it."""

from __future__ import annotations

import re
from pathlib import Path

from .sources import SPLIT_NAMES, load_splits


def safe_folder_name(name: str) -> str:
    """Class names as folder names: ``T-shirt/top`` → ``T-shirt_top``."""
    return re.sub(r"[^\w.\- ]+", "_", name).strip() or "class"


def export_imagefolder(data, out: str | Path, seed: int = 0, limit: int | None = None) -> dict[str, int]:
    """Save a sweep's data (any source, with its subset and split) as ``out/{train,val,test}/<class>/*.png``.

    Args:
        data: The sweep's ``DataConfig``.
        out: The folder to write.
        seed: The sweep's seed (it draws the split and subset).
        limit: At most this many images per split.

    Returns:
        Images written per split.
    """
    splits = load_splits(data, seed)
    out = Path(out)
    folders = [safe_folder_name(c) for c in splits.classes]
    counts = {}
    for split in SPLIT_NAMES:
        dataset = getattr(splits, split)
        n = len(dataset) if limit is None else min(limit, len(dataset))
        for folder in folders:
            (out / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, label = dataset[i]
            image.save(out / split / folders[label] / f"{i:06d}.png")
        counts[split] = n
    return counts
