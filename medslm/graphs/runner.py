"""The batch runner: many notes through one graph, resumable and crash-safe.

``review_batch("notes.jsonl", "reviews.jsonl")`` reads JSONL / CSV / Parquet (or Python objects),
skips notes the results store already holds for this job, reviews the rest one by one (each committed
to the store as soon as it is done), then writes the output and the audit file atomically, in input
order, one line per input record. A bad record or a crashing note fails alone, with its reason.

The job key (store key) is a hash of the settings' ``config_hash`` and the graph's nodes: change a
model or a node and the job starts afresh; rerun the same job and only failed or new notes run.

**Human review is durable.** With an output file, a note whose results go to human review pauses
(LangGraph ``interrupt``) with its graph state in a SQLite checkpointer beside the output
(``<output>.checkpoints.sqlite``, 0600: it holds the note) and is stored as ``needs_review``; the batch
goes on. Once a reviewer resolved every item of that note (``medslm review-queue resolve``), the next run
of the same job (``medslm review`` again, or ``medslm review-queue resume``) resumes its graph with the
decisions: the output file then carries the accepted or corrected results, each with the reviewer's
decision (``AgentResult.human``), and the audit file says who decided. Finished notes leave no checkpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
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
    resumed: int = 0  # paused notes resumed with the reviewers' decisions in this run
    checkpoints: Path | None = None  # the durable checkpointer of paused notes (None: not durable)

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
        resumed = f", {self.resumed} resumed after human review" if self.resumed else ""
        return (
            f"{n} notes ({self.processed} reviewed, {self.skipped} already done{resumed}) in {self.seconds:.1f} s: "
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
    durable: bool | str | Path | None = None,
    resume_only: bool = False,
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
    ``durable``: pause notes for human review in a SQLite checkpointer and resume them once resolved
    (default: on for the local engine with an output file and a medslm graph; a path names the file).
    ``resume_only``: only resume paused notes whose review items are all resolved; review no new note.
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
    checkpoints = _checkpoint_path(durable, out_path, engine, g)
    saver = None
    if checkpoints is not None:
        import dataclasses

        saver = sqlite_checkpointer(checkpoints)
        g = g.medslm_pipeline.compile(checkpointer=saver)
        context = dataclasses.replace(context, interactive=True)
    resumed = 0
    try:
        known = db.done(key)
        notes = [(i, r) for i, r in records if isinstance(r, Note)]
        paused = [(i, n) for i, n in notes if saver is not None and known.get(n.id) == (
            ReviewStatus.NEEDS_REVIEW.value, n.sha256)]
        todo = [] if resume_only else [(i, n) for i, n in notes if not db.is_done(n.id, key, n.sha256, known)]
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

        def run_durable(n: Note) -> ChartReview:
            assert saver is not None
            tid = thread_id(key, n)
            saver.delete_thread(tid)  # a fresh run: nothing of an earlier attempt carries over
            review = run_note(g, n, context, {"configurable": {"thread_id": tid}}, key, durability="exit")
            if review.status != ReviewStatus.NEEDS_REVIEW or not review.review_items:
                saver.delete_thread(tid)  # finished: no checkpoint (it holds the note) is kept
                return review
            # items a reviewer already resolved (a rerun after a crash): resume at once
            again = resume_note(g, saver, context.get_queue(), context, n, key)
            return again if again is not None else review

        queue = context.get_queue() if paused else None
        for i, n in paused:  # paused for review; resume those whose items are all resolved
            review = resume_note(g, saver, queue, context, n, key)
            if review is not None:
                resumed += 1
                record(i, review)
        run_one = run_durable if saver is not None else (lambda n: run_note(g, n, context, None, key))
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
                        return run_one(n)

                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    futures = {pool.submit(in_flight, n): i for i, n in todo}
                    for fut in as_completed(futures):
                        record(futures[fut], fut.result())
            else:
                for i, n in todo:
                    record(i, run_one(n))
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
                             time.perf_counter() - t0, latencies, resumed=resumed, checkpoints=checkpoints)
    finally:
        if own_store:
            db.close()
        if saver is not None:
            saver.conn.close()
    return report


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    from medslm.graphs.io import atomic_file

    with atomic_file(path) as f:
        for row in rows:
            f.write((json.dumps(row, default=str) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------- durable human review
def thread_id(key: str, note: Note) -> str:
    """The checkpointer thread of a note in a job: job key, note id and content hash."""
    return f"{key}:{note.sha256[:16]}:{note.id}"


def sqlite_checkpointer(path: str | Path) -> Any:
    """LangGraph's ``SqliteSaver`` on a private (0600, WAL) SQLite file."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from medslm.database import connect

    conn = connect(path, check_same_thread=False, autocommit=True)
    saver = SqliteSaver(conn, serde=checkpoint_serde())
    saver.setup()
    return saver


def checkpoint_serde() -> Any:
    """LangGraph's serializer allowed to rebuild medslm's records (and every registered agent's result
    type) from a checkpoint, and nothing else beyond LangGraph's safe types."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from medslm import records, registry

    allowed = {("medslm.records", n) for n in records.__all__}
    for spec in registry.specs():
        try:
            t = spec.result_type
        except Exception:  # a plug-in whose output type does not import: stays a dict
            continue
        allowed.add((t.__module__, t.__name__))
        out = spec.output_type
        if isinstance(out, type):
            allowed.add((out.__module__, out.__qualname__))
    return JsonPlusSerializer(allowed_msgpack_modules=sorted(allowed))


def _checkpoint_path(durable: bool | str | Path | None, out_path: Path | None, engine: str, graph: Any) -> Path | None:
    if durable is False:
        return None
    if getattr(graph, "medslm_pipeline", None) is None or engine != "local":
        if durable not in (None, True):
            from medslm.errors import ConfigurationError

            raise ConfigurationError(
                "durable human review needs the local engine and a medslm graph (a Pipeline or a builder of "
                "one); pass durable=False (review items then go to the queue without pausing the note)")
        return None
    if isinstance(durable, str | Path):
        return Path(durable)
    return Path(str(out_path) + ".checkpoints.sqlite") if out_path is not None else None


def resume_note(graph: Any, saver: Any, queue: Any, context: ReviewContext, note: Note, key: str) -> ChartReview | None:
    """The review of a paused note resumed with its reviewers' decisions; None while any item is pending
    (or when the note is not paused)."""
    from medslm.graphs.builders import finished_review
    from medslm.routers.resume import resume_thread

    tid = thread_id(key, note)
    t0 = time.perf_counter()
    try:
        out = resume_thread(graph, queue, tid, context=context, durability="exit")
    except Exception as exc:  # one note's resume fails alone
        from medslm.graphs.builders import failed_review
        from medslm.graphs.nodes import failure_reason

        log.warning("resuming note %s failed: %s", note.id, type(exc).__name__)
        return failed_review(note.id, f"resume: {failure_reason(exc)}", config_hash=key, sha256=note.sha256)
    if out is None:
        return None
    review = finished_review(out, context, config_hash=key, latency_ms=(time.perf_counter() - t0) * 1000)
    if not out.get("__interrupt__"):
        saver.delete_thread(tid)
    return review


async def areview_batch(inputs: Any, output: Any = None, **kwargs: Any) -> BatchReport:
    """:func:`review_batch` without blocking the event loop (runs in a worker thread)."""
    return await asyncio.to_thread(review_batch, inputs, output, **kwargs)


__all__ = ["ENGINES", "BatchReport", "areview_batch", "failure_kind", "job_key", "load_graph", "resume_note",
           "review_batch", "sqlite_checkpointer", "thread_id"]
