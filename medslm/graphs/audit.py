"""Audit records: what was run on each note and why it ended as it did - never the note text.

Input hash, job key and settings hash, model ids / revisions / backends, prompt template hashes, KG
sources and versions, routes and their reasons, tokens, latency, cost and review items.
"""

from __future__ import annotations

import time
from typing import Any

from medslm.records import ChartReview


def audit_record(review: ChartReview, *, job_key: str, settings_hash: str | None = None, graph: str | None = None,
                 kg: Any = None, input_index: int | None = None, engine: str = "local") -> dict[str, Any]:
    """The audit record of one review (JSON-ready; holds ids, hashes, counts - no note text)."""
    agents: dict[str, Any] = {}
    tokens_in = tokens_out = 0
    cost = 0.0
    for r in review.agent_results():
        p = r.provenance
        tokens_in += p.tokens_in
        tokens_out += p.tokens_out
        cost += p.cost
        agents[r.agent] = {
            "model_id": p.model_id, "model_revision": p.model_revision, "backend": p.backend,
            "prompt_hash": p.prompt_hash, "tokens_in": p.tokens_in, "tokens_out": p.tokens_out,
            "latency_ms": p.latency_ms, "cost": p.cost, "confidence": r.confidence,
            "route": r.route.value if r.route is not None else None,
            "escalated": p.escalated, "escalation_reason": p.escalation_reason,
            "raw_confidence": r.raw_confidence, "calibration": r.calibration,
        }
        if r.human is not None:  # who decided: the reviewer's name as given to review-queue resolve
            agents[r.agent]["human"] = r.human.model_dump(mode="json", exclude={"comment"})
    reason_code = review.reason.split(":", 1)[0] if review.reason and review.status.value != "needs_review" else None
    return {
        "note_id": review.note_id,
        "input_index": input_index,
        "input_sha256": review.note_sha256,
        "job_key": job_key,
        "config_hash": settings_hash,
        "graph": graph,
        "engine": engine,
        "status": review.status.value,
        "reason_code": reason_code,
        "reason": review.reason if review.status.value in ("failed", "blocked", "needs_review") else None,
        "agents": agents,
        "kg": kg_sources(kg),
        "safety_in": _verdict(review.safety_in),
        "safety_out": _verdict(review.safety_out),
        "n_issues": len(review.issues),
        "review_items": list(review.review_items),
        "reviewer_decisions": [{"agent": r.agent, **r.human.model_dump(mode="json", exclude={"comment"})}
                               for r in review.agent_results() if r.human is not None],
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": cost,
        "latency_ms": review.latency_ms,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _verdict(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"allowed": v.allowed, "findings": sorted({f.category for f in v.findings}), "n_phi": len(v.phi),
            "n_fenced": len(v.fenced)}


def kg_sources(kg: Any) -> Any:
    """Names and versions of the KG's terminologies, when the KG was loaded for this job."""
    if kg is None:
        return None
    for attr in ("sources", "versions"):
        val = getattr(kg, attr, None)
        if callable(val):
            try:
                val = val()
            except Exception:  # noqa: BLE001 - audit must not fail a note
                val = None
        if val is not None:
            try:
                import json

                json.dumps(val, default=str)
                return val if isinstance(val, dict | list) else str(val)
            except (TypeError, ValueError):
                return str(val)
    return type(kg).__name__


__all__ = ["audit_record", "kg_sources"]
