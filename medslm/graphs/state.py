"""The state that flows through the chart-review graph, one field per node output.

Field owners (who writes): ``note`` (input), ``text`` (guard_in: the text agents see, with injected
instructions fenced), ``safety_in`` (guard_in), ``entities`` (ner), ``codes`` (icd), ``triage``
(triage), ``summary`` (summarize), ``issues`` (verify and user checks; list, merged), ``routes`` (route;
dict, merged), ``route_reasons`` (route / escalate; dict, merged), ``review_items`` (review; list,
merged), ``reviewer_actions`` (review; list, merged), ``safety_out`` (guard_out), ``status`` /
``reason`` (guard_in, when it blocks or fails the note), ``errors`` (any node that crashes; list,
merged: ``"<node>: <reason_code>: <message without note text>"``).

Fields with a reducer (``Annotated[..., reducer]``) may be written by parallel nodes; the others may
not, and :class:`medslm.graphs.pipeline.Pipeline` refuses a graph where two parallel nodes write one.
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
    route_reasons: Annotated[dict[str, str], merge_dicts]
    review_items: Annotated[list[str], operator.add]
    reviewer_actions: Annotated[list[dict[str, Any]], operator.add]
    safety_out: SafetyVerdict
    status: str
    reason: str
    errors: Annotated[list[str], operator.add]


#: State field of each built-in agent node (the ChartReview field of the same name).
AGENT_FIELDS = {"ner": "entities", "icd": "codes", "triage": "triage", "summarize": "summary"}


__all__ = ["AGENT_FIELDS", "ReviewState", "merge_dicts"]
