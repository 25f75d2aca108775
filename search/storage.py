"""Where studies live: an embedded journal file by default, any Optuna RDB URL for many hosts.

- default: `<workdir>/effsearch.journal`, Optuna's JournalStorage with the file backend. Safe
  for many worker processes on one host (file locks), no server. Not for NFS: file locks
  there are unreliable (Optuna's distributed guide).
- `postgresql://...`, `mysql+pymysql://...`: Optuna's RDBStorage, for workers on many hosts.
- `redis://...`: JournalStorage on Redis (needs the `redis` package).
- a path ending in `.journal`/`.log`: that journal file.
- `sqlite:///...`: allowed for one worker only; SQLite has no row locks and Optuna advises
  against it for parallel optimisation (Optuna FAQ), so `--workers` > 1 refuses it.

A journal file is one JSON record per line, appended under a lock file (`<journal>.lock`). A
crash or a full disk can leave the last record torn (no line end); Optuna skips such a last
line when reading, but the next append lands on the same line and makes every later read
fail. `open_storage` therefore removes a torn tail before Optuna reads the file, and the
backend checks the tail again before each append; see `_check_journal`.

URLs carry credentials: `redact` is for messages, `public_location` for what is saved.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from search.paths import DEFAULT_WORKDIR, JOURNAL_NAME
from space import UserError

__all__ = ["DEFAULT_WORKDIR", "JOURNAL_NAME", "StorageError", "load_study", "open_storage",
           "public_location", "redact", "storage_url", "study_names"]



class StorageError(UserError):
    """The storage cannot be opened or does not answer."""


# ----------------------------------------------------------------------------- credentials

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# Query keys whose values are credentials: password, passwd, sslpassword, pwd, secret,
# client_secret, token, api_key, auth, credentials, ... (any key containing these words).
_SECRET_KEY = re.compile(
    r"(?i)(^|[?&;])([^=&;?#]*(?:pass|pwd|secret|token|key|auth|credential)[^=&;?#]*)=([^&;]*)")
# What can follow the host in a location: the query, fragment or stray query parameters.
_AFTER_PATH = re.compile(r"[?#&;]")


@dataclass(frozen=True)
class _Url:
    """A URL split around its credentials; `rest` is host, port, path and query."""

    scheme: str  # with "://"
    user: str | None  # None: no user part at all
    password: str | None  # None: no password given
    rest: str


def _split_url(url: str) -> _Url | None:
    """The URL's parts, or None for a plain file path.

    The user part ends at the LAST "@": passwords are often pasted unencoded and may hold "@",
    "/", "?" or "#", while host names never hold "@". An "@" after a "/" in what would be the
    user name (e.g. in a query value: `.../db?application_name=a@b`) is not a user part.
    Choosing the last "@" may hide the host of a URL with "@" in its query too; hiding too much
    is the safe side.
    """
    scheme = _SCHEME.match(url)
    if not scheme:
        return None
    head, rest = url[:scheme.end()], url[scheme.end():]
    at = rest.rfind("@")
    if at < 0:
        return _Url(head, None, None, rest)
    userinfo = rest[:at]
    user, colon, password = userinfo.partition(":")
    if re.search(r"[/?#]", user):  # not a user name: the "@" is in the path or query
        return _Url(head, None, None, rest)
    return _Url(head, user, password if colon else None, rest[at + 1:])


def redact(url: str) -> str:
    """The URL for messages: the password and secret query values replaced by `***`.

    The user name stays (it is not secret and tells which account failed). A plain file path
    comes back unchanged.
    """
    parts = _split_url(url)
    if parts is None:
        return url
    userinfo = ""
    if parts.user is not None:
        userinfo = parts.user + (":***" if parts.password else
                                 ":" if parts.password is not None else "") + "@"
    return parts.scheme + userinfo + _SECRET_KEY.sub(r"\1\2=***", parts.rest)


def public_location(url: str) -> str:
    """What may be saved (exported provenance): scheme, host, port and database or path only.

    No user, no password, no query string: a saved file outlives the credentials' secrecy, and
    a query can carry `password=`/`sslpassword=`/tokens. A plain file path comes back as given.
    """
    parts = _split_url(url)
    if parts is None:
        return url
    return parts.scheme + _AFTER_PATH.split(parts.rest, maxsplit=1)[0]


def _secrets(url: str) -> list[str]:
    """The credential strings in `url`, longest first, to scrub from driver messages."""
    parts = _split_url(url)
    if parts is None:
        return []
    # Shorter strings would mangle the message more than hiding them protects.
    found = {m.group(3) for m in _SECRET_KEY.finditer(parts.rest) if len(m.group(3)) >= 3}
    password = parts.password or ""
    if len(password) >= 3:
        found.add(password)
    found.update(p for p in re.split(r"[@:/?#]", password) if len(p) >= 4)
    # SQLAlchemy splits an unencoded "p@ss@host" at the first "@" and reports the host as
    # "ss@host": hide every piece that follows an "@" in the password, with its "@".
    found.update(password[i + 1:] + "@" for i, c in enumerate(password[:-1]) if c == "@")
    return sorted(found, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with the URL's credentials replaced by ***."""
    for secret in _secrets(url):
        text = text.replace(secret, "***@" if secret.endswith("@") else "***")
    return re.sub(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+", lambda m: redact(m.group(0)), text)


# ----------------------------------------------------------------------------- opening


def storage_url(workdir: str | None, storage: str | None) -> str:
    """The storage a command uses: `--storage` if given, else the workdir's journal file."""
    if storage:
        return storage
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
        return _open_journal(Path(url).expanduser(), create=create)
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
                           f"{_scrub(str(e), url)} (for PostgreSQL: pip install "
                           f"'effsearch[postgres]')") from None
    except Exception as e:  # sqlalchemy's errors: OperationalError, ArgumentError, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {redact(url)} does not answer: "
                           f"{_scrub(reason, url)}") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # Fail fast on an unreachable server rather than waiting for the OS TCP timeout, and
    # recycle connections that a long trial left idle.
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {"pool_pre_ping": True}


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
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **kwargs)
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


# ----------------------------------------------------------------------------- journal file

_RECORD_START = b'{"op_code":'  # how Optuna's JournalStorage writes every record
_FIRST_LINE_LIMIT = 1 << 20  # a record is far shorter; a longer first line is not a journal
_CHUNK = 1 << 16


class _JournalFile(JournalFileBackend):
    """Optuna's journal file backend that never appends after a torn record.

    A worker that keeps running while another one's append was cut short (full disk) would
    otherwise append onto the torn line. Under the writers' lock the check costs one stat and
    a one-byte read per append.
    """

    def __init__(self, path: Path, lock: JournalFileOpenLock) -> None:
        super().__init__(str(path), lock_obj=lock)
        self._effsearch_path = path
        self._effsearch_lock = lock

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        # Same bytes and lock as JournalFileBackend.append_logs (which cannot be wrapped: its
        # lock is not reentrant), preceded by the tail check.
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        with _locked(self._effsearch_lock):
            if _ends_unterminated(self._effsearch_path):
                _recover_tail(self._effsearch_path)
            with open(self._effsearch_path, "ab") as f:
                f.write(data.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())


@contextmanager
def _locked(lock: JournalFileOpenLock) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _open_journal(path: Path, *, create: bool) -> optuna.storages.JournalStorage:
    if path.is_dir():
        raise StorageError(f"journal {path} is a directory, not a journal file (pass a file "
                           f"path such as {path / JOURNAL_NAME})")
    if not path.exists():
        if not create:
            raise StorageError(f"no study storage at {path} (run `effsearch search` first, "
                               f"or pass --workdir/--storage)")
        _make_parent(path)
    elif not stat.S_ISREG(path.stat().st_mode):
        raise StorageError(f"journal {path} is not a regular file")
    lock = JournalFileOpenLock(str(path))
    try:
        if path.exists():
            _check_journal(path, lock, create=create)
        backend = _JournalFile(path, lock)
    except OSError as e:
        raise StorageError(f"cannot open journal {path}: {e.strerror or e}") from None
    try:
        return optuna.storages.JournalStorage(backend)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError) as e:
        # A corrupt record in the middle: Optuna's reader raises on it (JSONDecodeError) or on
        # a well-formed record it cannot apply. Find the line to name it.
        bad = _scan(path)
        if bad.bad_line is not None:
            raise _corrupt(path, bad.bad_line, bad.problem) from None
        detail = f": {str(e).splitlines()[0]}" if str(e).strip() else ""
        raise StorageError(f"journal {path} cannot be read ({type(e).__name__}{detail}); it "
                           f"was left unchanged") from None
    except OSError as e:
        raise StorageError(f"cannot read journal {path}: {e.strerror or e}") from None


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in [path.parent, *path.parent.parents]
                        if p.exists() and not p.is_dir()), None)
        why = (f"{blocker} is a file, not a directory" if blocker is not None
               else f"{e.strerror or e}: {e.filename or path.parent}")
        raise StorageError(f"cannot create journal {path}: {why}") from None


def _check_journal(path: Path, lock: JournalFileOpenLock, *, create: bool) -> None:
    """Refuses a file that is not a journal and recovers a torn last record, before Optuna reads.

    Cheap on every open: the first line, the last complete line and the bytes after it are
    checked (a read of the file's end), not the whole file; a corrupt line in the middle makes
    Optuna's own full read raise, which `_open_journal` turns into a StorageError naming the
    line. Only when the file does not end with a line end is it scanned whole, under the
    writers' lock: an append in progress holds that lock, so what is left unterminated once
    we hold it is torn for good.

    Recovery drops exactly the bytes after the last line end (saved beside the journal as
    `<journal>.torn-<time>`), or adds the line end to a last record that is complete, and says
    so in one line on stderr. Nothing is modified when any complete line is not a journal
    record: the file is refused as corrupt, or as not a journal when line 1 is foreign.

    Read-only commands (`create=False`) recover too: the torn bytes are never readable (Optuna
    skips an unterminated last line), so dropping them changes nothing a reader sees, while
    leaving them makes the next append by any worker corrupt the journal for good. Where the
    file cannot be written (read-only mount or permissions), a reader goes on with everything
    but the torn tail after a one-line notice; a writer gets a StorageError, as its appends
    would fail anyway.
    """
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        first = f.readline(_FIRST_LINE_LIMIT)
        if first.endswith(b"\n"):
            problem = _problem(first)
            if problem:
                raise _corrupt(path, 1, problem)
        elif not _could_be_torn(first):
            raise _corrupt(path, 1, "not a journal record")
        tail, last_line = _read_end(f, size)
    if last_line is not None:
        problem = _problem(last_line)
        if problem:
            raise _corrupt(path, _count_lines(path), problem)
    if not tail:
        return
    try:
        with _locked(lock):
            _recover_tail(path)
    except OSError as e:
        if create:
            raise StorageError(f"journal {path} ends with a torn record that cannot be "
                               f"removed: {e.strerror or e}") from None
        sys.stderr.write(f"effsearch: {path} ends with a torn record ({len(tail)} bytes) "
                         f"that could not be removed ({e.strerror or e}); reading the "
                         f"complete records before it\n")


def _read_end(f: Any, size: int) -> tuple[bytes, bytes | None]:
    """(the bytes after the last line end, the last complete line or None), read backwards."""
    chunks: list[bytes] = []
    pos, step, newlines = size, _CHUNK, 0
    while pos > 0 and newlines < 2:
        step = min(step * 2, pos) if chunks else min(step, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        chunks.insert(0, chunk)
        newlines += chunk.count(b"\n")
    data = b"".join(chunks)
    end = data.rfind(b"\n")
    if end < 0:
        return data, None
    start = data.rfind(b"\n", 0, end) + 1
    return data[end + 1:], data[start:end + 1]


def _ends_unterminated(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
    finally:
        os.close(fd)


def _recover_tail(path: Path) -> None:
    """Under the writers' lock: drops the torn tail, or terminates a complete last record.

    Raises:
        StorageError: a complete line is not a journal record, or the tail is not the start
            of one; the file is left unchanged.
    """
    scan = _scan(path)
    if scan.bad_line is not None:
        raise _corrupt(path, scan.bad_line, scan.problem)
    if not scan.tail:
        return  # another process recovered it while we waited for the lock
    if not _problem(scan.tail):
        with path.open("ab") as f:
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        sys.stderr.write(f"effsearch: recovered {path}: the last record had lost its line end "
                         f"(a crash or full disk), which was added; "
                         f"{_records(scan.records + 1, 'complete')} kept\n")
        return
    if not _could_be_torn(scan.tail):
        raise _corrupt(path, scan.records + 1, "not a journal record")
    saved = _save_torn(path, scan.tail)
    with path.open("r+b") as f:
        f.truncate(scan.tail_start)
        f.flush()
        os.fsync(f.fileno())
    sys.stderr.write(f"effsearch: recovered {path}: removed a torn last record "
                     f"({len(scan.tail)} bytes, from a crash or full disk; {saved}); "
                     f"{_records(scan.records, 'complete')} kept\n")


def _save_torn(path: Path, data: bytes) -> str:
    """Keeps the removed bytes beside the journal; says where (or why not) for the notice."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(100):
        target = path.with_name(f"{path.name}.torn-{stamp}" + (f"-{n}" if n else ""))
        try:
            with target.open("xb") as f:
                f.write(data)
            return f"saved in {target}"
        except FileExistsError:
            continue
        except OSError as e:
            # The bytes are an incomplete record that no reader can use, so failing to keep a
            # copy (the disk is full, likely) must not block removing them.
            return f"not saved: {e.strerror or e}"
    return "not saved: too many earlier copies"


@dataclass(frozen=True)
class _Scan:
    records: int  # complete journal records before the first problem (or in the file)
    bad_line: int | None  # 1-based number of the first complete line that is not a record
    problem: str  # what is wrong with that line
    tail_start: int  # where the bytes after the last line end start
    tail: bytes  # those bytes


def _scan(path: Path) -> _Scan:
    records = offset = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return _Scan(records, None, "", offset, line)
            problem = _problem(line)
            if problem:
                return _Scan(records, number, problem, offset, b"")
            records += 1
            offset += len(line)
    return _Scan(records, None, "", offset, b"")


def _problem(line: bytes) -> str:
    """What keeps `line` from being an Optuna journal record ("" if nothing)."""
    try:
        record = json.loads(line.rstrip(b"\r\n"))
    except json.JSONDecodeError as e:
        return f"not JSON ({e.msg} at column {e.pos + 1})"
    except (ValueError, RecursionError):  # not UTF-8 text; absurdly nested
        return "not JSON text"
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        return "JSON, but not a journal record"
    return ""


def _could_be_torn(data: bytes) -> bool:
    """Whether `data` may be the start of a record whose append was cut short.

    Trailing NUL bytes are allowed: a file system may zero-fill the unwritten end of a block
    after a crash.
    """
    data = data.rstrip(b"\0")
    return data.startswith(_RECORD_START) or _RECORD_START.startswith(data)


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _records(n: int, adjective: str = "") -> str:
    words = f"{adjective} record" if adjective else "record"
    return f"{n} {words}" + ("" if n == 1 else "s")


def _corrupt(path: Path, line: int, problem: str) -> StorageError:
    if line == 1:
        return StorageError(f"{path} is not an Optuna journal: line 1 is {problem}; it was "
                            f"left unchanged")
    return StorageError(f"journal {path} is corrupt at line {line}: {problem}; it was left "
                        f"unchanged (it holds {_records(line - 1, 'intact')} before that line)")


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
