"""Where studies live: an embedded journal file by default, any Optuna RDB URL for many hosts.

- default: `<workdir>/effsearch.journal`, Optuna's JournalStorage with the file backend. Safe
  for many worker processes on one host (file locks), no server. Not for NFS: file locks
  there are unreliable (Optuna's distributed guide).
- `postgresql://...`, `mysql+pymysql://...`: Optuna's RDBStorage, for workers on many hosts.
- `redis://...`: JournalStorage on Redis (needs the `redis` package).
- `grpc://host:port`: `effsearch storage-proxy` in front of an RDB storage, for hundreds of
  workers (proxy.py; needs the `grpc` extra).
- a path ending in `.journal`/`.log`: that journal file.
- `sqlite:///...`: allowed for one worker only; SQLite has no row locks and Optuna advises
  against it for parallel optimisation (Optuna FAQ), so `--workers` > 1 refuses it.

A journal file is one JSON record per line, appended under a lock file (`<journal>.lock`). A
crash or a full disk can leave the last record torn (no line end); Optuna skips such a last
line when reading, but the next append lands on the same line and makes every later read
fail. `open_storage` therefore removes a torn tail before Optuna reads the file, and the
backend checks the tail again before each append; see `journal._check_journal`.

URLs carry credentials: `redact` is for messages, `public_location` for what is saved
(credentials.py). The PostgreSQL schema lock is in `_open_rdb` below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna

from search.paths import DEFAULT_WORKDIR, JOURNAL_NAME, STORAGE_ENV
from search.storage import proxy
from search.storage.credentials import public_location, redact, scrub
from search.storage.errors import StorageError
from search.storage.journal import open_journal
from space import UserError

__all__ = ["DEFAULT_WORKDIR", "JOURNAL_NAME", "STORAGE_ENV", "StorageError", "load_study",
           "open_storage", "public_location", "redact", "storage_url", "study_names"]


# ----------------------------------------------------------------------------- opening


def storage_url(workdir: str | None, storage: str | None) -> str:
    """The storage a command uses: `--storage`, else `$EFFSEARCH_STORAGE_URL` (a launcher's:
    its workers still take `--workdir` for their logs and checkpoints), else the work
    directory's journal file."""
    if storage:
        return storage
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    return str(Path(workdir or DEFAULT_WORKDIR) / JOURNAL_NAME)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def open_storage(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """Opens (and, for a journal file, creates) a storage.

    A journal file's torn last record (a crash or full disk mid-append) is removed first, with
    a one-line notice on stderr; see `_check_journal`.

    Args:
        url: an RDB URL, `redis://...`, or a journal file path.
        create: allow creating a missing journal file (commands that only read set False).

    Raises:
        StorageError: the server does not answer, the driver is missing, there is no journal
            file to read, or the path is not a usable journal (a directory, a foreign or
            corrupt file: the message names the line).
    """
    if "://" not in url:
        return open_journal(Path(url).expanduser(), create=create)
    if url.startswith(proxy.SCHEME):
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise StorageError("grpc:// storage needs grpcio (pip install "
                               "'effsearch[grpc]')") from None
        client = proxy.RetryingProxy(*proxy.address(url))
        client.wait_ready(PROXY_WAIT_S)
        return client
    if url.startswith("redis://"):
        try:
            backend = optuna.storages.journal.JournalRedisBackend(url)
        except ImportError:
            raise StorageError("redis:// storage needs the redis package "
                               "(pip install redis)") from None
        return optuna.storages.JournalStorage(backend)
    try:
        return _open_rdb(url)
    except ImportError as e:
        raise StorageError(f"storage {redact(url)} needs a database driver: "
                           f"{scrub(str(e), url)} (for PostgreSQL: pip install "
                           f"'effsearch[postgres]')") from None
    except Exception as e:  # sqlalchemy's errors: OperationalError, ArgumentError, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {redact(url)} does not answer: "
                           f"{scrub(reason, url)}") from None


# Connections per process: one held, one more while a trial's heartbeat thread writes as the
# main thread reads. SQLAlchemy's default (5 held + 10 overflow) lets 6 workers exhaust a
# PostgreSQL at its default max_connections=100; at 2 each, plus the slot lock's (slots.py),
# about 30 workers fit (README "Storage for many workers"), and more go through
# `effsearch storage-proxy`.
POOL = {"pool_size": 1, "max_overflow": 1}


def _engine_kwargs(url: str) -> dict[str, Any]:
    # Fail fast on an unreachable server rather than waiting for the OS TCP timeout, and
    # recycle connections that a long trial left idle.
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True, **POOL}
    if is_sqlite(url):  # SQLite's pool is not a queue of connections
        return {"pool_pre_ping": True}
    return {"pool_pre_ping": True, **POOL}


PROXY_WAIT_S = 10.0  # a proxy that does not answer when a command starts: one line


# Any constant 64-bit key; PostgreSQL scopes advisory locks to the database.
_SCHEMA_LOCK_KEY = 0x6566_6673_6561_7263  # "effsearc"
_SCHEMA_LOCK_TIMEOUT_S = 120


def _open_rdb(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage; on PostgreSQL, the schema is created under an advisory lock.

    RDBStorage.__init__ creates the schema with SQLAlchemy's check-then-create `create_all`,
    then inserts the version row and stamps alembic's revision, each check-then-insert. Workers
    started together on an empty database race in all three: the losers fail with
    UniqueViolation on pg_type_typname_nsp_index (the enum types), DuplicateTable, or a
    duplicate version row. Retrying on those errors would have to recognise every such error
    and could still lose the race on each try; the lock serialises creation, so the first
    worker creates the schema and the others find it. A transaction-level advisory lock is
    released by the server even if its process dies, and works through transaction-pooling
    proxies such as PgBouncer.

    Alembic's stamp is the last thing RDBStorage.__init__ writes, so once it is there every
    later construction only reads: the lock is skipped then (one short extra connection per
    open), and on a fresh database the workers queue for it only once.
    """
    kwargs = _engine_kwargs(url)
    import sqlalchemy

    if sqlalchemy.engine.make_url(url).get_backend_name() != "postgresql":
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                      **{k: v for k, v in kwargs.items() if k not in POOL})
    try:
        with engine.connect() as connection:
            stamped = _schema_stamped(connection)
            connection.rollback()  # end the check's implicit transaction
            if not stamped:
                with connection.begin():
                    # Bounded: a worker stuck while holding the lock must not hang the others.
                    connection.execute(sqlalchemy.text(
                        f"SET LOCAL lock_timeout = '{_SCHEMA_LOCK_TIMEOUT_S}s'"))
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _SCHEMA_LOCK_KEY})
                    if not _schema_stamped(connection):
                        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    finally:
        engine.dispose()


def _schema_stamped(connection: Any) -> bool:
    """Whether Optuna's schema is complete: alembic's version table has its row."""
    import sqlalchemy

    if not connection.execute(sqlalchemy.text(
            "SELECT to_regclass('alembic_version') IS NOT NULL")).scalar():
        return False
    return bool(connection.execute(sqlalchemy.text(
        "SELECT EXISTS (SELECT 1 FROM alembic_version)")).scalar())


# ----------------------------------------------------------------------------- studies


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
