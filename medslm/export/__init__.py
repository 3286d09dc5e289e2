"""Reviews where clinical researchers and EHRs use them: OMOP CDM NOTE_NLP, FHIR R4, pandas.

>>> from medslm.export import to_note_nlp, to_fhir, read_reviews
>>> reviews = read_reviews("reviews.jsonl")
>>> rows = to_note_nlp(reviews)                  # OMOP CDM v5.4 NOTE_NLP rows
>>> bundle = to_fhir(reviews[0])                 # a validated FHIR R4 Bundle for one note
>>> reviews.to_pandas("entities")                # a tidy DataFrame
>>> export_reviews(reviews, "notes.duckdb", "omop-note-nlp")

Each format is a dict from agent name to a renderer (:data:`NOTE_NLP_RENDERERS`,
:data:`FHIR_RENDERERS`, :data:`FRAME_RENDERERS`). The heavy parts (``fhir.resources``, ``omop-cdm``,
``duckdb``: extra ``export``; pandas) are imported when a function needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medslm.errors import UnknownNameError
from medslm.export.fhir import FHIR_RENDERERS, to_fhir, write_fhir
from medslm.export.frames import FRAME_RENDERERS, Reviews, as_reviews, read_reviews
from medslm.export.note_nlp import NOTE_NLP_RENDERERS, NoteNlpRow, OmopConcepts, to_note_nlp, write_note_nlp
from medslm.export.results import MedicationMention, agent_results

#: export target name -> default file suffix (``medslm review --to NAME``, ``medslm export --to NAME``)
TARGETS: dict[str, str] = {
    "omop-note-nlp": ".note_nlp.duckdb",
    "fhir": ".fhir.ndjson",
    "tables": ".tables",
}


def _write_tables(reviews: Reviews, path: Path) -> list[Path]:
    """Each tidy table as ``<table>.parquet`` (or ``.csv`` when ``path`` ends in ``.csv``) in ``path``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    csv = path.suffix.lower() == ".csv"
    folder = path.with_suffix("") if csv else path
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for table in reviews.tables:
        rows = reviews.rows(table)
        t = pa.Table.from_pylist(rows) if rows else pa.table({"note_id": pa.array([], pa.string())})
        target = folder / f"{table}.{'csv' if csv else 'parquet'}"
        if csv:
            lists = [i for i, f in enumerate(t.schema) if pa.types.is_list(f.type)]
            for i in lists:  # CSV holds no lists: join them with spaces
                col = t.column(i).to_pylist()
                t = t.set_column(i, t.schema.field(i).name, pa.array([None if v is None else " ".join(map(str, v)) for v in col]))
            pcsv.write_csv(t, target)
        else:
            pq.write_table(t, target)
        out.append(target)
    return out


def export_reviews(reviews: Any, path: str | Path, to: str, **options: Any) -> Any:
    """Write ``reviews`` (Reviews, a list, a BatchReport or a reviews file) to ``path`` as ``to``:
    ``omop-note-nlp`` (DuckDB / SQLite file), ``fhir`` (NDJSON of Bundles, or a Bulk Data folder),
    ``tables`` (a folder of tidy Parquet tables). Returns what the writer reports."""
    writers: dict[str, Callable[..., Any]] = {
        "omop-note-nlp": write_note_nlp, "fhir": write_fhir,
        "tables": lambda rs, p, **_: _write_tables(as_reviews(rs), Path(p)),
    }
    if to not in writers:
        raise UnknownNameError("export target", to, list(writers))
    return writers[to](list(as_reviews(reviews)), Path(path), **options)


__all__ = [
    "FHIR_RENDERERS",
    "FRAME_RENDERERS",
    "NOTE_NLP_RENDERERS",
    "TARGETS",
    "MedicationMention",
    "NoteNlpRow",
    "OmopConcepts",
    "Reviews",
    "agent_results",
    "export_reviews",
    "read_reviews",
    "to_fhir",
    "to_note_nlp",
    "write_fhir",
    "write_note_nlp",
]
