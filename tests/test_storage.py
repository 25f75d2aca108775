"""Storage: journal tail recovery, refusing foreign or corrupt files, the PostgreSQL schema race,
and credentials kept out of messages and saved provenance."""

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from search import storage
from search.cli import main
from search.storage import StorageError, journal, public_location, redact
from search.storage.credentials import scrub

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ----------------------------------------------------------------------------- journal file


def make_journal(path: Path, trials: int = 4) -> bytes:
    """A journal with one study and `trials` finished trials; returns its bytes."""
    study = optuna.create_study(study_name="s", storage=storage.open_storage(str(path)))
    for i in range(trials):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, float(i))
    return path.read_bytes()


def complete_trials(url: str) -> int:
    study = optuna.load_study(study_name="s", storage=storage.open_storage(url, create=False))
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_torn_tail_is_removed_saved_and_reported_then_writes_and_reads_work(tmp_path, capsys):
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    records = whole.count(b"\n")
    last_start = whole.rfind(b"\n", 0, len(whole) - 1) + 1
    os.truncate(path, len(whole) - 40)  # the bug report's repro: cut into the last record
    torn = whole[last_start:-40]
    capsys.readouterr()

    store = storage.open_storage(str(path))

    err = one_line(capsys.readouterr().err)
    (saved,) = tmp_path.glob("s.journal.torn-*")
    assert err == (f"effsearch: recovered {path}: removed a torn last record ({len(torn)} bytes, "
                   f"from a crash or full disk; saved in {saved}); {records - 1} complete "
                   f"records kept\n")
    assert path.read_bytes() == whole[:last_start]  # exactly the torn bytes, no record
    assert saved.read_bytes() == torn
    # The bug: the next append landed on the torn line and every later read failed.
    study = optuna.load_study(study_name="s", storage=store)
    study.tell(study.ask(), 9.0)
    assert complete_trials(str(path)) == 4  # the torn record was the last trial's tell
    assert capsys.readouterr().err == ""  # nothing left to recover


def test_read_only_commands_recover_a_torn_tail_too(tmp_path, capsys):
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    os.truncate(path, len(whole) - 40)
    assert complete_trials(str(path)) == 3
    assert "removed a torn last record" in one_line(capsys.readouterr().err)
    assert path.read_bytes().endswith(b"\n")


def test_unwritable_torn_tail_reader_continues_writer_refuses(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    os.truncate(path, len(whole) - 40)

    def read_only(_path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(journal, "_recover_tail", read_only)
    capsys.readouterr()
    assert complete_trials(str(path)) == 3  # Optuna reads all but the torn last line
    err = one_line(capsys.readouterr().err)
    assert "ends with a torn record" in err and "Permission denied" in err
    with pytest.raises(StorageError, match="torn record that cannot be removed"):
        storage.open_storage(str(path))
    assert path.stat().st_size == len(whole) - 40


def test_complete_last_record_without_line_end_is_kept(tmp_path, capsys):
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    os.truncate(path, len(whole) - 1)
    capsys.readouterr()
    assert complete_trials(str(path)) == 4  # not dropped: the record was whole
    assert "had lost its line end" in one_line(capsys.readouterr().err)
    assert path.read_bytes() == whole
    assert not list(tmp_path.glob("*.torn-*"))


@pytest.mark.parametrize("tail", [b'{"op', b'{"op_code":4,"worker_id":"ab', b"\0" * 512,
                                  b'{"op_code":5,"tri' + b"\0" * 100])
def test_torn_tail_shapes(tmp_path, capsys, tail):
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    path.write_bytes(whole + tail)  # includes a file system's zero-filled block after a crash
    assert complete_trials(str(path)) == 4
    assert path.read_bytes() == whole
    assert f"({len(tail)} bytes" in one_line(capsys.readouterr().err)


def test_journal_holding_only_a_torn_record_becomes_empty(tmp_path, capsys):
    path = tmp_path / "s.journal"
    path.write_bytes(b'{"op_code":0,"worker_id":"x","study_na')
    store = storage.open_storage(str(path))
    assert "0 complete records kept" in one_line(capsys.readouterr().err)
    assert path.read_bytes() == b""
    optuna.create_study(study_name="s", storage=store)
    assert storage.study_names(storage.open_storage(str(path))) == ["s"]


def test_a_running_writer_appends_after_recovering_a_torn_tail(tmp_path, capsys):
    # A worker that keeps running while another one's append was cut short (full disk).
    path = tmp_path / "s.journal"
    make_journal(path)
    study = optuna.load_study(study_name="s", storage=storage.open_storage(str(path)))
    with path.open("ab") as f:
        f.write(b'{"op_code":4,"worker_id":"other-process","stu')
    study.tell(study.ask(), 7.0)
    assert "removed a torn last record" in one_line(capsys.readouterr().err)
    assert complete_trials(str(path)) == 5


def test_recovery_waits_for_the_writers_lock(tmp_path, capsys):
    # A writer holding the lock may be mid-append: its unfinished line is not torn.
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    record = b'{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"k":1}}\n'
    lock = optuna.storages.journal.JournalFileOpenLock(str(path))
    lock.acquire()
    with path.open("ab") as f:
        f.write(record[:20])
    opened: list[optuna.storages.BaseStorage] = []
    reader = threading.Thread(target=lambda: opened.append(storage.open_storage(str(path))))
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive() and path.read_bytes() == whole + record[:20]  # not cut
    with path.open("ab") as f:
        f.write(record[20:])
    lock.release()
    reader.join(10)
    assert opened and path.read_bytes() == whole + record
    assert capsys.readouterr().err == ""
    assert optuna.load_study(study_name="s", storage=opened[0]).user_attrs == {"k": 1}


def test_clean_journal_is_not_scanned_on_open(tmp_path, monkeypatch):
    path = tmp_path / "s.journal"
    make_journal(path, trials=30)

    def scan(_path):
        raise AssertionError("a journal with an intact tail must not be scanned whole")

    monkeypatch.setattr(journal, "_scan", scan)
    assert complete_trials(str(path)) == 30


def corrupt_line(whole: bytes, number: int, text: bytes) -> bytes:
    lines = whole.splitlines(keepends=True)
    lines[number - 1] = text + b"\n"
    return b"".join(lines)


@pytest.mark.parametrize("torn_tail", [b"", b'{"op_code":6,"wor'])
@pytest.mark.parametrize(("number", "text", "problem"), [
    (3, b'{"op_code":4,"worker_id"', "not JSON"),
    (3, b'{"op_code":4,"wor{"op_code":5,"worker_id":"x"}', "not JSON"),  # torn, then appended
    (3, b'{"no":"op code"}', "JSON, but not a journal record"),
    (-1, b"garbage", "not JSON"),  # the last complete line: Optuna alone would skip it
])
def test_corrupt_line_is_named_and_the_file_left_unchanged(tmp_path, capsys, number, text,
                                                           problem, torn_tail):
    path = tmp_path / "s.journal"
    whole = make_journal(path)
    number = whole.count(b"\n") if number == -1 else number
    damaged = corrupt_line(whole, number, text) + torn_tail
    path.write_bytes(damaged)
    for create in (True, False):
        with pytest.raises(StorageError) as e:
            storage.open_storage(str(path), create=create)
        assert str(e.value).startswith(f"journal {path} is corrupt at line {number}: {problem}")
        assert "left unchanged" in str(e.value)
    assert path.read_bytes() == damaged
    assert not list(tmp_path.glob("*.torn-*")) and capsys.readouterr().err == ""


@pytest.mark.parametrize("content", [
    os.urandom(4096),  # random bytes with and without line ends
    os.urandom(4096).replace(b"\n", b"") + b"\n" + os.urandom(100).replace(b"\n", b""),
    b"just some notes\nabout the run\n",
    b"notes without a line end",
    b'{"a": 1}\n{"op_code": 0}\n',
    b"\n\n",
])
def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    for create in (True, False):
        with pytest.raises(StorageError, match=rf"^{path} is not an Optuna journal: line 1 is "):
            storage.open_storage(str(path), create=create)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no lock, no .torn


def test_unusable_journal_paths_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cases = {
        str(tmp_path): "is a directory, not a journal file",
        str(tmp_path / "file" / "s.journal"): f"{tmp_path / 'file'} is a file, not a directory",
        str(tmp_path / "file" / "deeper" / "s.journal"): "is a file, not a directory",
    }
    for url, message in cases.items():
        with pytest.raises(StorageError, match=message) as e:
            storage.open_storage(url)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "file").is_dir()
    assert main(["front", "x", "--storage", str(tmp_path)]) == 2  # what a user sees
    assert "is a directory, not a journal file" in one_line(capsys.readouterr().err)
    garbage = tmp_path / "g.journal"
    garbage.write_bytes(b"\x00\xff\xfe binary\n")
    assert main(["front", "x", "--storage", str(garbage)]) == 2
    assert "line 1 is not JSON" in one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- redaction


REDACT_CASES = [
    # url, secret, what must remain in redact(url), public_location(url)
    ("postgresql://user:PW-x9z@host/db", "PW-x9z", "postgresql://user:***@host/db",
     "postgresql://host/db"),
    ("postgresql://:PW-x9z@host/db", "PW-x9z", "postgresql://:***@host/db",
     "postgresql://host/db"),
    ("postgresql://user:p@ss-x9z@host/db", "p@ss-x9z", "postgresql://user:***@host/db",
     "postgresql://host/db"),
    ("postgresql://user:a/b?c#d@host:5432/db", "a/b?c#d", "postgresql://user:***@host:5432/db",
     "postgresql://host:5432/db"),
    ("postgresql://host/db?user=u&password=PW-x9z", "PW-x9z",
     "postgresql://host/db?user=u&password=***", "postgresql://host/db"),
    ("postgresql://host/db?passwd=PW-x9z&sslmode=require", "PW-x9z",
     "postgresql://host/db?passwd=***&sslmode=require", "postgresql://host/db"),
    ("postgresql://host/db?sslmode=require&sslpassword=PW-x9z", "PW-x9z",
     "postgresql://host/db?sslmode=require&sslpassword=***", "postgresql://host/db"),
    ("postgresql://host/db?secret=PW-x9z", "PW-x9z", "postgresql://host/db?secret=***",
     "postgresql://host/db"),
    ("postgresql://h/db?client_secret=PW-x9z&access_token=TK-x9z", "PW-x9z",
     "postgresql://h/db?client_secret=***&access_token=***", "postgresql://h/db"),
    ("postgresql://h/db?Api_Token=PW-x9z", "PW-x9z", "postgresql://h/db?Api_Token=***",
     "postgresql://h/db"),
    ("postgresql://h/db?user=me@corp&password=PW-x9z", "PW-x9z",
     "postgresql://h/db?user=me@corp&password=***", "postgresql://h/db"),
    ("redis://:PW-x9z@host:6379/0", "PW-x9z", "redis://:***@host:6379/0",
     "redis://host:6379/0"),
    ("mysql+pymysql://u:PW-x9z@h/db", "PW-x9z", "mysql+pymysql://u:***@h/db",
     "mysql+pymysql://h/db"),
    ("postgresql://user@host/db", None, "postgresql://user@host/db", "postgresql://host/db"),
    ("sqlite:///runs/s.db", None, "sqlite:///runs/s.db", "sqlite:///runs/s.db"),
    ("/data/runs/effsearch.journal", None, "/data/runs/effsearch.journal",
     "/data/runs/effsearch.journal"),
    ("runs@host/effsearch.journal", None, "runs@host/effsearch.journal",
     "runs@host/effsearch.journal"),
]


@pytest.mark.parametrize(("url", "secret", "redacted", "location"), REDACT_CASES)
def test_redact_and_public_location(url, secret, redacted, location):
    assert redact(url) == redacted
    assert public_location(url) == location
    if secret:
        assert secret not in redact(url) and secret not in public_location(url)
        assert "TK-x9z" not in redact(url)
    if "://" in url:  # no user name, password or query in what is saved
        assert "@" not in location and "?" not in location


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=4,
               max_size=40))
def test_redact_never_shows_a_random_password(password):
    url = f"postgresql://user:{password}@host:5432/db"
    assume(password not in "postgresql://user:***@host:5432/db")  # the rest, and the mask
    assert password not in redact(url) and redact(url).endswith("@host:5432/db")
    assert redact(url).startswith("postgresql://user:")
    assert public_location(url) == "postgresql://host:5432/db"


def test_driver_messages_are_scrubbed():
    # SQLAlchemy splits an unencoded "p@ss-word@host" at its first "@": the driver then quotes
    # part of the password as the host.
    url = "postgresql://u:p@ss-word@db.example/x"
    message = "failed to resolve host 'ss-word@db.example': Name or service not known"
    assert "ss-word" not in scrub(message, url)
    assert "db.example" in scrub(message, url)
    assert "PW-x9z" not in scrub(
        "Could not parse postgresql://u:PW-x9z@h/x?password=PW-x9z", url.replace(
            "p@ss-word", "PW-x9z"))


def test_unreachable_server_is_one_quick_line_without_the_password():
    start = time.monotonic()
    with pytest.raises(StorageError) as e:
        storage.open_storage("postgresql://u:PW-x9z@127.0.0.1:1/db")
    assert time.monotonic() - start < 10
    assert str(e.value).startswith("storage postgresql://u:***@127.0.0.1:1/db does not answer: ")
    assert "PW-x9z" not in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- PostgreSQL


def admin(url: str, *statements: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT",
                                      poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def fresh_database(postgres_url):
    """(server URL, name of an empty database that is dropped afterwards)."""
    name = f"effsearch_{uuid.uuid4().hex[:12]}"
    admin(postgres_url, f"CREATE DATABASE {name}")
    yield postgres_url, name
    admin(postgres_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import alembic.migration, alembic.script, optuna, psycopg
    import optuna.storages._rdb.models, sqlalchemy.dialects.postgresql.psycopg
    from search import storage

    # Imported above, not lazily on opening: the racers then reach the database together.
    url, go = sys.argv[1], Path(sys.argv[2])
    (go.parent / f"ready-{sys.argv[3]}").touch()
    while not go.exists():  # every racer imported: start together
        time.sleep(0.001)
    optuna.create_study(study_name="race", storage=storage.open_storage(url),
                        load_if_exists=True)
""")


def test_workers_started_together_on_a_fresh_database(fresh_database, tmp_path):
    # Without the schema lock, all but one or two of 6 racers die of UniqueViolation on
    # pg_type_typname_nsp_index (create_all's CREATE TYPE) in every run we tried.
    server, name = fresh_database
    url = with_database(server, name)
    racers = 6
    procs = [subprocess.Popen([sys.executable, "-c", RACER, url, str(tmp_path / "go"), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(racers)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < racers and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = [(p.wait(60), p.communicate()[1][-2000:]) for p in procs]
    assert all(code == 0 for code, _ in results), next(err for code, err in results if code)
    assert storage.study_names(storage.open_storage(url)) == ["race"]


def test_password_never_appears_in_postgresql_messages(fresh_database, capsys):
    server, name = fresh_database
    role, password = f"r_{name[-8:]}", "Sup3r-Secr3t-pw"
    admin(server, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
          f"ALTER DATABASE {name} OWNER TO {role}")
    host = server.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        store = storage.open_storage(f"postgresql://{role}:{password}@{host}/{name}")
        optuna.create_study(study_name="pw", storage=store)
        wrong = f"postgresql://{role}:{password}@{host}/no_such_db"
        with pytest.raises(StorageError) as e:
            storage.open_storage(wrong)
        assert f"storage postgresql://{role}:***@{host}/no_such_db does not answer" in str(
            e.value)
        assert main(["front", "x", "--storage", wrong]) == 2
        out, err = capsys.readouterr()
        assert "no_such_db" in one_line(err)
        for text in (str(e.value), out, err):
            assert password not in text and "Secr3t" not in text
    finally:
        admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"DROP ROLE {role}")
