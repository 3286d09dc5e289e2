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


def sample_batch(n: int, seed: int = 0) -> list[Note]:
    """``n`` notes for load tests and benches: the samples in turn, each copy with its own recheck vitals.

    Ids are ``<sample id>~<copy>``; the same ``seed`` gives the same notes.
    """
    import random

    rng = random.Random(seed)
    base = load_samples()
    out = []
    for i in range(n):
        b = base[i % len(base)]
        vitals = f" Recheck: HR {rng.randint(50, 150)}, SpO2 {rng.randint(84, 100)}%, RR {rng.randint(10, 32)}."
        out.append(Note(id=f"{b.id}~{i // len(base)}", text=b.text + vitals, metadata=b.metadata))
    return out


__all__ = ["load_samples", "sample_batch"]
