"""Write any data source as an ImageFolder (``out/{train,val,test}/<class>/<n>.png``) to look at it or reuse it."""

from __future__ import annotations

import re
from pathlib import Path

from .sources import SPLIT_NAMES, load_splits


def safe_folder_name(name: str) -> str:
    """Class names as folder names: ``T-shirt/top`` → ``T-shirt_top``."""
    return re.sub(r"[^\w.\- ]+", "_", name).strip() or "class"


def export_imagefolder(data, out: str | Path, seed: int = 0, limit: int | None = None) -> dict[str, int]:
    """Save the splits of ``data`` (a ``DataConfig`` or its plain dict) as PNGs; at most ``limit`` per split.
    Returns counts."""
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
