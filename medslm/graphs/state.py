"""The state that flows through the chart-review graph, one field per node output.

Field owners (who writes): ``note`` (input), ``text`` (guard_in: the text agents see, with injected
instructions fenced), ``safety_in`` (guard_in), ``entities`` (ner), ``codes`` (icd), ``triage``
(triage), ``summary`` (summarize), ``issues`` (verify; list, merged), ``routes`` (route; dict,
merged), ``review_items`` (review; list, merged), ``safety_out`` (guard_out), ``status`` / ``reason``
(any node that fails or blocks the note).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from medslm.records import (
    AgentResult,
    CodeAssignment,
    Entity,
    Note,
    Route,
    SafetyVerdict,
    Summary,
    TriageResult,
)


def merge_dicts(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    return {**(a or {}), **(b or {})}


class ReviewState(TypedDict, total=False):
    note: Note
    text: str
    safety_in: SafetyVerdict
    entities: AgentResult[list[Entity]]
    codes: AgentResult[list[CodeAssignment]]
    triage: AgentResult[TriageResult]
    summary: AgentResult[Summary]
    issues: Annotated[list[str], operator.add]
    routes: Annotated[dict[str, Route], merge_dicts]
    review_items: Annotated[list[str], operator.add]
    safety_out: SafetyVerdict
    status: str
    reason: str


__all__ = ["ReviewState", "merge_dicts"]
