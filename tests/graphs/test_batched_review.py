"""Notes in flight (``concurrency`` > 1) share forward passes and give the reviews of one note at a time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from medslm import review_batch
from medslm.agents.summarize import SummarizeAgent
from medslm.graphs.context import ReviewContext
from medslm.models.batching import all_batch_stats
from medslm.records import ChartReview
from medslm.samples import load_samples
from medslm.settings import Settings


def discrete(review: ChartReview) -> dict[str, Any]:
    """What a reviewer acts on: status, route, entities, codes, triage level, summary text."""
    ents = review.entities
    codes = review.codes
    triage = review.triage
    summary = review.summary
    return {
        "status": review.status.value,
        "reason": review.reason,
        "entities": [(e.start, e.end, e.type.value, e.assertion.value) for e in ents.output] if ents else None,
        "codes": [c.code for c in codes.output] if codes else None,
        "triage": triage.output.level if triage else None,
        "summary": summary.output.text if summary else None,
        "summary_extractive": summary.output.extractive if summary else None,
        "routes": {name: (r.route.value if r.route else None) for name, r in review.results.items()},
    }


def test_four_notes_in_flight_give_the_reviews_of_one_at_a_time(tmp_path: Path) -> None:
    by_id = {n.id: n for n in load_samples()}
    notes = [by_id[i] for i in ("ed-001", "dc-001", "cl-002", "ed-005")]  # an ED, a discharge, a clinic note
    # the shipped models; a short section budget keeps the test's decoding affordable on 2 cores
    ctx = ReviewContext(settings=Settings(), agents={"summarize": SummarizeAgent(max_new_tokens=12)},
                        queue_path=tmp_path / "q1.sqlite")
    before = {k: dict(v.sizes) for k, v in all_batch_stats().items()}
    alone = review_batch(notes, context=ctx, progress=False, concurrency=1)
    together = review_batch(notes, context=dataclasses.replace(ctx, queue=None, queue_path=tmp_path / "q2.sqlite"),
                            progress=False, concurrency=4)
    assert [r.note_id for r in together.reviews] == [n.id for n in notes]
    for a, b in zip(alone.reviews, together.reviews, strict=True):
        assert a.status.value != "failed", a.reason
        assert discrete(b) == discrete(a), a.note_id
        assert a.summary is not None and a.summary.output.text  # the summarizer wrote something to compare
    # and they did share batches: the encoder specialists and the summarizer's decoding saw more than one
    # note's rows at once
    stats = all_batch_stats()
    merged = {name for name, st in stats.items()
              if any(size > 1 and count > before.get(name, {}).get(size, 0) for size, count in st.sizes.items())}
    assert any(name.endswith(".generate_many") for name in merged), stats
    assert any(name.endswith((".predict", ".tokens")) for name in merged), stats


def test_agents_are_serialised_per_note_not_across_notes() -> None:
    import threading

    from medslm.records import Note

    ctx = ReviewContext(settings=Settings())
    a, b = Note(id="a", text="x"), Note(id="b", text="y")
    inside_a = threading.Event()
    with ctx.agent_slot(a):
        # another note's agent runs meanwhile ...
        got_b = threading.Event()

        def other_note() -> None:
            with ctx.agent_slot(b):
                got_b.set()

        def same_note() -> None:
            with ctx.agent_slot(Note(id="a", text="x")):
                inside_a.set()

        t = threading.Thread(target=other_note)
        t.start()
        assert got_b.wait(5)
        t.join(5)
        # ... while a second agent of the same note waits for the first
        s = threading.Thread(target=same_note)
        s.start()
        assert not inside_a.wait(0.2)
    assert inside_a.wait(5)
    s.join(5)
    assert ctx._note_locks == {}  # nothing left behind per note
