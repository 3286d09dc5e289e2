"""The knowledge graph as a LangGraph node and as a tool an LLM can call.

``make_kg_lookup_node(kg)`` returns a node that grounds the state's entities: each entity without
concepts gets the top lexical candidates of its text; with no entities in the state it finds lexicon
mentions in ``state["text"]`` (or the note's text) and returns them as entities. ``kg_tool(kg)`` wraps
``lookup`` as a LangChain tool for LangGraph's ``ToolNode``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medslm.knowledge.graph import KnowledgeGraph


def _text_of(state: Mapping[str, Any]) -> str:
    if state.get("text"):
        return str(state["text"])
    note = state.get("note")
    return str(getattr(note, "text", "") or "")


def make_kg_lookup_node(
    kg: KnowledgeGraph | None = None,
    *,
    systems: Sequence[str] = ("ICD10CM", "HPO"),
    k: int = 3,
    min_score: float = 0.75,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A node ``state -> {"entities": AgentResult[list[Entity]]}`` that grounds mentions in the graph."""

    def graph() -> KnowledgeGraph:
        if kg is not None:
            return kg
        from medslm.knowledge.graph import KnowledgeGraph

        return KnowledgeGraph.default()

    def kg_lookup(state: Mapping[str, Any]) -> dict[str, Any]:
        import time

        from medslm.records import AgentResult, ConceptRef, Entity, EntityType, Provenance

        t0 = time.perf_counter()
        g = graph()
        previous = state.get("entities")
        entities: list[Entity] = []
        if previous is not None and previous.output:
            for e in previous.output:
                if e.concepts:
                    entities.append(e)
                    continue
                refs = tuple(
                    c.concept.ref(c.score) for c in g.lookup(e.text, systems=systems, k=k) if c.score >= min_score
                )
                entities.append(e.model_copy(update={"concepts": refs}))
            result = previous.model_copy(update={"output": entities})
        else:
            text = _text_of(state)
            for m in g.matcher(systems).find(text):
                refs = tuple(ConceptRef(id=cid, label=g.get(cid).label, score=m.score)  # type: ignore[union-attr]
                             for cid in m.concept_ids[:k])
                entities.append(Entity(start=m.start, end=m.end, text=m.text, type=EntityType.PROBLEM,
                                       concepts=refs, confidence=m.score, source="lexicon"))
            conf = sum(e.confidence for e in entities) / len(entities) if entities else 0.0
            result = AgentResult[list[Entity]](
                agent="kg_lookup", output=entities, confidence=conf,
                provenance=Provenance(backend="knowledge-graph", latency_ms=(time.perf_counter() - t0) * 1000),
                signals={"lexicon_matches": float(len(entities))},
            )
        return {"entities": result}

    return kg_lookup


def kg_lookup_node(state: Mapping[str, Any]) -> dict[str, Any]:
    """The lookup node on the shared embedded graph (see :func:`make_kg_lookup_node`)."""
    return _DEFAULT_NODE(state)


_DEFAULT_NODE = make_kg_lookup_node()


def kg_tool(kg: KnowledgeGraph | None = None, *, k: int = 5) -> Any:
    """``lookup`` as a LangChain ``StructuredTool`` (for ``langgraph.prebuilt.ToolNode``)."""
    from langchain_core.tools import StructuredTool

    def lookup_concepts(text: str, system: str = "ICD10CM") -> list[dict[str, Any]]:
        """Find terminology concepts (ICD10CM codes, HPO phenotypes…) whose names match the text."""
        from medslm.knowledge.graph import KnowledgeGraph

        g = kg or KnowledgeGraph.default()
        return [
            {"id": c.id, "code": c.concept.code, "label": c.concept.label, "score": c.score,
             "billable": c.concept.billable}
            for c in g.lookup(text, systems=(system,), k=k)
        ]

    return StructuredTool.from_function(lookup_concepts, name="lookup_concepts")


__all__ = ["kg_lookup_node", "kg_tool", "make_kg_lookup_node"]
