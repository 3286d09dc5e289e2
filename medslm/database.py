"""One SQLite base for medslm's stores: file modes, connections, schema versions and migrations.

The results store (:mod:`medslm.graphs.store`), the review queue (:mod:`medslm.routers.review_queue`)
and the teacher store (:mod:`medslm.routers.escalation`) hold PHI at rest, so every database file is
created 0600 (and an existing one is narrowed to 0600); SQLite gives its ``-wal`` / ``-shm`` files the
mode of the database file.

A :class:`Schema` is a name and an ordered list of migrations; migration ``i`` takes the file from
version ``i`` to ``i + 1`` and the version lives in ``PRAGMA user_version``. Opening a file applies the
missing migrations in one ``BEGIN IMMEDIATE`` transaction (two processes opening an old file at once
migrate it once); a file written by a newer medslm (a higher version) is refused rather than misread.
Migration 1 of each store is its original ``CREATE TABLE IF NOT EXISTS``, so files made before
versioning (version 0 with the tables present) migrate like new ones.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medslm.errors import ConfigurationError

Migration = str | Callable[[sqlite3.Connection], None]

#: file mode of every store medslm creates (PHI at rest)
PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class Schema:
    """A store's tables as a list of migrations; ``version`` is how many there are."""

    name: str
    migrations: tuple[Migration, ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


def private_file(path: str | Path) -> Path:
    """Create ``path`` (and its folder) if missing with mode 0600; narrow an existing file to 0600."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE)
        os.close(fd)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the store {p} ({type(exc).__name__}); check the folder") from None
    try:
        if (p.stat().st_mode & 0o777) != PRIVATE_MODE:
            os.chmod(p, PRIVATE_MODE)
    except PermissionError:  # another user's file: leave it, SQLite will tell if it cannot write
        pass
    return p


def connect(path: str | Path, *, check_same_thread: bool = True, timeout: float = 30.0,
            autocommit: bool = False) -> sqlite3.Connection:
    """A connection to a private (0600) database file in WAL mode; ``":memory:"`` stays in memory."""
    memory = str(path) == ":memory:"
    if not memory:
        private_file(path)
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=check_same_thread,
                           isolation_level=None if autocommit else "DEFERRED")
    if not memory:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, schema: Schema) -> int:
    """Bring the database to ``schema.version``; returns the version it had before."""
    before = schema_version(conn)
    if before > schema.version:
        raise ConfigurationError(
            f"the {schema.name} database is at schema version {before}, newer than this medslm knows "
            f"({schema.version}); upgrade medslm or point it at another file"
        )
    if before == schema.version:
        return before
    saved = conn.isolation_level
    conn.isolation_level = None  # explicit transaction below
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)  # another process may have migrated while we waited
            for i in range(current, schema.version):
                step = schema.migrations[i]
                if callable(step):
                    step(conn)
                else:
                    for stmt in _statements(step):
                        conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {int(schema.version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.isolation_level = saved
    return before


def _statements(script: str) -> Sequence[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def add_columns(table: str, columns: Sequence[tuple[str, str]]) -> Callable[[sqlite3.Connection], None]:
    """A migration adding columns that are not there yet (``[("job_key", "TEXT"), …]``)."""

    def step(conn: sqlite3.Connection) -> None:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    return step


def open_database(path: str | Path, schema: Schema, **kwargs: object) -> sqlite3.Connection:
    """:func:`connect` then :func:`migrate`."""
    conn = connect(path, **kwargs)  # type: ignore[arg-type]
    try:
        migrate(conn, schema)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(path: str | Path, schema: Schema | None = None) -> Iterator[sqlite3.Connection]:
    """A short-lived connection that commits on success (a store used from several processes)."""
    conn = open_database(path, schema) if schema is not None else connect(path)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


__all__ = ["PRIVATE_MODE", "Schema", "add_columns", "connect", "migrate", "open_database", "private_file",
           "schema_version", "transaction"]
