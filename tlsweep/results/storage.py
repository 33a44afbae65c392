"""Sweep storage that is a local folder or any ``pyarrow.fs`` URI (``s3://``, ``gs://``, ``hdfs://``, ...).

A URI may carry pyarrow's options as a query (``s3://bucket/sweeps?endpoint_override=http://host:9000``);
``s3://`` also honours the AWS SDK's ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (MinIO, Ceph, moto...).
Readers of a remote sweep work on a local mirror (``mirror``) under the cache folder, refreshed incrementally.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def is_uri(storage: str | os.PathLike) -> bool:
    """Whether ``storage`` is a URI (s3://, gs://, ...) rather than a local path."""
    return "://" in str(storage)


@dataclass(frozen=True)
class Location:
    """A storage folder: its pyarrow filesystem and the path inside it; ``uri`` as the user wrote it."""

    fs: object  # pyarrow.fs.FileSystem
    path: str
    uri: str

    def join(self, *parts: str) -> str:
        """The fs path of a file below this folder."""
        return posixpath.join(self.path, *parts)

    def child(self, name: str) -> Location:
        return Location(self.fs, self.join(name), join_uri(self.uri, name))


def join_uri(uri: str, *parts: str) -> str:
    """``s3://b/x?opt=1`` + ``y`` → ``s3://b/x/y?opt=1``; a local path joins as a path."""
    if not is_uri(uri):
        return str(Path(uri, *parts))
    s = urlsplit(uri)
    return urlunsplit(s._replace(path=posixpath.join(s.path or "/", *parts)))


def split_uri(uri: str) -> tuple[str, str]:
    """(parent URI, last name): ``s3://b/sweeps/x?o=1`` → (``s3://b/sweeps?o=1``, ``x``)."""
    s = urlsplit(uri.rstrip("/"))
    parent, _, name = s.path.rstrip("/").rpartition("/")
    return urlunsplit(s._replace(path=parent)), name


def locate(storage: str) -> Location:
    """The filesystem and path of a local folder or URI (raises ``OSError``/``ValueError`` for a bad URI)."""
    import pyarrow.fs as pafs

    if not is_uri(storage):
        return Location(pafs.LocalFileSystem(), str(Path(storage).resolve()), storage)
    s = urlsplit(storage)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if s.scheme == "s3" and endpoint and "endpoint_override" not in s.query:
        ep = urlsplit(endpoint)
        fs = pafs.S3FileSystem(endpoint_override=ep.netloc or ep.path, scheme=ep.scheme or "https")
        return Location(fs, (s.netloc + s.path).rstrip("/"), storage)
    fs, path = pafs.FileSystem.from_uri(storage)
    return Location(fs, path.rstrip("/"), storage)


def exists(loc: Location, name: str = "") -> bool:
    import pyarrow.fs as pafs

    return loc.fs.get_file_info(loc.join(name) if name else loc.path).type != pafs.FileType.NotFound


def read_text(loc: Location, name: str) -> str:
    with loc.fs.open_input_stream(loc.join(name)) as f:
        return f.read().decode()


def write_text(loc: Location, name: str, text: str) -> None:
    """Write a file below ``loc`` (local: to a temp file renamed into place)."""
    import pyarrow.fs as pafs

    if isinstance(loc.fs, pafs.LocalFileSystem):
        path = Path(loc.join(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return
    loc.fs.create_dir(posixpath.dirname(loc.join(name)), recursive=True)
    with loc.fs.open_output_stream(loc.join(name)) as f:
        f.write(text.encode())


def cache_dir(uri: str) -> Path:
    """The local mirror of a remote sweep: ``<tlsweep cache>/storage/<hash>/<name>``."""
    from ..data.cache.store import cache_root

    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    return cache_root() / "storage" / key / (split_uri(uri)[1] or "root")


def top_level(rel: str) -> bool:
    return "/" not in rel


def without_checkpoints(rel: str) -> bool:
    return "/checkpoint_" not in "/" + rel


def mirror(storage: str, want: Callable[[str], bool] = lambda rel: True, local: Path | None = None) -> Path:
    """A local copy of a remote sweep folder (or the folder itself when local): files whose path relative to
    it passes ``want`` are downloaded when new or changed (size or modification time)."""
    if not is_uri(storage):
        return Path(storage)
    import pyarrow.fs as pafs

    loc = locate(storage)
    local = Path(local or cache_dir(storage))
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    if not infos and not exists(loc):
        raise FileNotFoundError(f"{storage} does not exist")
    remote = set()
    for info in infos:
        rel = posixpath.relpath(info.path, loc.path)
        if info.type != pafs.FileType.File or not want(rel):
            continue
        remote.add(rel)
        target = local / rel
        mtime = info.mtime.timestamp() if info.mtime else None
        if target.is_file() and target.stat().st_size == info.size and (
                mtime is None or abs(target.stat().st_mtime - mtime) < 1e-3):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        with loc.fs.open_input_stream(info.path) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        tmp.replace(target)
    for path in local.rglob("*") if local.is_dir() else ():  # gone from the storage: gone here too
        rel = path.relative_to(local).as_posix()
        if path.is_file() and want(rel) and rel not in remote:
            path.unlink()
    return local


def upload(local: Path, storage: str, name: str) -> str:
    """Copy the local folder ``local`` to ``storage/name``; returns its URI."""
    import pyarrow.fs as pafs

    loc = locate(storage)
    pafs.copy_files(str(Path(local).resolve()), loc.join(name), source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=loc.fs)
    return join_uri(storage, name)


def localize(path: str, want: Callable[[str], bool] = lambda rel: True) -> Path:
    """A local path for a file or folder that may be a URI (a file is mirrored alone, a folder with ``want``)."""
    if not is_uri(path):
        return Path(path)
    import pyarrow.fs as pafs

    loc = locate(path)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{path} does not exist")
    if info.type == pafs.FileType.File:
        parent, name = split_uri(path)
        return mirror(parent, lambda rel: rel == name) / name
    return mirror(path, want)
