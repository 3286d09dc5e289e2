"""A durable human review queue (SQLite by default).

Low-confidence results, results the LLM could not settle, failed escalations and guardian blocks become
:class:`ReviewItem` rows. A reviewer lists them, looks at one, and resolves it (accept, correct or reject).
An item is keyed by the job, the note's id and content (sha256), the agent, the reason kind and the
payload under review (the result's output and evidence): adding it again is idempotent, so a node that
is re-run on resume, or a batch that is re-run after a crash, never raises an item twice, while another
patient under a reused note id, a rerun with changed text or a different result is a new item (it is
never answered by someone else's resolved item).

The file is created 0600 (:mod:`medslm.database`, schema versions and migrations) and holds PHI: each
item keeps the agent's result (mentions, evidence, summary sentences quote the note).

When the item came from a LangGraph ``interrupt`` the row keeps the thread id (and interrupt id), and
:func:`medslm.routers.resume.resume_item` resumes that note's graph with the reviewer's decision; the
batch itself never waits for a reviewer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medslm.database import Schema, add_columns, open_database
from medslm.errors import ConfigurationError, MedslmError
from medslm.records import AgentResult


class ItemStatus(StrEnum):
    PENDING = "pending"
    RESOLVED = "resolved"


class Decision(StrEnum):
    ACCEPT = "accept"  # the result stands as it is
    CORRECT = "correct"  # the reviewer's correction replaces the output
    REJECT = "reject"  # the result is wrong and nothing replaces it


class ReviewItemNotFound(MedslmError, KeyError):
    """No review item has this id."""

    def __str__(self) -> str:
        return str(self.args[0])


class ReviewItem(BaseModel):
    """One item waiting for (or resolved by) a human reviewer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="stable id, 'rv-' + 16 hex characters")
    note_id: str
    agent: str = Field(description="agent whose result needs review ('guardian' for blocks)")
    reason: str = Field(description="why: low confidence, LLM unsure, escalation failed, guardian block…")
    confidence: float | None = None
    result: dict[str, Any] | None = Field(default=None, description="the AgentResult as JSON (may hold PHI)")
    status: ItemStatus = ItemStatus.PENDING
    decision: Decision | None = None
    correction: Any = Field(default=None, description="the reviewer's output when decision='correct'")
    reviewer: str | None = None
    comment: str | None = None
    thread_id: str | None = Field(default=None, description="LangGraph thread to resume on resolve")
    interrupt_id: str | None = None
    created_at: float = 0.0
    resolved_at: float | None = None
    resumed_at: float | None = Field(default=None, description="when the graph was resumed with the decision")
    job_key: str | None = Field(default=None, description="the job (settings and graph) that raised it")
    note_sha256: str | None = Field(default=None, description="hash of the note text the result is about")
    payload_sha256: str | None = Field(default=None, description="hash of the output and evidence under review")

    def resume_value(self) -> dict[str, Any]:
        """What the graph's ``interrupt()`` call returns on resume."""
        d = self.decision.value if self.decision else None
        return {"item_id": self.id, "decision": d, "action": d,
                "correction": self.correction, "reviewer": self.reviewer, "comment": self.comment}


_COLUMNS = ("id", "note_id", "agent", "reason", "confidence", "result", "status", "decision", "correction",
            "reviewer", "comment", "thread_id", "interrupt_id", "created_at", "resolved_at", "resumed_at",
            "job_key", "note_sha256", "payload_sha256")

_V1 = (
    "CREATE TABLE IF NOT EXISTS review_items (id TEXT PRIMARY KEY, note_id TEXT NOT NULL, "
    "agent TEXT NOT NULL, reason TEXT NOT NULL, confidence REAL, result TEXT, status TEXT NOT NULL, "
    "decision TEXT, correction TEXT, reviewer TEXT, comment TEXT, thread_id TEXT, interrupt_id TEXT, "
    "created_at REAL NOT NULL, resolved_at REAL, resumed_at REAL);"
    "CREATE INDEX IF NOT EXISTS review_items_status ON review_items(status, created_at)"
)
#: v2: items keyed by job, note content and payload (v1 keyed by note id, agent and reason kind only)
SCHEMA = Schema("review queue", (
    _V1,
    add_columns("review_items", [("job_key", "TEXT"), ("note_sha256", "TEXT"), ("payload_sha256", "TEXT")]),
))


def default_queue_path(settings: Any = None) -> Path:
    """``$MEDSLM_REVIEW_QUEUE``, else ``<cache_dir>/review_queue.sqlite``."""
    import os

    env = os.environ.get("MEDSLM_REVIEW_QUEUE")
    if env:
        return Path(env).expanduser()
    if settings is None:
        from medslm.settings import default_cache_dir

        return default_cache_dir() / "review_queue.sqlite"
    return Path(settings.cache_dir) / "review_queue.sqlite"


def payload_hash(result: AgentResult[Any] | dict[str, Any] | None) -> str:
    """Hash of what a reviewer judges: the result's output and evidence (not its latency or route)."""
    if result is None:
        return "none"
    data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    if isinstance(data, dict) and "output" in data:
        data = {"agent": data.get("agent"), "output": data.get("output"), "evidence": data.get("evidence")}
    blob = json.dumps(data, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def item_id_for(note_id: str, agent: str, reason_kind: str, *, job_key: str | None = None,
                note_sha256: str | None = None, payload_sha256: str | None = None) -> str:
    """``rv-`` + 16 hex characters of the hash of job, note id and content, agent, reason kind, payload."""
    parts = (job_key or "", note_id, note_sha256 or "", agent, reason_kind, payload_sha256 or "")
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return "rv-" + h[:16]


class ReviewQueue:
    """Durable review queue in one SQLite file (WAL, mode 0600; safe across threads and processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        open_database(self.path, SCHEMA).close()

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = open_database(self.path, SCHEMA)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------ writing
    def add(
        self,
        note_id: str,
        agent: str,
        result: AgentResult[Any] | dict[str, Any] | None,
        reason: str,
        *,
        reason_kind: str | None = None,
        thread_id: str | None = None,
        interrupt_id: str | None = None,
        job_key: str | None = None,
        note_sha256: str | None = None,
    ) -> str:
        """Queue an item and return its id; the same job, note content, agent, reason kind and payload
        return the existing id (resolved or not), anything else is a new item.

        ``reason_kind`` groups reasons for idempotence (default: the text before the first ':' of
        ``reason``, e.g. 'low_confidence: 0.41 < 0.60' -> 'low_confidence'). ``job_key`` and
        ``note_sha256`` (the note text's hash, :attr:`medslm.Note.sha256`) keep two patients under one id
        or two jobs apart; pass them whenever they are known.
        """
        if not reason:
            raise ConfigurationError("a review item needs a reason (e.g. 'low_confidence: 0.41 < 0.60')")
        kind = reason_kind or reason.split(":", 1)[0].strip()
        payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        psha = payload_hash(payload)
        iid = item_id_for(str(note_id), agent, kind, job_key=job_key, note_sha256=note_sha256, payload_sha256=psha)
        conf = payload.get("confidence") if isinstance(payload, dict) else None
        with self._lock, self._conn() as c:
            c.execute(
                "INSERT OR IGNORE INTO review_items (id, note_id, agent, reason, confidence, result, status, "
                "thread_id, interrupt_id, created_at, job_key, note_sha256, payload_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iid, str(note_id), agent, reason, conf, json.dumps(payload) if payload is not None else None,
                 ItemStatus.PENDING.value, thread_id, interrupt_id, time.time(), job_key, note_sha256, psha),
            )
            if thread_id or interrupt_id:  # a resumed node re-adds with the ids it now knows
                c.execute(
                    "UPDATE review_items SET thread_id = COALESCE(thread_id, ?), "
                    "interrupt_id = COALESCE(interrupt_id, ?) WHERE id = ?",
                    (thread_id, interrupt_id, iid),
                )
        return iid

    def resolve(
        self,
        item_id: str,
        decision: Decision | str,
        *,
        correction: Any = None,
        reviewer: str | None = None,
        comment: str | None = None,
    ) -> ReviewItem:
        """Record the reviewer's decision. Resolving twice with another decision is refused."""
        d = Decision(decision) if not isinstance(decision, Decision) else decision
        if d is Decision.CORRECT and correction is None:
            raise ConfigurationError(f"resolving {item_id} as 'correct' needs the corrected output (correction=...)")
        item = self.show(item_id)
        if item.status is ItemStatus.RESOLVED:
            if item.decision == d and item.correction == correction:
                return item
            raise ConfigurationError(
                f"review item {item_id} is already resolved as {item.decision}; it cannot be resolved again"
            )
        with self._lock, self._conn() as c:
            c.execute(
                "UPDATE review_items SET status = ?, decision = ?, correction = ?, reviewer = ?, comment = ?, "
                "resolved_at = ? WHERE id = ? AND status = ?",
                (ItemStatus.RESOLVED.value, d.value, json.dumps(correction) if correction is not None else None,
                 reviewer, comment, time.time(), item_id, ItemStatus.PENDING.value),
            )
        return self.show(item_id)

    def mark_resumed(self, item_id: str) -> None:
        with self._lock, self._conn() as c:
            c.execute("UPDATE review_items SET resumed_at = ? WHERE id = ?", (time.time(), item_id))

    # ------------------------------------------------------------------ reading
    def show(self, item_id: str) -> ReviewItem:
        with self._conn() as c:
            row = c.execute(f"SELECT {', '.join(_COLUMNS)} FROM review_items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise ReviewItemNotFound(
                f"no review item {item_id!r} in {self.path}; list the ids with `medslm review-queue list`"
            )
        return _item(row)

    def list(
        self, status: ItemStatus | str | None = ItemStatus.PENDING, *, note_id: str | None = None,
        agent: str | None = None, limit: int | None = None,
    ) -> list[ReviewItem]:
        q = f"SELECT {', '.join(_COLUMNS)} FROM review_items WHERE 1=1"
        args: list[Any] = []
        if status is not None:
            q += " AND status = ?"
            args.append(ItemStatus(status).value)
        if note_id is not None:
            q += " AND note_id = ?"
            args.append(note_id)
        if agent is not None:
            q += " AND agent = ?"
            args.append(agent)
        q += " ORDER BY created_at, id"
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        with self._conn() as c:
            return [_item(r) for r in c.execute(q, args).fetchall()]

    def pending_resumes(self) -> list[ReviewItem]:
        """Resolved items with a thread whose graph has not been resumed yet."""
        with self._conn() as c:
            rows = c.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM review_items WHERE status = ? AND thread_id IS NOT NULL "
                "AND resumed_at IS NULL ORDER BY resolved_at", (ItemStatus.RESOLVED.value,)
            ).fetchall()
        return [_item(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._conn() as c:
            rows = c.execute("SELECT status, COUNT(*) FROM review_items GROUP BY status").fetchall()
        return {s.value: 0 for s in ItemStatus} | {k: int(v) for k, v in rows}

    def __len__(self) -> int:
        return sum(self.counts().values())


def _item(row: tuple[Any, ...]) -> ReviewItem:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["result"] = json.loads(d["result"]) if d["result"] else None
    d["correction"] = json.loads(d["correction"]) if d["correction"] else None
    return ReviewItem(**d)


__all__ = [
    "Decision",
    "ItemStatus",
    "ReviewItem",
    "ReviewItemNotFound",
    "ReviewQueue",
    "default_queue_path",
    "item_id_for",
    "payload_hash",
]
