"""The results store: one row per (note id, job key) in SQLite, committed note by note.

A rerun of the same job (same settings and graph, hence the same key) skips notes already done and
redoes the failed ones, or those whose text changed. Each review is committed on its own (WAL journal),
so a crash, ``kill -9`` or Ctrl-C loses at most the notes in flight; the primary key makes writing a
note twice impossible.

The file is created 0600 through :mod:`medslm.database` (schema versions and migrations). It holds each
review as JSON: results that quote the note (entity mentions, evidence, summary sentences) and, unless
``store_text=False`` (``Settings.store_note_text``), the note text itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medslm.database import Schema, connect, migrate
from medslm.records import ChartReview, ReviewStatus

_V1 = """
CREATE TABLE IF NOT EXISTS reviews (
    note_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    input_sha256 TEXT,
    status TEXT NOT NULL,
    review TEXT NOT NULL,
    audit TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    updated REAL NOT NULL,
    PRIMARY KEY (note_id, job_key)
)
"""
SCHEMA = Schema("results store", (_V1,))


class ResultStore:
    """SQLite store of reviews keyed by note id + job key (``":memory:"`` for a throw-away one).

    ``store_text=False`` keeps the note text out of the file (the review's ``text`` is dropped).
    """

    def __init__(self, path: str | Path = ":memory:", *, store_text: bool = True) -> None:
        self.path = str(path)
        self.store_text = store_text
        self._db = connect(self.path, check_same_thread=False, autocommit=True)
        self._lock = threading.Lock()
        with self._lock:
            migrate(self._db, SCHEMA)

    def put(self, review: ChartReview, job_key: str, *, input_sha256: str | None = None,
            audit: dict[str, Any] | None = None) -> None:
        """Insert or replace this note's review for this job, committed before returning."""
        if not self.store_text and review.text is not None:
            review = review.model_copy(update={"text": None})
        with self._lock:
            self._db.execute(
                "INSERT INTO reviews (note_id, job_key, input_sha256, status, review, audit, attempts, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(note_id, job_key) DO UPDATE SET "
                "input_sha256=excluded.input_sha256, status=excluded.status, review=excluded.review, "
                "audit=excluded.audit, attempts=reviews.attempts + 1, updated=excluded.updated",
                (review.note_id, job_key, input_sha256, review.status.value, review.model_dump_json(),
                 json.dumps(audit, default=str) if audit is not None else None, time.time()),
            )

    def done(self, job_key: str) -> dict[str, tuple[str, str | None]]:
        """``note_id -> (status, input sha256)`` of every note stored for this job."""
        with self._lock:
            rows = self._db.execute("SELECT note_id, status, input_sha256 FROM reviews WHERE job_key=?", (job_key,))
            return {nid: (st, sha) for nid, st, sha in rows}

    def is_done(self, note_id: str, job_key: str, input_sha256: str | None, known: dict[str, tuple[str, str | None]]) -> bool:
        got = known.get(note_id)
        return got is not None and got[0] != ReviewStatus.FAILED.value and got[1] == input_sha256

    def get(self, note_id: str, job_key: str) -> ChartReview | None:
        with self._lock:
            row = self._db.execute("SELECT review FROM reviews WHERE note_id=? AND job_key=?", (note_id, job_key)).fetchone()
        return ChartReview.model_validate_json(row[0]) if row else None

    def audit(self, note_id: str, job_key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT audit FROM reviews WHERE note_id=? AND job_key=?", (note_id, job_key)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def reviews(self, job_key: str, note_ids: Iterable[str] | None = None) -> list[ChartReview]:
        if note_ids is None:
            with self._lock:
                rows = self._db.execute("SELECT review FROM reviews WHERE job_key=? ORDER BY rowid", (job_key,)).fetchall()
            return [ChartReview.model_validate_json(r[0]) for r in rows]
        return [r for r in (self.get(n, job_key) for n in note_ids) if r is not None]

    def count(self, job_key: str | None = None) -> int:
        with self._lock:
            if job_key is None:
                return int(self._db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM reviews WHERE job_key=?", (job_key,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ResultStore"]
