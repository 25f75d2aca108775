"""The journal file: Optuna's JournalFileBackend, checked for a torn tail on open and before
each append; see `_check_journal`."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from search.paths import JOURNAL_NAME
from search.storage.errors import StorageError

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


class _JournalLock(JournalFileOpenLock):
    """The writers' lock: an `flock` on `<journal>.flock`, then Optuna's own lock file.

    Optuna's lock file (`<journal>.lock`, created with O_EXCL) outlives a writer killed while
    holding it, and every other writer then waits out its grace period (30 s by default: the
    storage load benchmark saw 4 workers stall 30 s after one `kill -9`). The operating system
    releases an `flock` when its holder dies, so among effsearch's writers, which all take it
    first, a lock file found while holding the flock was left by a dead one or is held by
    another program's writer (optuna-dashboard's notes): it is waited for 3 s, Optuna's
    smallest grace, then removed. On a file system without flock (the flock file cannot be
    opened), Optuna's lock alone decides.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), grace_period=_OPEN_LOCK_GRACE_S)
        self._flock_path = f"{path}.flock"
        self._held = threading.local()  # the heartbeat thread writes too: a file per thread

    def acquire(self) -> bool:
        try:
            handle = open(self._flock_path, "a")  # noqa: SIM115 (held until release)
        except OSError:
            self._held.handle = None
        else:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held.handle = handle
        try:
            return super().acquire()
        except BaseException:
            self._unflock()
            raise

    def release(self) -> None:
        try:
            super().release()
        finally:
            self._unflock()

    def _unflock(self) -> None:
        handle = getattr(self._held, "handle", None)
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self._held.handle = None


_OPEN_LOCK_GRACE_S = 3


@contextmanager
def _locked(lock: JournalFileOpenLock) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def open_journal(path: Path, *, create: bool) -> optuna.storages.JournalStorage:
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
    lock = _JournalLock(path)
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
    Optuna's own full read raise, which `open_journal` turns into a StorageError naming the
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
