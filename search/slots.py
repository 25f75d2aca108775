"""Worker slots: a small number per live worker of a study, unique among its live workers.

A worker's sampler seed is derived from its slot (`controller.worker_seed`), so workers never
propose one sequence, and the same launch gives the same seeds: the first command's workers
hold slots 0..N-1, a second command's the next ones. The claim lives where the storage does,
so it is unique wherever the study's workers run:

- a journal file (one host): an exclusive `flock` on `<journal>.slots/<study>.<slot>.lock`;
- PostgreSQL (many hosts): a session advisory lock on (study, slot), on a connection the
  worker keeps open (one more connection per worker; a transaction-pooling proxy such as
  PgBouncer cannot keep session locks: point workers at the server or a session pool; a
  server's `idle_session_timeout` would end the claim early, so leave it off for workers);
- anything else (in-memory, Redis, MySQL): the slot the launcher asked for.

The operating system or the server releases a claim when its worker dies, so a crashed
worker's slot is free for the next launch. Optuna offers no atomic counter to claim from
(study attributes are last-writer-wins), hence these locks.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

SLOT_ENV = "EFFSEARCH_WORKER_SLOT"  # the slot a launcher asks for (worker i of --workers)
MAX_SLOTS = 4096
_held: list[Any] = []  # open lock files and connections: a claim lasts as long as its process


def _key(study: str) -> str:
    return hashlib.sha256(study.encode()).hexdigest()[:16]


def _order(preferred: int) -> list[int]:
    return [preferred, *(n for n in range(MAX_SLOTS) if n != preferred)]


def claim(url: str, study: str, preferred: int | None = None) -> int:
    """Claims the lowest free slot of `study` in the storage at `url`, `preferred` first.

    Args:
        url: the storage URL or journal path, as `search.storage.storage_url` gives it.
        study: the study's name.
        preferred: the slot to try first (default: `$EFFSEARCH_WORKER_SLOT`, else 0).

    Returns:
        The slot, held until this process exits.
    """
    if preferred is None:
        preferred = int(os.environ.get(SLOT_ENV, "0") or 0)
    if "://" not in url:
        return _claim_file(Path(url).expanduser(), study, preferred)
    if url.startswith("postgresql"):
        return _claim_postgres(url, study, preferred)
    return preferred


def _claim_file(journal: Path, study: str, preferred: int) -> int:
    import fcntl

    folder = journal.with_name(journal.name + ".slots")
    folder.mkdir(parents=True, exist_ok=True)
    for slot in _order(preferred):
        handle = open(folder / f"{_key(study)}.{slot}.lock", "a")  # noqa: SIM115 (held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        return slot
    raise RuntimeError(f"no free worker slot among {MAX_SLOTS}")


def _claim_postgres(url: str, study: str, preferred: int) -> int:
    import sqlalchemy

    # pg_try_advisory_lock(int4, int4): the study's key, then the slot.
    from search.storage import StorageError, redact
    from search.storage.credentials import scrub

    study_key = int(_key(study)[:8], 16) - 2**31
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": 10})
    try:
        connection = engine.connect()
    except Exception as e:  # sqlalchemy's OperationalError and its kin: the server is away
        engine.dispose()
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {redact(url)} does not answer: "
                           f"{scrub(reason, url)}") from None
    query = sqlalchemy.text("SELECT pg_try_advisory_lock(:study, :slot)")
    for slot in _order(preferred):
        if connection.execute(query, {"study": study_key, "slot": slot}).scalar():
            connection.commit()  # the lock is the session's; end the query's transaction
            _held.append(connection)
            return slot
    connection.close()
    engine.dispose()
    raise RuntimeError(f"no free worker slot among {MAX_SLOTS}")
