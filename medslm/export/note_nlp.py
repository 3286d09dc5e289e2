"""Reviews as rows of the OHDSI OMOP CDM v5.4 ``NOTE_NLP`` table, in memory or in a DuckDB / SQLite file.

One row per extracted term: each concept an entity was grounded to (an entity without a concept gives
one row with concept 0), each evidence span of an ICD-10-CM code, each medication mention. The table
is created from the SQLAlchemy model of NOTE_NLP in the maintained ``omop-cdm`` package (The Hyve,
generated from the OHDSI v5.4 DDL), with the primary key and the two indexes of the OHDSI DDL.

Assertion -> ``term_exists`` / ``term_temporal`` / ``term_modifiers`` follows the OMOP CDM v5.4 field
conventions for NOTE_NLP (OHDSI CommonDataModel, ``inst/csv/OMOP_CDMv5.4_Field_Level.csv``): negation,
a subject other than the patient, a conditional term or a ruled-out / uncertain one makes
``term_exists`` 'N'; history makes ``term_temporal`` 'past'; the modifiers are written as
``key=value`` pairs joined by commas. See docs/export.md for the table of mappings.

Concepts are carried as source-vocabulary codes (``concept=ICD10CM:I21.4`` among the modifiers). Without
an OMOP vocabulary (Athena) ``note_nlp_concept_id`` and ``note_nlp_source_concept_id`` are 0, OMOP's
"no matching concept"; with one (:class:`OmopConcepts`), the source concept and its standard "Maps to"
concept fill them.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from medslm.errors import ConfigurationError, ExportError, MissingExtraError
from medslm.export.results import agent_results, medication_attrs, medication_items, nlp_system
from medslm.export.vocabularies import omop_source, split_concept_id
from medslm.records import AgentResult, Assertion, ChartReview, CodeAssignment, Entity

#: OHDSI v5.4 names for the primary key and indexes of NOTE_NLP (inst/ddl/5.4/*/..._primary_keys.sql, _indices.sql)
INDEXES = {"idx_note_nlp_note_id_1": "note_id", "idx_note_nlp_concept_id_1": "note_nlp_concept_id"}
#: the side table that maps NOTE_NLP's integer note_id to medslm's note id, with each note's status
NOTE_MAP_TABLE = "medslm_note"
INT32_MAX = 2**31 - 1


class NoteNlpRow(BaseModel):
    """One row of OMOP CDM v5.4 NOTE_NLP. Lengths are the v5.4 DDL's (DuckDB and SQLite do not check them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    note_nlp_id: int = Field(ge=1, le=INT32_MAX, description="unique id of the row")
    note_id: int = Field(ge=1, le=INT32_MAX, description="NOTE.note_id of the note (see medslm_note for the medslm id)")
    section_concept_id: int | None = Field(default=None, description="note section; medslm does not detect sections")
    snippet: str | None = Field(default=None, max_length=250, description="a window of note text around the term")
    offset: str | None = Field(default=None, max_length=50, description="character offset of the term in the note")
    lexical_variant: str = Field(max_length=250, description="the term as written in the note")
    note_nlp_concept_id: int | None = Field(default=0, description="standard concept; 0 = not mapped")
    note_nlp_source_concept_id: int | None = Field(default=0, description="source-vocabulary concept; 0 = not mapped")
    nlp_system: str | None = Field(default=None, max_length=250, description="medslm version, agent, model and revision")
    nlp_date: dt.date
    nlp_datetime: dt.datetime | None = None
    term_exists: str | None = Field(default=None, pattern="^[YN]$")
    term_temporal: str | None = Field(default=None, max_length=50)
    term_modifiers: str | None = Field(default=None, max_length=2000)

    @property
    def modifiers(self) -> dict[str, str]:
        return parse_term_modifiers(self.term_modifiers)


#: NOTE_NLP column order (the v5.4 DDL's)
COLUMNS: tuple[str, ...] = tuple(NoteNlpRow.model_fields)

#: assertion -> (term_exists, term_temporal, OMOP modifiers). 'possible' is 'N': medslm's possible merges
#: ConText's possible and rule-out ("r/o MI"), and OMOP lists Rule_out = true among what makes a term not exist.
ASSERTION_TERMS: dict[Assertion, tuple[str, str, dict[str, str]]] = {
    Assertion.PRESENT: ("Y", "present", {}),
    Assertion.NEGATED: ("N", "present", {"negation": "true"}),
    Assertion.POSSIBLE: ("N", "present", {"uncertain": "true"}),
    Assertion.HISTORICAL: ("Y", "past", {"history": "true"}),
    Assertion.FAMILY: ("N", "present", {"subject": "family_member"}),
    Assertion.HYPOTHETICAL: ("N", "present", {"conditional": "true"}),
    Assertion.OTHER_PERSON: ("N", "present", {"subject": "other"}),
}
_BASE_MODIFIERS = {"negation": "false", "subject": "patient", "conditional": "false", "rule_out": "false",
                   "uncertain": "false", "history": "false"}


def assertion_terms(assertion: Assertion) -> tuple[str, str, dict[str, str]]:
    exists, temporal, mods = ASSERTION_TERMS[Assertion(assertion)]
    return exists, temporal, {**_BASE_MODIFIERS, **mods}


def format_term_modifiers(mods: Mapping[str, Any]) -> str:
    """``key=value`` pairs joined by commas; a value's commas, equals signs and percents are %-escaped."""
    return ",".join(f"{k}={quote(str(v), safe=' ./:+-_()[]')}" for k, v in mods.items() if v is not None)


def parse_term_modifiers(text: str | None) -> dict[str, str]:
    """The inverse of :func:`format_term_modifiers`."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = unquote(value)
    return out


# --------------------------------------------------------------------------- OMOP concept ids (optional)
@dataclass(frozen=True)
class OmopConcepts:
    """OMOP concept ids for source codes: ``(vocabulary_id, concept_code) -> concept_id`` and "Maps to".

    Build it from an Athena vocabulary download with :meth:`from_athena` (CONCEPT.csv and
    CONCEPT_RELATIONSHIP.csv, tab-separated), or from plain mappings.
    """

    source: Mapping[tuple[str, str], int] = field(default_factory=dict)
    maps_to: Mapping[int, int] = field(default_factory=dict)

    def ids(self, concept_id: str) -> tuple[int, int]:
        """``(standard concept_id, source concept_id)`` of a medslm concept id; 0 where none is known."""
        vocab, code = omop_source(concept_id)
        _, bare = split_concept_id(concept_id)
        sid = self.source.get((vocab, code)) or self.source.get((vocab, bare)) or 0
        return (self.maps_to.get(sid, 0) if sid else 0), sid

    @classmethod
    def from_athena(cls, folder: str | Path,
                    vocabularies: Iterable[str] = ("ICD10CM", "HPO", "SNOMED", "RxNorm", "ICD10", "ICD9CM")) -> OmopConcepts:
        folder = Path(folder)
        concept_csv, rel_csv = folder / "CONCEPT.csv", folder / "CONCEPT_RELATIONSHIP.csv"
        if not concept_csv.is_file():
            raise ConfigurationError(f"{str(folder)!r} has no CONCEPT.csv; pass the folder of an Athena vocabulary download")
        wanted = set(vocabularies)
        source: dict[tuple[str, str], int] = {}
        with concept_csv.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if row["vocabulary_id"] in wanted:
                    source[(row["vocabulary_id"], row["concept_code"])] = int(row["concept_id"])
        maps_to: dict[int, int] = {}
        if rel_csv.is_file():
            ids = set(source.values())
            with rel_csv.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                    if row["relationship_id"] == "Maps to" and int(row["concept_id_1"]) in ids \
                            and not row.get("invalid_reason"):
                        maps_to.setdefault(int(row["concept_id_1"]), int(row["concept_id_2"]))
        return cls(source, maps_to)


# --------------------------------------------------------------------------- renderers, one per agent
@dataclass(frozen=True)
class NoteNlpContext:
    """What a NOTE_NLP renderer gets besides the agent's result."""

    review: ChartReview
    concepts: OmopConcepts | None = None
    snippet_chars: int = 40

    def snippet(self, start: int, end: int) -> str | None:
        text = self.review.text
        if text is None or self.snippet_chars <= 0 or end > len(text):
            return None
        window = text[max(0, start - self.snippet_chars): end + self.snippet_chars]
        return re.sub(r"\s+", " ", window).strip()[:250]

    def concept_ids(self, concept_id: str | None) -> tuple[int, int]:
        if concept_id is None or self.concepts is None:
            return 0, 0
        return self.concepts.ids(concept_id)


#: one term of NOTE_NLP before the note-level columns (ids, dates) are filled
Term = dict[str, Any]
NoteNlpRenderer = Callable[[AgentResult[Any], NoteNlpContext], Iterable[Term]]


def _term(ctx: NoteNlpContext, *, start: int | None, text: str, concept: str | None, exists: str | None,
          temporal: str | None, mods: dict[str, Any], system: str, end: int | None = None) -> Term:
    standard, source = ctx.concept_ids(concept)
    return {
        "snippet": ctx.snippet(start, end) if start is not None and end is not None else None,
        "offset": str(start) if start is not None else None,
        "lexical_variant": text[:250],
        "note_nlp_concept_id": standard,
        "note_nlp_source_concept_id": source,
        "nlp_system": system[:250],
        "term_exists": exists,
        "term_temporal": temporal,
        "term_modifiers": format_term_modifiers(mods)[:2000],
    }


def entity_terms(result: AgentResult[list[Entity]], ctx: NoteNlpContext) -> Iterator[Term]:
    """NER: one term per concept of each entity (an entity without a concept: one term, concept 0)."""
    system = nlp_system(result.agent or "ner", result)
    for e in result.output:
        exists, temporal, mods = assertion_terms(e.assertion)
        base = {**mods, "assertion": e.assertion.value, "type": e.type.value, "end": e.end,
                "confidence": round(e.confidence, 4), "source": e.source}
        for c in e.concepts or (None,):
            extra = {"concept": c.id} if c is not None else {}
            yield _term(ctx, start=e.start, end=e.end, text=e.text, concept=c.id if c else None, exists=exists,
                        temporal=temporal, mods={**base, **extra, "agent": "ner"}, system=system)


def code_terms(result: AgentResult[list[CodeAssignment]], ctx: NoteNlpContext) -> Iterator[Term]:
    """ICD coding: one term per evidence span of each code (a code without evidence: one term, no offset)."""
    system = nlp_system(result.agent or "icd", result)
    text = ctx.review.text
    for c in result.output:
        concept = f"ICD10CM:{c.code}"
        mods = {"concept": concept, "billable": str(c.billable).lower(), "confidence": round(c.confidence, 4),
                "agent": "icd"}
        spans = [s for s in c.evidence if text is None or s.end <= len(text)]
        if not spans:
            yield _term(ctx, start=None, text=c.description, concept=concept, exists="Y", temporal=None,
                        mods=mods, system=system)
        for s in spans:
            variant = text[s.start:s.end] if text is not None else c.description
            yield _term(ctx, start=s.start, end=s.end, text=variant, concept=concept, exists="Y", temporal=None,
                        mods={**mods, "end": s.end}, system=system)


def medication_terms(result: AgentResult[Any], ctx: NoteNlpContext) -> Iterator[Term]:
    """A medication agent (:class:`medslm.export.results.MedicationMention` items): one term per concept."""
    system = nlp_system(result.agent or "medication", result)
    for item in medication_items(result.output):
        m = medication_attrs(item)
        exists, temporal, mods = assertion_terms(m["assertion"])
        base = {**mods, "assertion": m["assertion"].value, "type": "medication", "end": m["end"],
                "dose": m["dose"], "route": m["route"], "frequency": m["frequency"],
                "confidence": round(m["confidence"], 4)}
        for c in m["concepts"] or (None,):
            extra = {"concept": c.id} if c is not None else {}
            yield _term(ctx, start=m["start"], end=m["end"], text=m["text"], concept=c.id if c else None,
                        exists=exists, temporal=temporal, mods={**base, **extra, "agent": "medication"},
                        system=system)


#: agent name -> its NOTE_NLP renderer (triage and summaries extract no terms)
NOTE_NLP_RENDERERS: dict[str, NoteNlpRenderer] = {
    "ner": entity_terms,
    "icd": code_terms,
    "medication": medication_terms,
}


# --------------------------------------------------------------------------- note ids
def _as_int_id(note_id: str) -> int | None:
    return int(note_id) if note_id.isdecimal() and 0 < int(note_id) <= INT32_MAX else None


def assign_note_ids(note_ids: Iterable[str], known: Mapping[str, int] | None = None) -> dict[str, int]:
    """OMOP integer note_ids for medslm note ids.

    Ids already in ``known`` keep theirs; a decimal id (``"1042"``) is its own note_id when free; any
    other id gets the next number above every id in use, in input order.
    """
    out = dict(known or {})
    taken = set(out.values())
    ids = [n for n in dict.fromkeys(note_ids) if n not in out]
    for n in ids:
        as_int = _as_int_id(n)
        if as_int is not None and as_int not in taken:
            out[n] = as_int
            taken.add(as_int)
    nxt = max(taken, default=0) + 1
    for n in ids:
        if n not in out:
            if nxt > INT32_MAX:
                raise ExportError(f"no OMOP note_id left under {INT32_MAX} for note {n!r}; pass note_ids=")
            out[n] = nxt
            taken.add(nxt)
            nxt += 1
    return out


def _note_id_of(note_ids: Mapping[str, int] | Callable[[str], int], review_id: str) -> int:
    try:
        nid = note_ids[review_id] if isinstance(note_ids, Mapping) else note_ids(review_id)
    except KeyError:
        raise ExportError(f"note {review_id!r} has no OMOP note_id in note_ids=; add it") from None
    if not isinstance(nid, int) or not 0 < nid <= INT32_MAX:
        raise ExportError(f"OMOP note_id for note {review_id!r} is {nid!r}; expected an integer in 1..{INT32_MAX}")
    return nid


# --------------------------------------------------------------------------- rows
def _as_reviews(reviews: ChartReview | Iterable[ChartReview]) -> list[ChartReview]:
    return [reviews] if isinstance(reviews, ChartReview) else list(reviews)


def _check_unique(items: list[ChartReview]) -> None:
    seen: set[str] = set()
    for r in items:
        if r.note_id in seen:
            raise ExportError(f"note {r.note_id!r} appears twice in the reviews; export each note once")
        seen.add(r.note_id)


def to_note_nlp(
    reviews: ChartReview | Iterable[ChartReview],
    *,
    note_ids: Mapping[str, int] | Callable[[str], int] | None = None,
    nlp_datetime: dt.datetime | None = None,
    concepts: OmopConcepts | None = None,
    snippet_chars: int = 40,
    first_id: int = 1,
    renderers: Mapping[str, NoteNlpRenderer] | None = None,
) -> list[NoteNlpRow]:
    """The NOTE_NLP rows of ``reviews``, in review order, ``note_nlp_id`` counting from ``first_id``.

    ``note_ids``: the OMOP ``note_id`` of each medslm note id (a mapping or a function); by default
    decimal ids are kept and other ids are numbered (:func:`assign_note_ids`). ``nlp_datetime``: when
    the processing happened (default: now, UTC). ``snippet_chars``: characters of context either side
    of a term in ``snippet`` (0: no snippet, no note text beyond the term itself).
    """
    items = _as_reviews(reviews)
    _check_unique(items)
    ids = note_ids if note_ids is not None else assign_note_ids(r.note_id for r in items)
    when = nlp_datetime or dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    table = NOTE_NLP_RENDERERS if renderers is None else renderers
    rows: list[NoteNlpRow] = []
    next_id = first_id
    for review in items:
        nid = _note_id_of(ids, review.note_id)
        ctx = NoteNlpContext(review, concepts, snippet_chars)
        for agent, result in agent_results(review).items():
            render = table.get(agent)
            if render is None:
                continue
            for term in render(result, ctx):
                rows.append(NoteNlpRow(note_nlp_id=next_id, note_id=nid, nlp_date=when.date(), nlp_datetime=when,
                                       **term))
                next_id += 1
    return rows


# --------------------------------------------------------------------------- schema and files
def note_nlp_table() -> Any:
    """NOTE_NLP as a SQLAlchemy ``Table``: the columns of ``omop_cdm``'s CDM v5.4 model, without its foreign
    keys (a NOTE_NLP file has no CONCEPT or NOTE table to point at), with OHDSI's primary key and indexes."""
    try:
        import sqlalchemy as sa
        from omop_cdm.regular.cdm54 import NoteNlp
    except ImportError as exc:
        raise MissingExtraError(package="omop-cdm", extra="export", feature="the OMOP NOTE_NLP schema") from exc
    md = sa.MetaData()
    cols = [sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=False)
            for c in NoteNlp.__table__.columns]
    table = sa.Table("note_nlp", md, *cols)
    for name, col in INDEXES.items():
        sa.Index(name, table.c[col])
    return table


def note_nlp_ddl(dialect: str = "duckdb") -> list[str]:
    """``CREATE TABLE IF NOT EXISTS note_nlp`` and its indexes for ``duckdb`` or ``sqlite``."""
    table = note_nlp_table()  # raises MissingExtraError naming the extra when omop-cdm is missing
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    d = {"duckdb": postgresql.dialect(), "sqlite": sqlite.dialect()}[dialect]
    stmts = [str(CreateTable(table, if_not_exists=True).compile(dialect=d)).strip()]
    stmts += [str(CreateIndex(ix, if_not_exists=True).compile(dialect=d)).strip() for ix in sorted(table.indexes, key=lambda i: i.name)]
    stmts.append(f"CREATE TABLE IF NOT EXISTS {NOTE_MAP_TABLE} (note_id INTEGER PRIMARY KEY, "
                 "medslm_note_id VARCHAR(512) NOT NULL UNIQUE, status VARCHAR(20) NOT NULL, reason VARCHAR(2000), "
                 "note_sha256 VARCHAR(64), config_hash VARCHAR(64))")
    return stmts


_DB_SUFFIXES = {".duckdb": "duckdb", ".ddb": "duckdb", ".sqlite": "sqlite", ".sqlite3": "sqlite", ".db": "sqlite"}


def _connect(path: Path) -> tuple[Any, str]:
    kind = _DB_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigurationError(f"cannot tell the database of {path.name!r}: use a .duckdb or .sqlite file")
    if kind == "duckdb":
        try:
            import duckdb
        except ImportError as exc:
            raise MissingExtraError(package="duckdb", extra="export", feature="a DuckDB NOTE_NLP file") from exc
        return duckdb.connect(str(path)), kind
    import sqlite3

    return sqlite3.connect(str(path), isolation_level=None), kind


def _sql_value(v: Any, kind: str) -> Any:
    if kind == "sqlite" and isinstance(v, dt.date | dt.datetime):  # no sqlite3 default adapters (deprecated in 3.12)
        return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v.isoformat()
    return v


@dataclass(frozen=True)
class NoteNlpFile:
    """What :func:`write_note_nlp` wrote."""

    path: Path
    notes: int  # notes written (their earlier rows replaced)
    rows: int  # NOTE_NLP rows written
    note_ids: dict[str, int]  # medslm note id -> OMOP note_id


def write_note_nlp(
    reviews: ChartReview | Iterable[ChartReview],
    path: str | Path,
    *,
    note_ids: Mapping[str, int] | None = None,
    nlp_datetime: dt.datetime | None = None,
    concepts: OmopConcepts | None = None,
    snippet_chars: int = 40,
) -> NoteNlpFile:
    """Write the NOTE_NLP rows of ``reviews`` into a DuckDB (``.duckdb``) or SQLite (``.sqlite``) file.

    Creates ``note_nlp`` (and ``medslm_note``, the note id map with each note's status) when missing. A
    note written before has its rows replaced, in one transaction: rerunning an export never doubles a
    row, and a crash leaves the file as it was.
    """
    items = _as_reviews(reviews)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con, kind = _connect(path)
    try:
        for stmt in note_nlp_ddl(kind):
            con.execute(stmt)
        con.execute("BEGIN")
        try:
            known = {str(m): int(n) for n, m in con.execute(f"SELECT note_id, medslm_note_id FROM {NOTE_MAP_TABLE}").fetchall()}
            holder = {n: m for m, n in known.items()}
            for m, n in (note_ids or {}).items():
                if holder.get(n, m) != m:
                    raise ExportError(f"note_id {n} for note {m!r} is already note {holder[n]!r}'s in {path.name}")
            ids = assign_note_ids((r.note_id for r in items), {**known, **(note_ids or {})})
            first = int(con.execute("SELECT COALESCE(MAX(note_nlp_id), 0) FROM note_nlp").fetchone()[0]) + 1
            rows = to_note_nlp(items, note_ids=ids, nlp_datetime=nlp_datetime, concepts=concepts,
                               snippet_chars=snippet_chars, first_id=first)
            batch_ids = sorted({ids[r.note_id] for r in items})
            for nid in batch_ids:
                con.execute("DELETE FROM note_nlp WHERE note_id = ?", [nid])
                con.execute(f"DELETE FROM {NOTE_MAP_TABLE} WHERE note_id = ?", [nid])
            con.executemany(
                f"INSERT INTO {NOTE_MAP_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                [[ids[r.note_id], r.note_id, r.status.value, r.reason, r.note_sha256, r.config_hash]
                 for r in {r.note_id: r for r in items}.values()])
            cols = ", ".join('"offset"' if c == "offset" else c for c in COLUMNS)
            marks = ", ".join("?" for _ in COLUMNS)
            if rows:
                con.executemany(f"INSERT INTO note_nlp ({cols}) VALUES ({marks})",
                                [[_sql_value(getattr(r, c), kind) for c in COLUMNS] for r in rows])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    return NoteNlpFile(path, len(batch_ids), len(rows), {r.note_id: ids[r.note_id] for r in items})


def read_note_nlp(path: str | Path) -> tuple[list[NoteNlpRow], dict[int, str]]:
    """The NOTE_NLP rows of a file (by ``note_nlp_id``) and its ``note_id -> medslm note id`` map."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"NOTE_NLP file {str(path)!r} does not exist")
    con, _ = _connect(path)
    try:
        cols = ", ".join('"offset"' if c == "offset" else c for c in COLUMNS)
        raw = con.execute(f"SELECT {cols} FROM note_nlp ORDER BY note_nlp_id").fetchall()
        ids = {int(n): str(m) for n, m in con.execute(f"SELECT note_id, medslm_note_id FROM {NOTE_MAP_TABLE}").fetchall()}
    finally:
        con.close()
    return [NoteNlpRow(**dict(zip(COLUMNS, row, strict=True))) for row in raw], ids


__all__ = [
    "ASSERTION_TERMS",
    "COLUMNS",
    "NOTE_NLP_RENDERERS",
    "NoteNlpContext",
    "NoteNlpFile",
    "NoteNlpRow",
    "OmopConcepts",
    "assign_note_ids",
    "code_terms",
    "entity_terms",
    "format_term_modifiers",
    "medication_terms",
    "note_nlp_ddl",
    "note_nlp_table",
    "parse_term_modifiers",
    "read_note_nlp",
    "to_note_nlp",
    "write_note_nlp",
]
