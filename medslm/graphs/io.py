"""Readers of note files (JSONL, CSV, Parquet) and atomic writers of review files.

A reader yields ``(index, Note | InputFailure)`` for every record: a bad line, a missing or duplicate
id, text that is not a string or not UTF-8 becomes a typed :class:`InputFailure` for that record (and
a ``failed`` review in the output), never an exception that stops the job. Only a usage error - a file
that does not exist, a column that is not there - raises.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from medslm import registry
from medslm.errors import ConfigurationError, NoteError
from medslm.records import AgentResult, ChartReview, Note, ReviewStatus

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class InputFailure:
    """A record that could not become a note. ``reason_code``: bad_json, bad_record, missing_id, bad_id,
    duplicate_id, missing_text, not_text, bad_encoding. The message has no note text."""

    index: int
    note_id: str | None
    reason_code: str
    message: str

    @property
    def output_id(self) -> str:
        """The id of this record's review: its id, made unique for duplicates, or its position."""
        if self.note_id is None:
            return f"#record-{self.index}"
        return f"{self.note_id}#record-{self.index}" if self.reason_code == "duplicate_id" else self.note_id

    def review(self, config_hash: str | None = None) -> ChartReview:
        return ChartReview(note_id=self.output_id, status=ReviewStatus.FAILED,
                           reason=f"{self.reason_code}: {self.message}", config_hash=config_hash)


Record = tuple[int, Note | InputFailure]


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            from medslm.errors import UnknownNameError

            raise UnknownNameError("input format", fmt, FORMATS)
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigurationError(f"cannot tell the format of {Path(path).name!r}; pass --format ({', '.join(FORMATS)})")
    return _SUFFIXES[suffix]


def read_records(path: str | Path, fmt: str | None = None, *, id_col: str = "id", text_col: str = "text",
                 limit: int | None = None) -> Iterator[Record]:
    """Every record of ``path`` as a note or a typed failure, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"input file {str(path)!r} does not exist")
    fmt = detect_format(path, fmt)
    raw = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[fmt](path, id_col, text_col)
    yield from dedupe(raw, limit)


def dedupe(records: Iterable[Record], limit: int | None = None) -> Iterator[Record]:
    """Turn a second record with an already-seen id into a ``duplicate_id`` failure; stop at ``limit``."""
    seen: set[str] = set()
    for n, (index, rec) in enumerate(records):
        if limit is not None and n >= limit:
            return
        # a failed record with an id holds that id too: a later record with it is the duplicate
        rid = rec.id if isinstance(rec, Note) else rec.note_id
        if rid is not None and not (isinstance(rec, InputFailure) and rec.reason_code == "duplicate_id"):
            if rid in seen:
                rec = InputFailure(index, rid, "duplicate_id",
                                   f"record {index}: id {rid!r} already used by an earlier record")
            else:
                seen.add(rid)
        yield index, rec


def make_note(index: int, raw_id: Any, text: Any, metadata: dict[str, Any] | None = None) -> Note | InputFailure:
    """Validate one record's id and text into a :class:`Note`, or say what is wrong with it."""
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        return InputFailure(index, None, "missing_id", f"record {index} has no id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        return InputFailure(index, None, "bad_id", f"record {index}: id is a {type(raw_id).__name__}, not a string")
    nid = str(raw_id)
    if len(nid) > 512 or any(_bad_id_char(c) for c in nid):
        return InputFailure(index, None, "bad_id", f"record {index}: id is over 512 characters or has control, "
                            "surrogate or non-character code points (it could not be written to any output)")
    if text is None:
        return InputFailure(index, nid, "missing_text", f"record {index} has no text")
    try:
        if isinstance(text, bytes | bytearray):
            return Note.from_bytes(nid, bytes(text), _json_safe(metadata))
        if not isinstance(text, str):
            return InputFailure(index, nid, "not_text", f"record {index}: text is a {type(text).__name__}, not a string")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            return InputFailure(index, nid, "bad_encoding", f"record {index}: text is not valid Unicode (lone surrogates)")
        return Note(id=nid, text=text, metadata=_json_safe(metadata))
    except NoteError as exc:
        return InputFailure(index, nid, getattr(exc, "reason_code", "not_text"), str(exc))
    except ValueError as exc:  # pydantic validation
        return InputFailure(index, nid, "bad_record", f"record {index}: {type(exc).__name__}")


def _bad_id_char(c: str) -> bool:
    o = ord(c)
    return o < 32 or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF)


def _clean(v: Any) -> Any:
    """A JSON value whose strings are valid Unicode (lone surrogates become U+FFFD)."""
    if isinstance(v, str):
        return v if not any(0xD800 <= ord(c) <= 0xDFFF for c in v) else "".join(
            "\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in v)
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {_clean(str(k)): _clean(x) for k, x in v.items()}
    return v


def _json_safe(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    out = {}
    for k, v in metadata.items():
        try:
            json.dumps(v)
            out[_clean(str(k))] = _clean(v)
        except (TypeError, ValueError):
            out[_clean(str(k))] = repr(type(v).__name__)
    return out


def _jsonl(path: Path, id_col: str, text_col: str) -> Iterator[Record]:
    with path.open("rb") as f:
        index = -1
        for line in f:
            if not line.strip():
                continue
            index += 1
            try:
                s = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield index, InputFailure(index, None, "bad_encoding", f"line {index}: not UTF-8 (byte {exc.start})")
                continue
            try:
                rec = json.loads(s)
            except (ValueError, RecursionError) as exc:
                yield index, InputFailure(index, None, "bad_json", f"line {index}: not JSON ({type(exc).__name__})")
                continue
            if not isinstance(rec, dict):
                yield index, InputFailure(index, None, "bad_record", f"line {index}: a {type(rec).__name__}, not an object")
                continue
            meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {
                k: v for k, v in rec.items() if k not in (id_col, text_col)}
            yield index, make_note(index, rec.get(id_col), rec.get(text_col), meta)


def _shape(value: str) -> str:
    """Character classes of an id with runs collapsed: "p12" -> "a9", "2024-001" -> "9-9"."""
    out: list[str] = []
    for c in value.strip()[:64]:
        k = "9" if c.isdigit() else "a" if c.isalpha() else c
        if not out or out[-1] != k:
            out.append(k)
    return "".join(out)


def _swallows_rows(inner: list[str], fields: list[str], cols: list[str], id_col: str, delimiter: str,
                   shapes: set[str]) -> bool:
    """True when a record that spans several lines holds lines that read as rows of their own: a line
    with the header's number of fields whose id has the shape of the file's ids (an unterminated quote
    above it), or a quoted field whose last line ends with the delimiter (its closing quote opened a
    later row's field)."""
    for f in fields:
        if ("\n" in f or "\r" in f) and f.replace("\r", "\n").rsplit("\n", 1)[-1].endswith(delimiter):
            return True
    known = shapes or {_shape(fields[cols.index(id_col)])} if id_col in cols and len(fields) > cols.index(id_col) else shapes
    i = cols.index(id_col) if id_col in cols else 0
    for line in inner:
        try:
            row = next(csv.reader([line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        if len(row) == len(cols) and row[i].strip() and " " not in row[i].strip() and _shape(row[i]) in known:
            return True
    return False


class _From:
    """Lines from ``start`` on, without copying the list (one reader per record stays O(record))."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines, self.i = lines, start

    def __iter__(self) -> _From:
        return self

    def __next__(self) -> str:
        if self.i >= len(self.lines):
            raise StopIteration
        self.i += 1
        return self.lines[self.i - 1]


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def _csv(path: Path, id_col: str, text_col: str) -> Iterator[Record]:
    """CSV records; a record whose quoting is broken fails alone and reading resumes on its next line.

    The reader is strict about quotes: an unterminated quote (the file ends inside a quoted field), a
    stray quote after a closing one, or a record with more fields than the header fails that record
    (``bad_record``), and the following lines are read again as records of their own, so the rows after a
    broken quote are never merged into one patient's note.
    """
    csv.field_size_limit(sys.maxsize)
    data = path.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    lines = _LINE.findall(data)
    header_reader = csv.reader(iter(lines[:1]), delimiter=delimiter, strict=True)
    try:
        cols = next(header_reader) if lines else []
    except csv.Error:
        cols = []
    for col, flag in ((id_col, "--id-col"), (text_col, "--text-col")):
        if col not in cols:
            raise ConfigurationError(f"CSV has no column {col!r} (columns: {', '.join(cols) or 'none'}); use {flag}")
    index = -1
    pos = 1  # the physical line the next record starts on
    shapes: set[str] = set()  # shapes of the ids read so far ("a9" for "p12")
    while pos < len(lines):
        if not lines[pos].strip("\r\n"):
            pos += 1
            continue  # a blank line is no record (csv.DictReader skips them too)
        index += 1
        reader = csv.reader(_From(lines, pos), delimiter=delimiter, strict=True)
        try:
            fields = next(reader)
            used = reader.line_num
        except csv.Error as exc:
            yield index, InputFailure(index, None, "bad_record",
                                      f"row {index} (line {pos + 1}): broken quoting ({exc}); read on from the next line")
            pos += 1
            continue
        swallowed = used > 1 and _swallows_rows(lines[pos + 1 : pos + used], fields, cols, id_col, delimiter, shapes)
        if len(fields) > len(cols) or swallowed:
            yield index, InputFailure(index, None, "bad_record",
                                      f"row {index} (line {pos + 1}): broken quoting ({len(fields)} fields for "
                                      f"{len(cols)} columns, or a quoted field that swallowed rows); read on from "
                                      "the next line")
            pos += 1
            continue
        pos += used
        row = dict(zip(cols, fields, strict=False))
        raw_id, text = row.get(id_col), row.get(text_col)
        if raw_id:
            shapes.add(_shape(raw_id))
        if isinstance(text, str) and any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
            yield index, InputFailure(index, raw_id if isinstance(raw_id, str) and raw_id and not any(
                _bad_id_char(c) for c in raw_id) else None, "bad_encoding", f"row {index}: text is not UTF-8")
            continue
        meta = {k: v for k, v in row.items() if k not in (id_col, text_col)}
        yield index, make_note(index, raw_id or None, text, meta)


def _parquet(path: Path, id_col: str, text_col: str) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover
        from medslm.errors import MissingExtraError

        raise MissingExtraError(package="pyarrow", extra="parquet", feature="Parquet input") from exc
    pf = pq.ParquetFile(path)
    cols = pf.schema_arrow.names
    for col, flag in ((id_col, "--id-col"), (text_col, "--text-col")):
        if col not in cols:
            raise ConfigurationError(f"Parquet file has no column {col!r} (columns: {', '.join(cols)}); use {flag}")
    index = -1
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            index += 1
            meta = {k: v for k, v in row.items() if k not in (id_col, text_col)}
            yield index, make_note(index, row.get(id_col), row.get(text_col), meta)


def from_objects(items: Iterable[Any], *, id_col: str = "id", text_col: str = "text") -> Iterator[Record]:
    """Records from Python objects: Notes, dicts with id/text, or plain strings (ids from their position)."""
    for index, item in enumerate(items):
        if isinstance(item, Note):
            yield index, item
        elif isinstance(item, dict):
            meta = {k: v for k, v in item.items() if k not in (id_col, text_col)}
            yield index, make_note(index, item.get(id_col), item.get(text_col), meta)
        elif isinstance(item, str | bytes):
            yield index, make_note(index, f"note-{index}", item)
        else:
            yield index, InputFailure(index, None, "bad_record", f"record {index}: a {type(item).__name__}")


# --------------------------------------------------------------------------- writing
@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` whole or not at all: written to a temp file in the same
    folder, fsynced and renamed over ``path``; on any error the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reviews(reviews: Iterable[ChartReview], path: str | Path, fmt: str | None = None) -> Path:
    """Write reviews atomically (:func:`atomic_file`): never a half file."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    with atomic_file(path) as f:
        if fmt == "jsonl":
            for i, r in enumerate(reviews):
                f.write(review_json(r, i).encode("utf-8") + b"\n")
        else:
            _write_table(reviews, f, fmt)
    return path


def review_json(r: ChartReview, position: int = -1) -> str:
    """The review as JSON; one that cannot be written (e.g. a lone surrogate in a field) becomes a failed
    review under a safe id instead of sinking the whole output."""
    try:
        return r.model_dump_json()
    except ValueError:
        return _unwritable(r, position).model_dump_json()


def _unwritable(r: ChartReview, position: int) -> ChartReview:
    nid = _clean(r.note_id)
    return ChartReview(note_id=nid if not any(_bad_id_char(c) for c in nid) else f"#record-{position}",
                       status=ReviewStatus.FAILED, reason="unwritable: the review holds text that is not valid Unicode",
                       note_sha256=r.note_sha256, config_hash=r.config_hash)


def flat_row(r: ChartReview) -> dict[str, Any]:
    """One table row per review: status, each agent's columns (its spec's ``row``; empty when it did not
    run), counts, and the full JSON. Every registered agent's columns are there, in registry order."""
    row: dict[str, Any] = {"note_id": r.note_id, "status": r.status.value, "reason": r.reason}
    for spec in registry.specs():
        result = r.results.get(spec.name)
        render = spec.renderer("row")
        if result is not None and render is not None:
            row.update(render(result))
        elif result is not None:
            row[f"{spec.name}_confidence"] = result.confidence
        else:
            row.update(dict.fromkeys(spec.columns or (f"{spec.name}_confidence",)))
    for name, result in r.results.items():  # agents nobody registered (a Pipeline's own agent objects)
        if registry.find(name) is None:
            row[f"{name}_confidence"] = result.confidence
    row.update({
        "escalated": ",".join(r.escalated),
        "review_items": len(r.review_items),
        "issues": len(r.issues),
        "config_hash": r.config_hash,
        "review_json": r.model_dump_json(),
    })
    return row


# The built-in agents' flat columns (their registry specs name these).
def entities_row(result: AgentResult[Any]) -> dict[str, Any]:
    return {"n_entities": len(result.output)}


def codes_row(result: AgentResult[Any]) -> dict[str, Any]:
    return {"codes": " ".join(c.code for c in result.output)}


def triage_row(result: AgentResult[Any]) -> dict[str, Any]:
    return {"triage_level": result.output.level}


def summary_row(result: AgentResult[Any]) -> dict[str, Any]:
    return {"summary": result.output.text}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column of ``rows`` in first-seen order (rows of notes that ran other agents differ)."""
    return list(dict.fromkeys(k for row in rows for k in row)) or ["note_id", "status", "reason"]


def _write_table(reviews: Iterable[ChartReview], f: Any, fmt: str) -> None:
    rows = []
    for i, r in enumerate(reviews):
        try:
            r.model_dump_json()
        except ValueError:
            r = _unwritable(r, i)
        rows.append(flat_row(r))
    if fmt == "csv":
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=_columns(rows), restval="")
        w.writeheader()
        w.writerows(rows)
        f.write(text.getvalue().encode("utf-8"))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _columns(rows)
    pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]), f)


__all__ = ["FORMATS", "InputFailure", "Record", "codes_row", "detect_format", "entities_row", "flat_row",
           "from_objects", "make_note", "read_records", "summary_row", "triage_row", "write_reviews"]
