"""Content-keyed cache entries on disk: a folder of ``.npy`` arrays plus ``meta.json``, built once per node.

Builders write into a temporary folder under a file lock and rename it into place, so concurrent trials
build an entry once and readers never see a half-written one. Arrays open memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from filelock import FileLock

META = "meta.json"


def cache_root(data=None) -> Path:
    """``data.cache_dir`` (a ``DataConfig``), else ``$TLSWEEP_CACHE``, else ``$XDG_CACHE_HOME/tlsweep``, else
    ``~/.cache/tlsweep``."""
    configured = getattr(data, "cache_dir", None) or os.environ.get("TLSWEEP_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tlsweep"


def content_key(*parts) -> str:
    """sha256 of the parts' JSON (sorted keys, ``str`` for anything else)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_ready(path: Path) -> bool:
    return (path / META).is_file()


def build_once(path: Path, build: Callable[[Path], dict]) -> dict:
    """The entry at ``path``; if missing, ``build(tmp_dir)`` writes its arrays and returns its metadata."""
    path = Path(path)
    if not entry_ready(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if not entry_ready(path):
                tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent))
                try:
                    meta = build(tmp)
                    (tmp / META).write_text(json.dumps(meta, sort_keys=True))
                    os.replace(tmp, path)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
    return json.loads((path / META).read_text())


class ArrayWriter:
    """Fill an ``.npy`` file row by row without holding it in memory."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def write(self, start: int, rows) -> int:
        rows = np.asarray(rows)
        self.array[start: start + len(rows)] = rows
        return start + len(rows)

    def close(self) -> None:
        self.array.flush()
        del self.array


def open_array(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")
