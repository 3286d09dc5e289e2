"""The batch runner: many notes through one graph, resumable and crash-safe.

``review_batch("notes.jsonl", "reviews.jsonl")`` reads JSONL / CSV / Parquet (or Python objects),
skips notes the results store already holds for this job, reviews the rest one by one (each committed
to the store as soon as it is done), then writes the output and the audit file atomically, in input
order, one line per input record. A bad record or a crashing note fails alone, with its reason.

The job key (store key) is a hash of the settings' ``config_hash`` and the graph's nodes: change a
model or a node and the job starts afresh; rerun the same job and only failed or new notes run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.errors import UnknownNameError
from medslm.graphs.audit import audit_record
from medslm.graphs.builders import DEFAULT_GRAPH, load_graph, run_note
from medslm.graphs.context import ReviewContext
from medslm.graphs.io import InputFailure, Record, from_objects, read_records, write_reviews
from medslm.graphs.store import ResultStore
from medslm.records import ChartReview, Note, ReviewStatus
from medslm.settings import Settings

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


def job_key(graph: Any, settings: Settings) -> str:
    """Settings hash + the graph's node contracts: what decides whether a stored review is reusable."""
    pipe = getattr(graph, "medslm_pipeline", None)
    shape = pipe.describe() if pipe is not None else " ".join(sorted(getattr(graph, "nodes", {}) or []))
    name = getattr(graph, "name", "graph")
    return hashlib.sha256(f"{settings.config_hash()}|{name}|{shape}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- report
@dataclass(frozen=True)
class BatchReport:
    """What a batch did: every review in input order, where files went, and its figures."""

    reviews: list[ChartReview]
    job_key: str
    output: Path | None
    audit: Path | None
    store: str | None
    processed: int  # notes reviewed in this run
    skipped: int  # notes already done in the store
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(r.status.value for r in self.reviews))

    @property
    def escalated(self) -> int:
        return sum(1 for r in self.reviews if r.escalated)

    @property
    def failures(self) -> dict[str, int]:
        return dict(Counter(failure_kind(r.reason) for r in self.reviews if r.status == ReviewStatus.FAILED))

    @property
    def notes_per_min(self) -> float:
        return 60.0 * self.processed / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]

    def summary(self) -> str:
        n = len(self.reviews)
        share = self.escalated / n if n else 0.0
        fails = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return (
            f"{n} notes ({self.processed} reviewed, {self.skipped} already done) in {self.seconds:.1f} s: "
            f"{self.notes_per_min / 60:.2f} notes/s ({self.notes_per_min:.1f} notes/min), p50 {self.percentile(0.5):.0f} ms, p95 {self.percentile(0.95):.0f} ms; "
            f"{counts}; escalated {self.escalated} ({share:.1%}); failures by reason: {fails}"
        )


def failure_kind(reason: str | None) -> str:
    """The kind of a failure, without its message: ``"empty_note"``, ``"ner: ModelError"``, ``"graph: RuntimeError"``."""
    import re

    head, _, rest = (reason or "unknown").partition(":")
    m = re.match(r"\s*([A-Za-z_][\w.]*)(?=:|\s\(|$)", rest)
    return f"{head}: {m[1]}" if m else head


# --------------------------------------------------------------------------- progress
class _Progress:
    """A rich progress bar with live counts; silent when stderr is not a terminal."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.counts: Counter[str] = Counter()
        self.reviewed = 0
        self._bar: Any = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]review"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                console=self.console, transient=False,
            )
            self._task = self._bar.add_task("review", total=total, rate="", counts="")
            self._bar.start()
            self._t0 = time.perf_counter()

    #: live counts, always shown in this order (a zero is information too)
    SHOWN = (("escalated", "escalated"), ("needs_review", "review"), ("blocked", "blocked"), ("failed", "failed"))

    def advance(self, review: ChartReview, skipped: bool = False) -> None:
        if review.escalated:
            self.counts["escalated"] += 1
        if review.status != ReviewStatus.OK:
            self.counts[review.status.value] += 1
        if not skipped:
            self.reviewed += 1
        if self._bar is not None:
            # the rate counts notes reviewed in this run (skipped ones cost nothing)
            rate = self.reviewed / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=1, rate=f"{rate * 60:.0f} notes/min", counts=self.counts_text())

    def counts_text(self) -> str:
        return " · ".join(f"{label} {self.counts[key]}" for key, label in self.SHOWN)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- the batch
def review_batch(
    inputs: str | Path | Iterable[Any],
    output: str | Path | None = None,
    *,
    graph: Any = None,
    settings: Settings | None = None,
    context: ReviewContext | None = None,
    store: str | Path | ResultStore | None = None,
    format: str | None = None,
    output_format: str | None = None,
    id_col: str = "id",
    text_col: str = "text",
    engine: str = "local",
    limit: int | None = None,
    progress: bool | None = None,
    audit: bool | str | Path = True,
    concurrency: int = 1,
    ray_options: dict[str, Any] | None = None,
    on_review: Callable[[ChartReview], None] | None = None,
) -> BatchReport:
    """Review every note of ``inputs`` (a file, or Notes / dicts / strings) with ``graph``.

    ``store``: the SQLite results store (default: ``<output>.store.sqlite`` beside the output, or an
    in-memory one without output). ``audit``: True writes ``<output>.audit.jsonl``; a path writes
    there; False writes none. ``engine="ray"`` runs the same graph with Ray Data (``graph`` must then
    be a ``"module:function"`` spec or a builder function importable by the workers).
    ``concurrency`` > 1 keeps that many notes in flight (threads): remote models see their requests
    overlap, and local models (the transformers causal LM, the encoder specialists) gather the calls of
    the notes in flight into one batch within a bounded wait (:mod:`medslm.models.batching`). Each
    note's agents still run one at a time; the reviews are the same as with ``concurrency=1``.
    """
    if engine not in ENGINES:
        raise UnknownNameError("engine", engine, ENGINES)
    t0 = time.perf_counter()
    graph_spec = graph
    g = load_graph(graph, settings)
    settings = settings or (context.settings if context is not None else None) or getattr(g, "medslm_settings", None) \
        or Settings()
    context = context or ReviewContext(settings=settings)
    key = job_key(g, settings)
    if context.job_key != key:  # review items of this job are keyed by it (the caller's context is left as is)
        import dataclasses

        context = dataclasses.replace(context, job_key=key)
    out_path = Path(output) if output is not None else None

    if isinstance(inputs, str | Path):
        records: list[Record] = list(read_records(inputs, format, id_col=id_col, text_col=text_col, limit=limit))
    else:
        from medslm.graphs.io import dedupe

        records = list(dedupe(from_objects(inputs, id_col=id_col, text_col=text_col), limit))

    own_store = not isinstance(store, ResultStore)
    if isinstance(store, ResultStore):
        db = store
    else:
        path = store if store is not None else (str(out_path) + ".store.sqlite" if out_path is not None else ":memory:")
        db = ResultStore(path, store_text=settings.store_note_text)
    try:
        known = db.done(key)
        notes = [(i, r) for i, r in records if isinstance(r, Note)]
        todo = [(i, n) for i, n in notes if not db.is_done(n.id, key, n.sha256, known)]
        bar = _Progress(len(records), progress)
        for _, r in records:
            if isinstance(r, InputFailure):
                bar.advance(r.review(key))
        for _, n in notes:
            if known.get(n.id) and db.is_done(n.id, key, n.sha256, known):
                bar.advance(ChartReview(note_id=n.id, status=ReviewStatus(known[n.id][0])), skipped=True)
        latencies: list[float] = []
        kg_holder = context

        def record(index: int, review: ChartReview, audit_rec: dict[str, Any] | None = None) -> None:
            rec = {**audit_rec, "input_index": index} if audit_rec else audit_record(review, job_key=key, settings_hash=settings.config_hash(),
                                            graph=getattr(g, "name", None), kg=kg_holder.kg, input_index=index)
            db.put(review, key, input_sha256=review.note_sha256, audit=rec)
            latencies.append(review.latency_ms)
            bar.advance(review)
            if on_review is not None:
                on_review(review)

        try:
            if engine == "ray":
                from medslm.graphs.ray_engine import run_ray

                spec = graph_spec if graph_spec is not None else DEFAULT_GRAPH
                index_of = {n.id: i for i, n in todo}
                for review, audit_rec in run_ray([n for _, n in todo], spec, settings, key, **(ray_options or {})):
                    record(index_of.get(review.note_id, -1), review, audit_rec)
            elif concurrency > 1:
                from concurrent.futures import ThreadPoolExecutor, as_completed

                from medslm.models.batching import note_in_flight

                def in_flight(n: Note) -> ChartReview:
                    with note_in_flight():  # local models gather the calls of the notes in flight
                        return run_note(g, n, context, None, key)

                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    futures = {pool.submit(in_flight, n): i for i, n in todo}
                    for fut in as_completed(futures):
                        record(futures[fut], fut.result())
            else:
                for i, n in todo:
                    record(i, run_note(g, n, context, None, key))
        finally:
            bar.close()

        reviews = []
        audits = []
        for i, r in records:
            if isinstance(r, InputFailure):
                rv = r.review(key)
                reviews.append(rv)
                audits.append({**audit_record(rv, job_key=key, settings_hash=settings.config_hash(), input_index=i),
                               "input_failure": r.reason_code})
            else:
                stored = db.get(r.id, key)
                if stored is None:  # cannot happen unless the store was changed under us
                    stored = ChartReview(note_id=r.id, status=ReviewStatus.FAILED, reason="lost: not in the store")
                reviews.append(stored)
                audits.append(db.audit(r.id, key) or {})
        audit_path = None
        if out_path is not None:
            write_reviews(reviews, out_path, output_format)
            if audit:
                audit_path = Path(audit) if isinstance(audit, str | Path) else Path(str(out_path) + ".audit.jsonl")
                _write_jsonl(audits, audit_path)
        elif isinstance(audit, str | Path) and not isinstance(audit, bool):
            audit_path = Path(audit)
            _write_jsonl(audits, audit_path)
        report = BatchReport(reviews, key, out_path, audit_path, db.path, len(todo), len(notes) - len(todo),
                             time.perf_counter() - t0, latencies)
    finally:
        if own_store:
            db.close()
    return report


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def areview_batch(inputs: Any, output: Any = None, **kwargs: Any) -> BatchReport:
    """:func:`review_batch` without blocking the event loop (runs in a worker thread)."""
    return await asyncio.to_thread(review_batch, inputs, output, **kwargs)


__all__ = ["ENGINES", "BatchReport", "areview_batch", "failure_kind", "job_key", "load_graph", "review_batch"]
