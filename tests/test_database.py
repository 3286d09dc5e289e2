"""The SQLite base of the stores: private files, schema versions, migrations once, newer files refused."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from medslm.database import Schema, add_columns, connect, migrate, open_database, schema_version
from medslm.errors import ConfigurationError

V1 = "CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, body TEXT)"


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_files_are_private_and_migrations_run_once(tmp_path):
    path = tmp_path / "sub" / "db.sqlite"
    calls = []

    def v3(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("INSERT INTO t (id, body) VALUES ('seed', 'x')")

    schema = Schema("test", (V1, add_columns("t", [("extra", "TEXT")]), v3))
    conn = open_database(path, schema)
    conn.execute("INSERT INTO t (id, body, extra) VALUES ('a', 'b', 'c')")
    conn.commit()
    assert schema_version(conn) == 3 and calls == [1]
    conn.close()
    for p in path.parent.iterdir():  # the database and its -wal / -shm files
        assert _mode(p) == 0o600, p
    # a second process opening it migrates nothing again
    threads = [threading.Thread(target=lambda: open_database(path, schema).close()) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    with pytest.raises(ConfigurationError, match="newer than this medslm"):
        migrate(connect(path), Schema("test", (V1,)))


def test_an_existing_wider_file_is_narrowed(tmp_path):
    path = tmp_path / "old.sqlite"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    open_database(path, Schema("test", (V1,))).close()
    assert _mode(path) == 0o600


def test_stores_queue_teacher_and_outputs_are_0600(tmp_path):
    from medslm import Note
    from medslm.graphs.builders import triage_rules
    from medslm.graphs.runner import review_batch
    from medslm.routers import ReviewQueue, TeacherStore
    from medslm.settings import Settings

    s = Settings().with_models(guardian="rules")
    out = tmp_path / "out" / "reviews.jsonl"
    rep = review_batch([Note(id="n1", text="Chest pain. BP 80/50.")], out, graph=triage_rules(s), settings=s,
                       progress=False)
    ReviewQueue(tmp_path / "q.sqlite")
    TeacherStore(tmp_path / "t.sqlite")
    for p in (out, rep.audit, rep.store, tmp_path / "q.sqlite", tmp_path / "t.sqlite"):
        assert _mode(p) == 0o600, p


def test_store_note_text_off_keeps_no_note_text(tmp_path):
    from medslm import Note
    from medslm.graphs.builders import triage_rules
    from medslm.graphs.runner import review_batch
    from medslm.settings import Settings

    canary = "Quixfeather presented with chest pain. BP 80/50."
    for keep in (True, False):
        s = Settings(store_note_text=keep).with_models(guardian="rules")
        out = tmp_path / f"keep-{keep}.jsonl"
        rep = review_batch([Note(id="n1", text=canary)], out, graph=triage_rules(s), settings=s, progress=False)
        blobs = out.read_bytes() + Path(rep.store).read_bytes()
        wal = Path(str(rep.store) + "-wal")
        if wal.exists():
            blobs += wal.read_bytes()
        assert (canary.encode() in blobs) is keep
        assert (rep.reviews[0].text == canary) is keep
