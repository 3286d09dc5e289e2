"""What the exporters read from a review: each agent's result by agent name, and the medication shape.

Every exporter (NOTE_NLP, FHIR, frames) is a dict from agent name to a renderer of that agent's result,
so that an agent registry can carry each agent's renderers. :func:`agent_results` reads
``ChartReview.results`` (the registry's dict keyed by agent name) when a review has it, else the
built-in fields (``entities``, ``codes``, ``triage``, ``summary``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from medslm.records import AgentResult, Assertion, ChartReview, ConceptRef

#: the built-in agents and the ChartReview field that holds each one's result
AGENT_FIELDS: dict[str, str] = {"ner": "entities", "icd": "codes", "triage": "triage", "summarize": "summary"}


def agent_results(review: ChartReview) -> dict[str, AgentResult[Any]]:
    """The review's agent results keyed by agent name, in the order the agents ran."""
    results = getattr(review, "results", None)
    if isinstance(results, Mapping):
        return {str(k): v for k, v in results.items() if v is not None}
    out: dict[str, AgentResult[Any]] = {}
    for name, field in AGENT_FIELDS.items():
        res = getattr(review, field, None)
        if res is not None:
            out[name] = res
    return out


@runtime_checkable
class MedicationMention(Protocol):
    """What a medication agent's output items must offer to be exported (MedicationStatement, NOTE_NLP).

    The medication agent is not built yet; any record with these attributes fits (``dose``, ``route``,
    ``frequency`` may be ``None``; ``concepts`` carry RxNorm or other ids such as ``RXNORM:197361``).
    """

    start: int
    end: int
    text: str
    assertion: Assertion
    concepts: Sequence[ConceptRef]
    confidence: float
    dose: str | None
    route: str | None
    frequency: str | None


def medication_items(output: Any) -> list[Any]:
    """The medication mentions of a medication agent's output: the built-in agent's
    :class:`~medslm.agents.medication.Medications` (its ``medications``; allergies are not statements of
    use), or a plain sequence of mention records from another agent."""
    if output is None:
        return []
    meds = getattr(output, "medications", None)
    if meds is not None:
        return list(meds)
    return list(output)


def medication_attrs(m: Any) -> dict[str, Any]:
    """A medication item's exported attributes; optional ones missing from a record read as ``None``.

    Reads both the protocol's names (``text``, ``concepts``) and the built-in record's (``drug``,
    ``concept``, ``dose`` + ``unit``); a mention is ``present`` unless the record says otherwise."""
    text = getattr(m, "text", None) or getattr(m, "drug", "")
    concepts = getattr(m, "concepts", None)
    if concepts is None:
        one = getattr(m, "concept", None)
        concepts = (one,) if one is not None else ()
    dose = getattr(m, "dose", None)
    unit = getattr(m, "unit", None)
    if dose and unit:
        dose = f"{dose} {unit}"
    route = getattr(m, "route", None)
    return {
        "start": int(m.start), "end": int(m.end), "text": str(text),
        "assertion": Assertion(getattr(m, "assertion", Assertion.PRESENT)),
        "concepts": tuple(concepts or ()),
        "confidence": float(getattr(m, "confidence", 0.0)),
        "dose": dose, "route": str(getattr(route, "value", route)) if route is not None else None,
        "frequency": getattr(m, "frequency", None),
    }


def nlp_system(agent: str, result: AgentResult[Any]) -> str:
    """``"medslm 0.1.0 ner: HuggingFaceTB/SmolLM2-135M-Instruct@gguf-q4_1 (transformers)"``: who made a result."""
    from medslm import __version__

    p = result.provenance
    model = p.model_id or "rules"
    if p.model_revision:
        model += f"@{p.model_revision}"
    if p.backend:
        model += f" ({p.backend})"
    if p.escalated:
        model += " escalated"
    return f"medslm {__version__} {agent}: {model}"


__all__ = ["AGENT_FIELDS", "MedicationMention", "agent_results", "medication_attrs", "medication_items", "nlp_system"]
