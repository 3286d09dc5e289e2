"""Reviews as tidy pandas frames for notebooks: one row per note, per entity, per code, per summary
sentence, per medication.

>>> reviews = medslm.read_reviews("reviews.jsonl")      # JSONL, CSV or Parquet written by medslm review
>>> ents = reviews.to_pandas("entities")                  # note_id, start, end, text, type, assertion, ...
>>> ents.groupby(["type", "assertion"]).size()

Each agent's rows come from its renderer in :data:`FRAME_RENDERERS` (agent name -> table and renderer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from medslm.errors import ConfigurationError, ExportError, UnknownNameError
from medslm.export.results import agent_results, medication_attrs
from medslm.records import AgentResult, ChartReview, CodeAssignment, Entity

FrameRenderer = Callable[[AgentResult[Any], ChartReview], Iterable[dict[str, Any]]]


def entity_rows(result: AgentResult[list[Entity]], review: ChartReview) -> Iterator[dict[str, Any]]:
    for i, e in enumerate(result.output):
        ids = [c.id for c in e.concepts]
        yield {"entity": i, "start": e.start, "end": e.end, "text": e.text, "type": e.type.value,
               "assertion": e.assertion.value, "confidence": e.confidence, "source": e.source,
               "icd10cm": next((x.split(":", 1)[1] for x in ids if x.startswith("ICD10CM:")), None),
               "hpo": next((x for x in ids if x.startswith("HP:")), None), "concepts": ids}


def code_rows(result: AgentResult[list[CodeAssignment]], review: ChartReview) -> Iterator[dict[str, Any]]:
    for rank, c in enumerate(result.output, 1):
        yield {"rank": rank, "code": c.code, "description": c.description, "billable": c.billable,
               "confidence": c.confidence, "score": c.score, "n_evidence": len(c.evidence),
               "evidence_start": c.evidence[0].start if c.evidence else None,
               "evidence_end": c.evidence[0].end if c.evidence else None}


def triage_rows(result: AgentResult[Any], review: ChartReview) -> Iterator[dict[str, Any]]:
    t = result.output
    yield {"level": t.level, "scale": t.scale, "confidence": result.confidence,
           "route": result.route.value if result.route else None,
           "red_flags": [f.name for f in t.red_flags],
           **{f"p{k}": t.probabilities.get(k) for k in range(1, 6)}}


def summary_rows(result: AgentResult[Any], review: ChartReview) -> Iterator[dict[str, Any]]:
    for section in result.output.sections:
        for i, s in enumerate(section.sentences):
            yield {"section": section.name, "sentence": i, "text": s.text, "supported": s.supported,
                   "n_support": len(s.support), "issues": list(s.issues)}


def medication_rows(result: AgentResult[Any], review: ChartReview) -> Iterator[dict[str, Any]]:
    for i, item in enumerate(result.output):
        m = medication_attrs(item)
        yield {"medication": i, **{k: v for k, v in m.items() if k != "concepts"},
               "assertion": m["assertion"].value, "concepts": [c.id for c in m["concepts"]]}


#: agent name -> (table name, renderer of one result into rows of that table)
FRAME_RENDERERS: dict[str, tuple[str, FrameRenderer]] = {
    "ner": ("entities", entity_rows),
    "icd": ("codes", code_rows),
    "triage": ("triage", triage_rows),
    "summarize": ("summary", summary_rows),
    "medication": ("medications", medication_rows),
}


def note_row(review: ChartReview) -> dict[str, Any]:
    """One row per note: status, counts, and each agent's confidence and route."""
    results = agent_results(review)
    row: dict[str, Any] = {
        "note_id": review.note_id, "status": review.status.value, "reason": review.reason,
        "n_entities": len(review.entities.output) if review.entities is not None else None,
        "n_codes": len(review.codes.output) if review.codes is not None else None,
        "codes": [c.code for c in review.codes.output] if review.codes is not None else None,
        "triage_level": review.triage.output.level if review.triage is not None else None,
        "escalated": list(review.escalated), "review_items": len(review.review_items),
        "issues": len(review.issues), "latency_ms": review.latency_ms, "config_hash": review.config_hash,
    }
    for agent, res in results.items():
        row[f"{agent}_confidence"] = res.confidence
        row[f"{agent}_route"] = res.route.value if res.route is not None else None
    return row


class Reviews(Sequence[ChartReview]):
    """A list of chart reviews with tidy-frame views. ``medslm.read_reviews(path)`` makes one from a file."""

    def __init__(self, reviews: Iterable[ChartReview]) -> None:
        self._items = list(reviews)

    @overload
    def __getitem__(self, i: int) -> ChartReview: ...
    @overload
    def __getitem__(self, i: slice) -> Reviews: ...
    def __getitem__(self, i: int | slice) -> ChartReview | Reviews:
        return Reviews(self._items[i]) if isinstance(i, slice) else self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        from collections import Counter

        counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(r.status.value for r in self._items).items()))
        return f"Reviews({len(self)} notes: {counts or 'none'})"

    @property
    def tables(self) -> list[str]:
        return ["notes", *dict.fromkeys(t for t, _ in FRAME_RENDERERS.values())]

    def rows(self, table: str = "notes") -> list[dict[str, Any]]:
        """The rows of one table as dicts (every row starts with ``note_id``)."""
        if table == "notes":
            return [note_row(r) for r in self._items]
        agents = [a for a, (t, _) in FRAME_RENDERERS.items() if t == table]
        if not agents:
            raise UnknownNameError("table", table, self.tables)
        out: list[dict[str, Any]] = []
        for r in self._items:
            results = agent_results(r)
            for agent in agents:
                if agent in results:
                    out.extend({"note_id": r.note_id, **row} for row in FRAME_RENDERERS[agent][1](results[agent], r))
        return out

    def to_pandas(self, table: str = "notes") -> Any:
        """A tidy ``pandas.DataFrame``: ``"notes"`` (one row per note), ``"entities"``, ``"codes"``,
        ``"triage"``, ``"summary"`` (one row per sentence) or ``"medications"``."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a core dependency
            from medslm.errors import MissingExtraError

            raise MissingExtraError(package="pandas", extra="export", feature="DataFrames of reviews") from exc
        rows = self.rows(table)
        if rows:
            return pd.DataFrame(rows)
        return pd.DataFrame(columns=["note_id"])

    def frames(self) -> dict[str, Any]:
        """Every table as a DataFrame, by table name."""
        return {t: self.to_pandas(t) for t in self.tables}


def read_reviews(path: str | Path) -> Reviews:
    """Reviews from a file ``medslm review`` wrote: JSONL (one review per line), or CSV / Parquet (the
    ``review_json`` column). A line that is not a review raises :class:`medslm.errors.ExportError` naming it."""
    from medslm.graphs.io import detect_format

    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"reviews file {str(path)!r} does not exist")
    fmt = detect_format(path)
    if fmt == "jsonl":
        raw: Iterable[tuple[int, str]] = ((n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                                          if line.strip())
    else:
        raw = enumerate(_review_json_column(path, fmt), 1)
    out = []
    for n, text in raw:
        try:
            out.append(ChartReview.model_validate_json(text))
        except ValueError as exc:
            kind = "not JSON" if "json_invalid" in str(exc) else "not a medslm review"
            raise ExportError(f"{path.name} record {n}: {kind} ({type(exc).__name__}); "
                              "expected the output of `medslm review`") from None
    return Reviews(out)


def _review_json_column(path: Path, fmt: str) -> list[str]:
    if fmt == "csv":
        import csv
        import sys

        csv.field_size_limit(sys.maxsize)
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "review_json" not in rows[0]:
            raise ExportError(f"{path.name} has no review_json column; expected the output of `medslm review`")
        return [r["review_json"] for r in rows]
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "review_json" not in table.column_names:
        raise ExportError(f"{path.name} has no review_json column; expected the output of `medslm review`")
    return [str(x) for x in table.column("review_json").to_pylist()]


def as_reviews(reviews: Any) -> Reviews:
    """``Reviews`` from Reviews, a BatchReport, a list of ChartReview, or a reviews file path."""
    if isinstance(reviews, Reviews):
        return reviews
    if isinstance(reviews, str | Path):
        return read_reviews(reviews)
    if isinstance(reviews, ChartReview):
        return Reviews([reviews])
    if hasattr(reviews, "reviews") and not isinstance(reviews, Mapping):
        return Reviews(reviews.reviews)
    return Reviews(reviews)


__all__ = ["FRAME_RENDERERS", "Reviews", "as_reviews", "note_row", "read_reviews"]
