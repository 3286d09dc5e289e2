"""Synthetic sample notes shipped with medslm (ED visits, discharge summaries, clinic notes).

All 18 notes were written for medslm: no real patient is described. One (``ed-007``) carries an
"ignore previous instructions" injection for the guardian; others carry vitals, negations, medications
with doses, a family history and uncertainty ("possible", "rule out").

>>> notes = load_samples()
>>> notes[0].id
'ed-001'
"""

from __future__ import annotations

import json
from importlib.resources import files

from medslm.records import Note



def load_samples(limit: int | None = None) -> list[Note]:
    """The sample notes, in file order (``limit``: the first ``limit`` of them)."""
    path = files("medslm").joinpath("data", "samples", "notes.jsonl")
    notes = [
        Note(id=rec["id"], text=rec["text"], metadata=rec.get("metadata", {}))
        for rec in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    ]
    return notes[:limit] if limit is not None else notes


__all__ = ["load_samples"]
