"""What the ``verify`` node checks in each built-in agent's result (named by their registry specs).

A check is ``check(result, text, context) -> list[str]``: issues that start with ``"<agent>: "``, so that
``route`` sends the result on to the LLM or to a reviewer. The ``verify`` node itself checks, for every
agent, that evidence spans lie inside the note; see :func:`medslm.graphs.nodes.verify`.
"""

from __future__ import annotations

from typing import Any

from medslm.errors import InvalidCodeError
from medslm.records import AgentResult, CodeAssignment, Entity, Summary, TriageResult


def spans_outside(agent: str, spans: Any, n: int) -> list[str]:
    """Issues for the spans of ``spans`` that end past the note's ``n`` characters."""
    return [f"{agent}: evidence span [{s.start}, {s.end}) is outside the note ({n} chars)" for s in spans if s.end > n]


def check_entities(result: AgentResult[list[Entity]], text: str, context: Any) -> list[str]:
    """Every entity's offsets hold exactly its text."""
    return [f"ner: entity at [{e.start}, {e.end}) does not match the note text there"
            for e in result.output if e.end > len(text) or text[e.start : e.end] != e.text]


def check_codes(result: AgentResult[list[CodeAssignment]], text: str, context: Any) -> list[str]:
    """Codes are nodes of the run's knowledge graph, billable, with evidence inside the note."""
    issues: list[str] = []
    kg = context.get_kg() if result.output else None
    for c in result.output:
        issues.extend(spans_outside("icd", c.evidence, len(text)))
        try:
            kg.validate(c.code)
        except InvalidCodeError as exc:
            issues.append(f"icd: {exc}")
            continue
        if not kg.is_billable(c.code):
            issues.append(f"icd: code {c.code!r} is a category, not billable; code to a child")
        if not c.evidence:
            issues.append(f"icd: code {c.code!r} has no evidence span")
    return issues


def check_summary(result: AgentResult[Summary], text: str, context: Any) -> list[str]:
    """Every summary sentence is supported by note spans that lie inside the note."""
    issues: list[str] = []
    for sec in result.output.sections:
        for i, sent in enumerate(sec.sentences):
            issues.extend(spans_outside("summarize", sent.support, len(text)))
            if not sent.supported or not sent.support:
                why = ", ".join(sent.issues) or "no supporting span"
                issues.append(f"summarize: sentence {i} of {sec.name} is not supported by the note ({why})")
    return issues


def check_triage(result: AgentResult[TriageResult], text: str, context: Any) -> list[str]:
    """The level is at least as urgent as every red flag found in the note (with its vitals) allows."""
    from medslm.agents.red_flags import find_red_flags
    from medslm.agents.vitals import extract_vitals

    level = result.output.level
    return [f"triage: level {level} is less urgent than red flag {flag.name!r} allows (<= {flag.max_level})"
            for flag in find_red_flags(text, extract_vitals(text)) if level > flag.max_level]


__all__ = ["check_codes", "check_entities", "check_summary", "check_triage", "spans_outside"]
