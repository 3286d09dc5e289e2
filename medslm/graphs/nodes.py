"""The chart-review nodes: guard_in, the agent nodes, verify, route, escalate, review, guard_out.

Every node is a :class:`NodeSpec`: a LangGraph node function ``(state, runtime) -> update`` plus what
it reads and writes of :class:`~medslm.graphs.state.ReviewState`, its model and its escalation policy.
Components (agents, guardian, KG, policy, queue) come from ``runtime.context`` (a
:class:`~medslm.graphs.context.ReviewContext`), never from globals.

A node that raises is isolated: the error becomes ``errors: ["<node>: <reason>"]`` in the state (no
note text in it) and the note ends ``status="failed"``, while the batch goes on.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medslm import registry
from medslm.errors import EndpointError, MedslmError, NoteError
from medslm.graphs.checks import spans_outside
from medslm.graphs.context import ReviewContext
from medslm.records import AgentResult, ChartReview, Note, ReviewStatus, Route, Severity
from medslm.settings import Settings

log = logging.getLogger(__name__)

NodeFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class NodeSpec:
    """A node of a medslm graph: its function and its contract with the state."""

    name: str
    fn: NodeFn
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    optional_reads: tuple[str, ...] = ()
    kind: str = "function"  # builtin | agent | function
    model: str | None = None
    policy: Any = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: name, kind, model, policy, reads → writes."""
        model = f" model={self.model}" if self.model else ""
        policy = f" policy={type(self.policy).__name__}" if self.policy is not None else ""
        reads = ", ".join(self.reads + tuple(f"{r}?" for r in self.optional_reads)) or "-"
        return f"{self.name} [{self.kind}]{model}{policy}: reads {reads} -> writes {', '.join(self.writes) or '-'}"


# --------------------------------------------------------------------------- helpers
_DEFAULT_CONTEXTS: dict[str, ReviewContext] = {}
_DEFAULT_LOCK = threading.Lock()


def default_context(settings: Settings | None = None) -> ReviewContext:
    """One shared context per settings in this process, for graphs invoked without ``context=``."""
    settings = settings or Settings()
    key = settings.model_dump_json()
    with _DEFAULT_LOCK:
        if key not in _DEFAULT_CONTEXTS:
            _DEFAULT_CONTEXTS[key] = ReviewContext(settings=settings)
        return _DEFAULT_CONTEXTS[key]


def context_of(runtime: Any) -> ReviewContext:
    """The run's context (``graph.invoke(..., context=ReviewContext(...))``) or the default one."""
    ctx = getattr(runtime, "context", None)
    return ctx if isinstance(ctx, ReviewContext) else default_context()


def failure_reason(exc: BaseException) -> str:
    """A reason without note text: medslm errors carry PHI-free messages; others only their type."""
    if isinstance(exc, MedslmError):
        code = getattr(exc, "reason_code", type(exc).__name__)
        return f"{code}: {exc}"
    return f"{type(exc).__name__} (message withheld: may contain note text)"


def isolated(name: str, fn: NodeFn, settings: Settings | None = None) -> NodeFn:
    """Wrap a node so that an exception fails this note only (LangGraph interrupts pass through).

    Without a runtime context, the node gets the default context for ``settings`` (the pipeline's).
    """
    from langgraph.errors import GraphBubbleUp

    takes_runtime = "runtime" in inspect.signature(fn).parameters

    def node(state: dict[str, Any], runtime: Any = None) -> dict[str, Any]:
        if takes_runtime and (runtime is None or not isinstance(runtime.context, ReviewContext)):
            ctx = default_context(settings)
            runtime = runtime.override(context=ctx) if runtime is not None else _Bare(ctx)
        try:
            out = fn(state, runtime) if takes_runtime else fn(state)
        except GraphBubbleUp:
            raise
        except Exception as exc:  # noqa: BLE001 - per-note isolation is the point
            note = state.get("note")
            log.warning("node %s failed on note %s: %s", name, getattr(note, "id", "?"), type(exc).__name__)
            log.debug("node %s failed at %s", name, _where(exc))
            return {"errors": [f"{name}: {failure_reason(exc)}"]}
        return out or {}

    node.__name__ = name
    node.__doc__ = fn.__doc__
    return node


def _where(exc: BaseException) -> str:
    """File and line where ``exc`` was raised (no message: it may hold note text)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"


@dataclass(frozen=True)
class _Bare:
    context: ReviewContext


def seen_note(state: Mapping[str, Any]) -> Note:
    """The note as agents see it: the guardian's fenced text when it fenced anything."""
    note: Note = state["note"]
    text = state.get("text")
    if text is None or text == note.text:
        return note
    return Note(id=note.id, text=text, metadata=note.metadata)


# --------------------------------------------------------------------------- guard_in / guard_out
def guard_in(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
    """Refuse empty / huge / binary notes, screen for injections and PHI, fence injected spans."""
    ctx = context_of(runtime)
    note: Note = state["note"]
    try:
        note.check(ctx.settings.max_note_chars)
    except NoteError as exc:
        return {"status": ReviewStatus.FAILED.value, "reason": f"{exc.reason_code}: {exc}"}
    guardian = ctx.get_guardian()
    verdict = guardian.check_input(note)
    if not verdict.allowed:
        why = "; ".join(f"{f.category}: {f.message}" for f in verdict.findings if f.severity == Severity.BLOCKING)
        return {"safety_in": verdict, "status": ReviewStatus.BLOCKED.value, "reason": why or "blocked by guard_in"}
    text = guardian.fence(note.text, verdict) if verdict.fenced else note.text
    return {"safety_in": verdict, "text": text}


def guard_out(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
    """Screen the outputs (summary, codes) for unsafe advice, PHI leaks and unsupported claims."""
    ctx = context_of(runtime)
    summary = state.get("summary")
    codes = state.get("codes")
    code_list = [c.code for c in codes.output] if codes is not None else []
    verdict = ctx.get_guardian().check_output(
        state["note"].text,
        summary_text=summary.output.text if summary is not None else None,
        codes=code_list,
        input_verdict=state.get("safety_in"),
        code_validator=_kg_validator(ctx) if code_list else None,
    )
    update: dict[str, Any] = {"safety_out": verdict}
    if summary is not None and any(f.category == "phi_leak" for f in verdict.findings):
        # PHI in the summary is redacted ([NAME], [MRN]…), never passed on as a mere finding
        from medslm.safety.output import redact_summary

        note = state["note"]
        phi = state.get("safety_in").phi if state.get("safety_in") is not None else ()
        red, n = redact_summary(summary.output, {note.text[p.start : p.end] for p in phi})
        if n:
            update["summary"] = summary.model_copy(update={"output": red})
    return update


def _kg_validator(ctx: ReviewContext) -> Callable[[str], bool]:
    """Codes are checked against the run's knowledge graph (the one ``icd`` and ``verify`` use)."""
    kg = ctx.get_kg()
    return lambda code: kg.get(code, "ICD10CM") is not None


def allowed(state: Mapping[str, Any]) -> bool:
    """True while the note is neither blocked nor failed (the gate after guard_in)."""
    return state.get("status") not in (ReviewStatus.BLOCKED.value, ReviewStatus.FAILED.value)


# --------------------------------------------------------------------------- agent nodes
def agent_node(
    name: str,
    *,
    role: str | None = None,
    agent: Any = None,
    field_name: str | None = None,
    model: Any = None,
    options: dict[str, Any] | None = None,
) -> NodeFn:
    """A node running ``agent`` (an object) or the context's agent for ``role`` on ``model``."""
    spec = registry.find(role or name)
    out_field = field_name or (spec.field if spec is not None else name)

    def run(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
        ctx = context_of(runtime)
        worker = agent if agent is not None else ctx.agent(role or name, model, options)
        with ctx.agent_slot(state.get("note")):
            return {out_field: worker.run(seen_note(state), state)}

    run.__name__ = name
    run.__doc__ = f"Run the {role or type(agent).__name__} agent; write {out_field!r}."
    return run


def kg_lookup(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
    """Ground entities in the run's knowledge graph (see :func:`medslm.knowledge.tool.make_kg_lookup_node`)."""
    from medslm.knowledge.tool import make_kg_lookup_node

    return make_kg_lookup_node(context_of(runtime).get_kg())(state)


# --------------------------------------------------------------------------- verify
def verify(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
    """For every agent result: evidence spans inside the note, then the agent's own checks (its spec's
    ``verify``: codes in the KG, entity offsets, summary support, red flags vs. vitals…)."""
    ctx = context_of(runtime)
    text: str = state.get("text") or state["note"].text
    issues: list[str] = []
    for fld, result in agent_results(state).items():
        spec = registry.for_field(fld)
        name = spec.name if spec is not None else result.agent
        issues.extend(spans_outside(name, result.evidence, len(text)))
        check = spec.renderer("verify") if spec is not None else None
        if check is not None:
            issues.extend(check(result, text, ctx))
    return {"issues": issues}


def agent_results(state: Mapping[str, Any]) -> dict[str, AgentResult[Any]]:
    """The agent results in ``state`` by state field: registered agents in registry order, then others."""
    found = {k: v for k, v in state.items() if isinstance(v, AgentResult)}
    order = {s.field: i for i, s in enumerate(registry.specs())}
    return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))


# --------------------------------------------------------------------------- route / escalate / review
def make_route(agent_fields: Mapping[str, str], policies: Mapping[str, Any]) -> NodeFn:
    """A route node over the graph's agent nodes (``node -> field``), with per-node policies."""

    def route(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
        """Accept, escalate or send to review each agent result, by calibrated confidence and budget."""
        ctx = context_of(runtime)
        issues = state.get("issues") or []
        escalator = ctx.get_escalator()
        update: dict[str, Any] = {}
        routes: dict[str, Route] = {}
        reasons: dict[str, str] = {}
        for node, fld in agent_fields.items():
            result = state.get(fld)
            if result is None:
                continue
            policy = policies.get(node) or ctx.get_policy()
            decided = Route(_decide(policy, result, state["note"].id))
            threshold = _threshold(policy, result.agent)
            why = f"confidence {result.confidence:.2f}" + (f" vs threshold {threshold:.2f}" if threshold else "")
            failed_checks = [i for i in issues if i.split(":", 1)[0] in (node, result.agent)]
            if decided == Route.ACCEPT and failed_checks:
                decided, why = Route.ESCALATE, f"{len(failed_checks)} verification issue(s)"
            if decided == Route.ESCALATE and escalator is None:
                decided, why = Route.REVIEW, f"{why}; no escalation model configured"
            routes[node], reasons[node] = decided, f"{decided.value}: {why}"
            update[fld] = result.model_copy(update={"route": decided})
        return {**update, "routes": routes, "route_reasons": reasons}

    return route


def _decide(policy: Any, result: AgentResult[Any], note_id: str) -> Route:
    try:
        return Route(policy.decide(result, note_id=note_id))
    except TypeError:  # a user's policy with decide(result) only
        return Route(policy.decide(result))


def _threshold(policy: Any, agent: str) -> float | None:
    for attr in ("threshold_for",):
        fn = getattr(policy, attr, None)
        if callable(fn):
            try:
                return float(fn(agent))
            except Exception:  # noqa: BLE001 - a display nicety only
                return None
    value = getattr(policy, "threshold", None)
    return float(value) if isinstance(value, int | float) else None


def make_escalate(agent_fields: Mapping[str, str], agents: Mapping[str, Any]) -> NodeFn:
    def escalate(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
        """Send results routed to ``escalate`` to the LLM; endpoint failures go to review."""
        ctx = context_of(runtime)
        escalator = ctx.get_escalator()
        routes: dict[str, Route] = {}
        reasons: dict[str, str] = {}
        update: dict[str, Any] = {}
        for node, route in (state.get("routes") or {}).items():
            if route != Route.ESCALATE or node not in agent_fields:
                continue
            fld = agent_fields[node]
            result = state[fld]
            agent = agents.get(node) or (ctx.agent(node) if node in registry.AGENTS else None)
            try:
                new = escalator.escalate(node, seen_note(state), result, agent)
            except EndpointError as exc:
                routes[node], reasons[node] = Route.REVIEW, f"review: escalation failed ({type(exc).__name__})"
                continue
            final = Route(new.route) if new.route is not None else Route.ACCEPT
            routes[node] = final
            reasons[node] = f"{final.value}: escalated ({new.provenance.escalation_reason or 'low confidence'})"
            update[fld] = new.model_copy(update={"route": final})
        return {**update, "routes": routes, "route_reasons": reasons}

    return escalate


def make_review(agent_fields: Mapping[str, str]) -> NodeFn:
    def review(state: dict[str, Any], runtime: Any) -> dict[str, Any]:
        """Queue results routed to ``review``; with ``interactive`` contexts, pause for a reviewer."""
        ctx = context_of(runtime)
        note: Note = state["note"]
        reasons = state.get("route_reasons") or {}
        items: list[str] = []
        actions: list[dict[str, Any]] = []
        update: dict[str, Any] = {}
        routes: dict[str, Route] = {}
        for node, route in (state.get("routes") or {}).items():
            if route != Route.REVIEW or node not in agent_fields:
                continue
            result = state[agent_fields[node]]
            reason = reasons.get(node, "review")
            # keyed by job, note content and payload: another patient under a reused id is a new item
            key = {"job_key": ctx.job_key or ctx.config_hash, "note_sha256": note.sha256}
            if not ctx.interactive:
                items.append(str(ctx.get_queue().add(note.id, node, result, reason, **key)))
                continue
            from medslm.routers import request_review

            decision = request_review(ctx.get_queue(), note.id, node, result, reason, **key)
            items.append(str(decision.get("item_id", "")))
            action = str(decision.get("decision") or decision.get("action") or "")
            actions.append({"item_id": decision.get("item_id"), "agent": node, "action": action,
                            "reviewer": decision.get("reviewer")})
            fld = agent_fields[node]
            if action == "accept":
                update[fld] = result.model_copy(update={"route": Route.ACCEPT})
                routes[node] = Route.ACCEPT
            elif action == "correct" and decision.get("correction") is not None:
                data = {**result.model_dump(mode="json"), "output": decision["correction"], "route": "accept"}
                update[fld] = type(result).model_validate(data)
                routes[node] = Route.ACCEPT
        return {**update, "routes": routes, "review_items": items, "reviewer_actions": actions}

    return review


def needs(route: Route) -> Callable[[Mapping[str, Any]], bool]:
    def check(state: Mapping[str, Any]) -> bool:
        return any(r == route for r in (state.get("routes") or {}).values())

    return check


# --------------------------------------------------------------------------- final record
def review_from_state(
    state: Mapping[str, Any], *, config_hash: str | None = None, latency_ms: float = 0.0
) -> ChartReview:
    """The :class:`ChartReview` of a finished run (status from guard_in, errors, guard_out, routes)."""
    note: Note = state["note"]
    status = state.get("status")
    reason = state.get("reason")
    errors = list(state.get("errors") or [])
    items = tuple(state.get("review_items") or ())
    safety_out = state.get("safety_out")
    if status in (ReviewStatus.FAILED.value, ReviewStatus.BLOCKED.value):
        final = ReviewStatus(status)
    elif errors:
        final = ReviewStatus.FAILED
        reason = errors[0] + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
    elif safety_out is not None and not safety_out.allowed:
        final = ReviewStatus.BLOCKED
        reason = "; ".join(f"{f.category}: {f.message}" for f in safety_out.findings
                           if f.severity == Severity.BLOCKING) or "output blocked by guard_out"
    elif any(r == Route.REVIEW for r in (state.get("routes") or {}).values()):
        final = ReviewStatus.NEEDS_REVIEW
        reasons = state.get("route_reasons") or {}
        reason = "; ".join(f"{k}: {v}" for k, v in reasons.items() if v.startswith("review"))
    else:
        final = ReviewStatus.OK
    return ChartReview(
        note_id=note.id,
        status=final,
        reason=reason,
        note_sha256=note.sha256,
        text=note.text,
        results=results_by_agent(state),
        safety_in=state.get("safety_in"),
        safety_out=safety_out,
        issues=tuple(state.get("issues") or ()),
        review_items=items,
        config_hash=config_hash,
        latency_ms=latency_ms,
    )


def results_by_agent(state: Mapping[str, Any]) -> dict[str, AgentResult[Any]]:
    """``ChartReview.results``: each agent result of ``state`` under its agent's name (the registry's
    name for a registered agent's field, else the field, which is a user agent's node name)."""
    out: dict[str, AgentResult[Any]] = {}
    for fld, result in agent_results(state).items():
        spec = registry.for_field(fld)
        out[spec.name if spec is not None else fld] = result
    return out


__all__ = [
    "NodeSpec",
    "agent_node",
    "agent_results",
    "allowed",
    "context_of",
    "failure_reason",
    "guard_in",
    "guard_out",
    "isolated",
    "kg_lookup",
    "make_escalate",
    "make_review",
    "make_route",
    "needs",
    "results_by_agent",
    "review_from_state",
    "seen_note",
    "verify",
]
