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


def medication_attrs(m: Any) -> dict[str, Any]:
    """A medication item's exported attributes; optional ones missing from a record read as ``None``."""
    return {
        "start": int(m.start), "end": int(m.end), "text": str(m.text),
        "assertion": Assertion(getattr(m, "assertion", Assertion.PRESENT)),
        "concepts": tuple(getattr(m, "concepts", ()) or ()),
        "confidence": float(getattr(m, "confidence", 0.0)),
        "dose": getattr(m, "dose", None), "route": getattr(m, "route", None),
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


__all__ = ["AGENT_FIELDS", "MedicationMention", "agent_results", "medication_attrs", "nlp_system"]
