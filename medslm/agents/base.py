"""The agent contract: ``run(note, state) -> AgentResult[T]``.

An agent is any object with a ``name`` and a ``run`` method; a user's class fits without inheriting.
Agents store configuration in their constructor and load models on first use, so building a graph is
instant. ``state`` is the graph state so far (e.g. ``state["entities"]`` for agents after NER).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from medslm.records import AgentResult, Note

T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Agent(Protocol[T_co]):
    """A specialist that turns a note (and what earlier nodes found) into a typed, scored result."""

    name: str

    def run(self, note: Note, state: Mapping[str, Any]) -> AgentResult[Any]: ...


__all__ = ["Agent"]
