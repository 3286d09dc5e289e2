"""The state that flows through the chart-review graph, one field per node output.

Field owners (who writes): ``note`` (input), ``text`` (guard_in: the text agents see, with injected
instructions fenced), ``safety_in`` (guard_in), one field per registered agent (``entities`` by ner,
``codes`` by icd, ``triage`` by triage, ``summary`` by summarize, a plug-in's own field…; see
:mod:`medslm.registry`), ``issues`` (verify and user checks; list, merged), ``routes`` (route; dict,
merged), ``route_reasons`` (route / escalate; dict, merged), ``review_items`` (review; list, merged),
``reviewer_actions`` (review; list, merged), ``safety_out`` (guard_out), ``status`` / ``reason``
(guard_in, when it blocks or fails the note), ``errors`` (any node that crashes; list, merged:
``"<node>: <reason_code>: <message without note text>"``).

Fields with a reducer (``Annotated[..., reducer]``) may be written by parallel nodes; the others may
not, and :class:`medslm.graphs.pipeline.Pipeline` refuses a graph where two parallel nodes write one.
"""

from __future__ import annotations

import operator
import typing
from collections.abc import Iterable
from typing import Annotated, Any, TypedDict

from medslm import registry
from medslm.records import AgentResult, Note, Route, SafetyVerdict


def merge_dicts(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    return {**(a or {}), **(b or {})}


class BaseState(TypedDict, total=False):
    """The fields every medslm graph shares; the agents' fields come from the registry."""

    note: Note
    text: str
    safety_in: SafetyVerdict
    issues: Annotated[list[str], operator.add]
    routes: Annotated[dict[str, Route], merge_dicts]
    route_reasons: Annotated[dict[str, str], merge_dicts]
    review_items: Annotated[list[str], operator.add]
    reviewer_actions: Annotated[list[dict[str, Any]], operator.add]
    safety_out: SafetyVerdict
    status: str
    reason: str
    errors: Annotated[list[str], operator.add]


def review_state(specs: Iterable[registry.AgentSpec] | None = None, name: str = "ReviewState") -> type:
    """A state schema: :class:`BaseState` plus one ``AgentResult`` field per agent of ``specs``."""
    fields: dict[str, Any] = typing.get_type_hints(BaseState, include_extras=True)
    for spec in registry.specs() if specs is None else specs:
        out = spec.output
        fields.setdefault(spec.field, AgentResult[Any] if isinstance(out, str) else AgentResult[out])
    return TypedDict(name, fields, total=False)  # type: ignore[operator]


#: The chart-review state: the base fields and every registered agent's field.
ReviewState = review_state()


__all__ = ["BaseState", "ReviewState", "merge_dicts", "review_state"]
