"""``medslm distill AGENT``: escalations become training data, and escalation falls run over run.

A distillation round retrains an agent's trained component on its train split **plus**

- the **teacher labels** the LLM gave to escalated results (:class:`~medslm.routers.escalation.TeacherStore`),
- the **reviewers' decisions** from the human review queue (:class:`~medslm.routers.review_queue.ReviewQueue`):
  a correction is the label, an accepted result its own output; a rejected one teaches nothing.
  A reviewer's label wins over the teacher's for the same note.

Teacher stores and queues hold note *hashes* and results, not whole notes, so the texts come from the
job's notes file (``--notes``), matched by the sha256 of their text. The new component is written with a
manifest that records the extra data (its sha256, how many teacher and reviewer labels) next to the
public train split; ``before`` and ``after`` figures are measured on held-out data the round never saw.

Each agent plugs in a :class:`Distiller` (:data:`DISTILLERS`): how a label is read off a result or a
correction, how the component is refitted with extra examples, and how it is scored. The triage agent's
is here (its ``triage-acuity`` model); others register the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from medslm.errors import ConfigurationError, UnknownNameError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One extra training example: a note's text, its label and where the label came from."""

    note_id: str
    note_sha256: str
    text: str
    label: Any
    source: str  # "teacher:<model id>" or "reviewer:<name>"


class Distiller(Protocol):
    """What ``medslm distill`` needs of an agent."""

    agent: str
    component: str

    def label_of(self, output: Any) -> Any | None:
        """The training label in a result's output (or a reviewer's correction); None if unusable."""
        ...

    def fit(self, ctx: Any, extra: Sequence[Example]) -> Any:
        """Refit the component into ``ctx.out`` on its train split plus ``extra``; a TrainResult."""
        ...


def texts_by_hash(notes: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """``sha256(text) -> (note id, text)`` for notes (Notes, dicts with id/text, or a notes file path)."""
    from medslm.graphs.io import from_objects, read_records
    from medslm.records import Note

    if isinstance(notes, str | Path):
        records = [r for _, r in read_records(notes)]
    else:
        records = [r for _, r in from_objects(notes)]
    return {r.sha256: (r.id, r.text) for r in records if isinstance(r, Note)}


def collect(distiller: Distiller, notes: Mapping[str, tuple[str, str]], *, teacher: Any = None,
            queue: Any = None) -> list[Example]:
    """The extra examples of a round: teacher labels, then reviewers' decisions (which win), per note."""
    by_note: dict[str, Example] = {}
    if teacher is not None:
        for lab in teacher.labels(distiller.agent):
            found = notes.get(lab.note_sha256)
            if found is None:
                continue
            value = distiller.label_of(json.loads(lab.result_json).get("output"))
            if value is not None:
                by_note[lab.note_sha256] = Example(found[0], lab.note_sha256, found[1], value, f"teacher:{lab.model_id}")
    if queue is not None:
        for item in queue.list("resolved", agent=distiller.agent):
            found = notes.get(item.note_sha256 or "")
            if found is None or item.decision is None or item.decision.value == "reject":
                continue
            out = item.correction if item.decision.value == "correct" else (item.result or {}).get("output")
            value = distiller.label_of(out)
            if value is not None:
                by_note[str(item.note_sha256)] = Example(found[0], str(item.note_sha256), found[1], value,
                                                         f"reviewer:{item.reviewer or 'unknown'}")
    return list(by_note.values())


def examples_sha256(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in sorted(examples, key=lambda x: x.note_sha256):
        h.update(f"{e.note_sha256}\x1f{json.dumps(e.label, sort_keys=True, default=str)}\x1f{e.source}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ triage
class TriageDistiller:
    """The triage agent's acuity model (``triage-acuity``) refitted on KTAS plus the extra levels."""

    agent = "triage"
    component = "triage-acuity"

    def label_of(self, output: Any) -> int | None:
        if isinstance(output, Mapping) and output.get("level") is not None:
            level = output["level"]
        elif isinstance(output, int | str):
            level = output
        else:
            return None
        try:
            level = int(level)
        except (TypeError, ValueError):
            return None
        return level if 1 <= level <= 5 else None

    def rows(self, extra: Sequence[Example]) -> list[dict[str, Any]]:
        return [{"id": e.note_id, "note": e.text, "expert": int(e.label)} for e in extra]

    def fit(self, ctx: Any, extra: Sequence[Example], base_rows: Sequence[dict[str, Any]] | None = None) -> Any:
        from medslm.evals.ktas import fit_triage_model, read_ktas
        from medslm.training import TrainResult, write_json
        from medslm.training.triage_acuity import LICENCE, C

        if base_rows is None:
            ctx.data_file("ktas/data_dev.csv", split="dev (the provider's 70 %; all rows)", licence=LICENCE)
            base_rows = read_ktas(ctx.data_dir)
        rows = [*base_rows, *self.rows(extra)]
        params = fit_triage_model(rows, C=C)
        params["meta"]["slm_weight"] = 0.5
        write_json(ctx.out / "model.json", params)
        return TrainResult(
            hyperparameters={"C": C, "rows": len(rows), "train_rows": len(base_rows), "distilled_rows": len(extra),
                             "slm_weight": 0.5},
            tuning="C as the triage-acuity recipe; extra rows: teacher labels and reviewer decisions (distill)")


DISTILLERS: dict[str, Distiller] = {"triage": TriageDistiller()}


@dataclass
class DistillReport:
    agent: str
    component: str
    teacher_examples: int
    reviewer_examples: int
    manifest: Any
    figures: dict[str, float] = field(default_factory=dict)


def distill(agent: str, *, data_dir: str | Path, out_dir: str | Path, notes: Any, teacher: Any = None,
            queue: Any = None, seed: int = 0, base_rows: Sequence[dict[str, Any]] | None = None) -> DistillReport:
    """One distillation round of ``agent``: a new ``<out_dir>/<component>`` with its manifest.

    ``notes``: the job's notes (a file or objects) whose hashes the teacher store / queue refer to;
    ``teacher``: a TeacherStore (or its path); ``queue``: a ReviewQueue (or its path). ``base_rows``: the
    train split to refit on instead of the component's public one (for experiments; recorded as such).
    """
    from medslm.artifacts import DataRecord
    from medslm.routers.escalation import TeacherStore
    from medslm.routers.review_queue import ReviewQueue
    from medslm.training import train_component

    if agent not in DISTILLERS:
        raise UnknownNameError("agent with a distiller", agent, list(DISTILLERS))
    d = DISTILLERS[agent]
    store = TeacherStore(teacher) if isinstance(teacher, str | Path) else teacher
    q = ReviewQueue(queue) if isinstance(queue, str | Path) else queue
    if store is None and q is None:
        raise ConfigurationError("distill needs teacher labels (--teacher) or reviewer decisions (--queue), or both")
    extra = collect(d, texts_by_hash(notes), teacher=store, queue=q)
    if not extra:
        raise ConfigurationError(
            f"no teacher label or reviewer decision of agent {agent!r} matches a note of the notes given; pass the "
            "notes file of the job that escalated them (--notes)")
    n_teacher = sum(e.source.startswith("teacher:") for e in extra)
    n_review = len(extra) - n_teacher

    def fn(ctx: Any) -> Any:
        ctx.data.append(DataRecord(path=f"distill:{agent}", sha256=examples_sha256(extra),
                                   split=f"escalations ({n_teacher} teacher labels, {n_review} reviewer decisions)",
                                   use="fit", licence="the job's own notes"))
        if base_rows is not None:
            ctx.data.append(DataRecord(path="distill:base_rows", sha256=hashlib.sha256(json.dumps(
                [r.get("id") for r in base_rows]).encode()).hexdigest(), split="given train rows", use="fit"))
        return d.fit(ctx, extra, base_rows)  # type: ignore[call-arg]

    manifest = train_component(d.component, data_dir=data_dir, out_dir=out_dir, seed=seed, recipe_fn=fn)
    return DistillReport(agent, d.component, n_teacher, n_review, manifest)


__all__ = ["DISTILLERS", "DistillReport", "Distiller", "Example", "TriageDistiller", "collect", "distill",
           "texts_by_hash"]
