"""One pass over an ImageFolder's files before any trial starts: what would break training or mislead it.

``scan_splits`` reads every image once (hash + decode, in a thread pool) and returns a ``DataReport``:
errors stop the sweep (unreadable images unless ``on_bad_image: skip``, an empty training class), warnings
are printed (non-image files ignored, modes converted, oversized images, duplicates across splits, imbalance).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .sources import SPLIT_NAMES, Splits

IMBALANCE_RATIO = 3.0  # largest / smallest training class at which to warn
SHOWN = 5  # paths listed in a message before "and N more"


@dataclass
class ImageInfo:
    path: str
    digest: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None
    error: str | None = None


@dataclass
class DataReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip_files: list[str] = field(default_factory=list)  # unreadable images left out (on_bad_image: skip)
    counts: dict[str, int] = field(default_factory=dict)  # usable images per split


def inspect_image(path: str) -> ImageInfo:
    """Hash the bytes and decode the image fully (truncated files fail here, not mid-sweep)."""
    try:
        raw = Path(path).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                mode, size = img.mode, img.size
                img.draft(img.mode, (256, 256))  # JPEG: decode at reduced scale; still reads every byte
                img.load()
    except Exception as err:  # noqa: BLE001 - any failure to decode is reported by path
        return ImageInfo(path, error=f"{type(err).__name__}: {err}")
    return ImageInfo(path, hashlib.blake2b(raw, digest_size=16).hexdigest(), mode, size)


def _listing(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def non_image_files(root: Path) -> Counter:
    """Files under ``root`` that the ImageFolder loader ignores, by extension."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found: Counter = Counter()
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.lower().endswith(IMG_EXTENSIONS):
                found[Path(name).suffix.lower() or name] += 1
    return found


def scan_splits(splits: Splits, root: Path, on_bad_image: str = "error", max_side: int = 1024,
                workers: int | None = None) -> DataReport:
    report = DataReport()
    samples = {name: getattr(splits, name).samples for name in SPLIT_NAMES}
    paths = [p for name in SPLIT_NAMES for p, _ in samples[name]]
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
        infos = dict(zip(paths, pool.map(inspect_image, paths)))

    ignored = non_image_files(root)
    if ignored:
        kinds = ", ".join(f"{n} {ext}" for ext, n in ignored.most_common())
        report.warnings.append(f"{sum(ignored.values())} non-image file(s) ignored under {root} ({kinds})")

    bad = [i for i in infos.values() if i.error]
    if bad:
        listing = "; ".join(f"{i.path} ({i.error})" for i in bad[:SHOWN])
        more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        if on_bad_image == "skip":
            report.skip_files = [i.path for i in bad]
            report.warnings.append(f"{len(bad)} unreadable or truncated image(s) left out: {listing}{more}")
        else:
            report.errors.append(f"{len(bad)} unreadable or truncated image(s): {listing}{more} "
                                 f"(fix or delete them, or set data.on_bad_image: skip to leave them out)")
    good = {p: i for p, i in infos.items() if not i.error}

    modes = Counter(i.mode for i in good.values() if i.mode != "RGB")
    if modes:
        report.warnings.append("converted to RGB when loaded: " +
                               ", ".join(f"{n} {m} image(s)" for m, n in modes.most_common()))
    large = [p for p, i in good.items() if max(i.size) > max_side]
    if large:
        report.warnings.append(f"{len(large)} image(s) larger than {max_side} px are downscaled when loaded "
                               f"(data.max_image_side), e.g. {_listing(large)}")

    split_of = defaultdict(set)
    for name in SPLIT_NAMES:
        for p, _ in samples[name]:
            if p in good:
                split_of[good[p].digest].add(name)
    leaked = Counter(tuple(sorted(s)) for s in split_of.values() if len(s) > 1)
    if leaked:
        where = ", ".join(f"{n} in {'+'.join(s)}" for s, n in leaked.most_common())
        report.warnings.append(f"{sum(leaked.values())} identical image(s) appear in more than one split ({where}); "
                               f"validation and test scores are optimistic (exported datasets often leak)")

    for name in SPLIT_NAMES:
        per_class = Counter(y for p, y in samples[name] if p in good)
        report.counts[name] = sum(per_class.values())
        empty = [c for k, c in enumerate(splits.classes) if per_class[k] == 0]
        if empty and name == "train":
            report.errors.append(f"class folder(s) with no usable training image: {', '.join(empty)} "
                                 f"(under {root})")
        elif empty and per_class:
            report.warnings.append(f"the {name} split has no image of class(es) {', '.join(empty)}")
        if name == "train" and len(per_class) >= 2:
            (big, n_big), (small, n_small) = per_class.most_common()[0], per_class.most_common()[-1]
            if n_big >= IMBALANCE_RATIO * n_small:
                report.warnings.append(
                    f"classes are imbalanced in train: {splits.classes[big]} has {n_big} images, "
                    f"{splits.classes[small]} {n_small}; consider search.class_weighted_loss: true")
    return report
