"""The Optuna storage that holds a sweep's studies (``searcher.storage``), free of Ray.

``file`` (default): Optuna's ``JournalStorage`` over a file in the results folder (``STUDY_FILE``), with the
open(2)-based lock that Optuna documents for NFS; a remote (``s3://``) sweep writes it in the driver's local mirror
of the results and uploads it with the other driver files. ``memory``: studies live in the searcher only (its
checkpoint pickles them). An RDB URL (``sqlite:///…``, ``postgresql://…``, ``mysql://…``): a database a team or
cluster shares; studies are named ``<sweep>/<model>[/<grid point>]``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..errors import TLSweepError
from .layout import SPEC_FILE, STUDY_FILE
from .storage import cache_dir, exists, is_uri, locate, mirror, top_level

FILE, MEMORY = "file", "memory"
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
DRIVERS = {"postgresql": "psycopg 3 (pip install 'tlsweep[postgres]')", "mysql": "a MySQL driver, e.g. mysqlclient"}
CONNECT_TIMEOUT_S = 5


class StudyStorageError(TLSweepError, ValueError):
    """A study storage that cannot be used (unknown scheme, unreachable, refused, driver missing)."""


def scheme(url: str) -> str:
    """``postgresql+psycopg2://…`` → ``postgresql``; ``file``/``memory`` and paths → themselves/``''``."""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def check_url(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``file``, ``memory`` or an RDB URL Optuna takes."""
    if value in (FILE, MEMORY):
        return
    if scheme(value) not in RDB_SCHEMES:
        raise ValueError(f"unknown study storage {value!r}: use file (a journal in the results folder, the "
                         f"default), memory, or a database URL ({', '.join(s + '://…' for s in RDB_SCHEMES)})")


def journal_path(results: str) -> Path:
    """The journal file of a results folder; for a URI, the driver's local copy of it (beside the readers' mirror
    of the results, which a refresh rewrites: never in it)."""
    return (cache_dir(results).parent / ".driver" if is_uri(results) else Path(results)) / STUDY_FILE


def storage_url(setting: str, results: str) -> str | None:
    """What ``open_storage`` takes for a sweep's ``searcher.storage`` (None: in memory)."""
    if setting == MEMORY:
        return None
    return str(journal_path(results)) if setting == FILE else setting


def open_storage(url: str):
    """An Optuna storage: an RDB URL, else a journal file (created with its folder when missing)."""
    import optuna

    kind = scheme(url)
    if kind in RDB_SCHEMES:
        engine = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}} if kind in ("postgresql", "mysql") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    from optuna.storages.journal import JournalFileOpenLock

    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(_journal_backend()(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _journal_backend():
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class FlushedJournal(JournalFileBackend):
        """Optuna's file journal whose appends are written through to the kernel under the lock (other processes
        and a restarted driver read them at once) but not fsynced one by one: an fsync per write (a dozen per
        trial, ~3 ms each on a busy disk) slowed the controller; ``fsync_journal`` runs at each experiment
        checkpoint instead."""

        def append_logs(self, logs: list[dict]) -> None:
            data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
            with get_lock_file(self._lock), open(self._file_path, "ab") as f:
                f.write(data)

    return FlushedJournal


def fsync_journal(path: str | Path) -> None:
    """Make a journal's appends durable (a power loss keeps them)."""
    import os

    if Path(path).is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def redacted(url: str) -> str:
    """A URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    head, rest = url.split("://", 1)
    cred, host = rest.rsplit("@", 1)
    return f"{head}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url


def probe(url: str) -> None:
    """Open ``url`` and list its studies, or raise ``StudyStorageError`` saying why not (on its first line)."""
    kind = scheme(url)
    try:
        open_storage(url).get_all_studies()
    except ImportError:
        raise StudyStorageError(f"cannot open the study storage {redacted(url)}: its database driver is not "
                                f"installed; install {DRIVERS.get(kind, 'the driver SQLAlchemy names')}") from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy/driver errors: refused, unknown host, bad password
        cause = getattr(err, "orig", None) or err
        first = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), type(cause).__name__)
        raise StudyStorageError(f"cannot open the study storage {redacted(url)}: {first}") from None


def study_name(sweep: str, fixed: dict, grid: tuple[str, ...] = ()) -> str:
    """``<sweep>/<model>[/<grid key>=<value>,…]`` (``all-models`` when the model is sampled)."""
    point = ",".join(f"{k}={fixed[k]:g}" if isinstance(fixed[k], float) else f"{k}={fixed[k]}"
                     for k in grid if k in fixed and k != "model")
    return "/".join([sweep, str(fixed.get("model", "all-models")), *([point] if point else [])])


def pull(results: str) -> Path:
    """Before a remote sweep resumes on this driver: its local journal, replaced by the stored one when that one
    is longer (the journal only grows)."""
    local = journal_path(results)
    loc = locate(results)
    if exists(loc, STUDY_FILE):
        size = loc.fs.get_file_info(loc.join(STUDY_FILE)).size
        if not local.is_file() or local.stat().st_size < size:
            mirror(results, lambda rel: rel == STUDY_FILE, local.parent)
    return local


def push(results: str) -> None:
    """Upload the driver's local journal of a remote sweep next to its other files."""
    import pyarrow.fs as pafs

    local = journal_path(results)
    if local.is_file():
        loc = locate(results)
        pafs.copy_files(str(local), loc.join(STUDY_FILE), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=loc.fs)


def resolve(target: str) -> tuple[str, str | None]:
    """(storage URL, study-name prefix or None) of a results folder (local or URI), a journal file or an RDB URL.

    A remote results folder is read through the driver's local journal when this is the driver (a run in progress
    writes there), else through a fresh download."""
    if scheme(target) in RDB_SCHEMES:
        return target, None
    if not is_uri(target) and Path(target).is_file():
        return str(Path(target)), None
    spec_dir = mirror(target, top_level) if is_uri(target) else Path(target)
    spec = spec_dir / SPEC_FILE
    if not spec.is_file():
        raise StudyStorageError(f"{target}: neither a sweep's results folder (no {SPEC_FILE}), a journal file nor "
                                f"a database URL ({', '.join(s + '://…' for s in RDB_SCHEMES)})")
    plan = json.loads(spec.read_text())
    setting = (plan.get("searcher") or {}).get("storage", FILE)
    if setting == MEMORY:
        raise StudyStorageError(f"{target}: this sweep kept its studies in memory (searcher.storage: memory)")
    if setting != FILE:
        return setting, f"{plan['name']}/"
    if not is_uri(target):
        path = journal_path(target)
    elif (path := journal_path(target)).is_file():
        pass
    else:
        path = Path(tempfile.mkdtemp(prefix="tlsweep-studies-")) / STUDY_FILE
        loc = locate(target)
        if exists(loc, STUDY_FILE):
            mirror(target, lambda rel: rel == STUDY_FILE, path.parent)
    if not path.is_file():
        raise StudyStorageError(f"{target}: no {STUDY_FILE} (a sweep from before tlsweep kept studies, or one "
                                f"that has not started)")
    return str(path), f"{plan['name']}/"


def load_studies(target: str) -> list:
    """The Optuna studies of a sweep (results folder) or of a whole storage (journal file, RDB URL)."""
    import optuna

    url, prefix = resolve(target)
    storage = open_storage(url)
    return [optuna.load_study(study_name=s.study_name, storage=storage) for s in storage.get_all_studies()
            if prefix is None or s.study_name.startswith(prefix)]


__all__ = ["FILE", "MEMORY", "StudyStorageError", "check_url", "journal_path", "load_studies", "open_storage",
           "probe", "pull", "push", "resolve", "storage_url", "study_name"]
