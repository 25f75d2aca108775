"""Where studies live: an embedded journal file by default, any Optuna RDB URL for many hosts.

- default: `<workdir>/effsearch.journal`, Optuna's JournalStorage with the file backend. Safe
  for many worker processes on one host (file locks), no server. Not for NFS: file locks
  there are unreliable (Optuna's distributed guide).
- `postgresql://...`, `mysql+pymysql://...`: Optuna's RDBStorage, for workers on many hosts.
- `redis://...`: JournalStorage on Redis (needs the `redis` package).
- a path ending in `.journal`/`.log`: that journal file.
- `sqlite:///...`: allowed for one worker only; SQLite has no row locks and Optuna advises
  against it for parallel optimisation (Optuna FAQ), so `--workers` > 1 refuses it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna

from space import UserError

JOURNAL_NAME = "effsearch.journal"
DEFAULT_WORKDIR = "effsearch-runs"


class StorageError(UserError):
    """The storage cannot be opened or does not answer."""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def storage_url(workdir: str | None, storage: str | None) -> str:
    """The storage a command uses: `--storage` if given, else the workdir's journal file."""
    if storage:
        return storage
    return str(Path(workdir or DEFAULT_WORKDIR) / JOURNAL_NAME)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def open_storage(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """Opens (and, for a journal file, creates) a storage.

    Args:
        url: an RDB URL, `redis://...`, or a journal file path.
        create: allow creating a missing journal file (commands that only read set False).

    Raises:
        StorageError: the server does not answer, the driver is missing, or there is no
            journal file to read.
    """
    if "://" not in url:
        path = Path(url).expanduser()
        if not create and not path.exists():
            raise StorageError(f"no study storage at {path} (run `effsearch search` first, or "
                               f"pass --workdir/--storage)")
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(
            str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    if url.startswith("redis://"):
        try:
            backend = optuna.storages.journal.JournalRedisBackend(url)
        except ImportError:
            raise StorageError("redis:// storage needs the redis package "
                               "(pip install redis)") from None
        return optuna.storages.JournalStorage(backend)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except ImportError as e:
        raise StorageError(f"storage {redact(url)} needs a database driver: {e} (for "
                           f"PostgreSQL: pip install 'effsearch[postgres]')") from None
    except Exception as e:  # sqlalchemy's errors: OperationalError, ArgumentError, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {redact(url)} does not answer: {reason}") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # Fail fast on an unreachable server rather than waiting for the OS TCP timeout, and
    # recycle connections that a long trial left idle.
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {"pool_pre_ping": True}


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage,
                                                                  include_best_trial=False)]


def load_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> optuna.Study:
    """An existing study, or a one-line error listing the studies that exist."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no study"
        raise UserError(f"no study '{name}' in {redact(url)}{known}") from None
