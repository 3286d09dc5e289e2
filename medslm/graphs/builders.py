"""Ready-made graphs (``chart_review``, ``cohort``, ``ed_queue``, ``triage_rules``) and ``review`` for one note.

Each builder returns a compiled LangGraph graph made with :class:`~medslm.graphs.pipeline.Pipeline`;
building is instant (no model loads until the first note). ``medslm review --graph module:build``
accepts any function like these: ``build(settings) -> compiled graph``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from importlib import import_module
from typing import Any

from medslm import registry
from medslm.errors import ConfigurationError, NoteError, UnknownNameError
from medslm.graphs.context import ReviewContext
from medslm.graphs.nodes import default_context, failure_reason, review_from_state
from medslm.graphs.pipeline import Pipeline
from medslm.records import ChartReview, Note, ReviewStatus, Route
from medslm.settings import Settings


def _settings(settings: Settings | None, overrides: Mapping[str, Any]) -> tuple[Settings, dict[str, Any]]:
    """Split ``overrides`` into per-role model specs (``ner="..."``), Settings fields and compile options."""
    s = settings or Settings()
    roles = registry.roles()
    models = {k: v for k, v in overrides.items() if k in roles}
    fields = {k: v for k, v in overrides.items() if k in Settings.model_fields}
    rest = {k: v for k, v in overrides.items() if k not in models and k not in fields}
    if fields:
        s = s.model_copy(update=fields)
    if models:
        s = s.with_models(**{k: v for k, v in models.items() if isinstance(v, str)})
    return s, rest


def agent_stages(specs: Sequence[registry.AgentSpec]) -> list[list[registry.AgentSpec]]:
    """The agents in stages: each after every agent whose field it reads (required or optional).

    For medslm's agents: ``[[ner], [icd, triage, summarize, …]]``; registration order within a stage.
    """
    fields = {s.field: s.name for s in specs}
    depth: dict[str, int] = {}

    def level(s: registry.AgentSpec, seen: tuple[str, ...] = ()) -> int:
        if s.name not in depth:
            if s.name in seen:
                from medslm.errors import GraphContractError

                raise GraphContractError(f"agents {', '.join(seen)} read each other's fields in a cycle")
            ups = [by_name[fields[f]] for f in (*s.reads, *s.optional_reads) if f in fields and fields[f] != s.name]
            depth[s.name] = 1 + max((level(u, (*seen, s.name)) for u in ups), default=-1)
        return depth[s.name]

    by_name = {s.name: s for s in specs}
    stages: dict[int, list[registry.AgentSpec]] = {}
    for s in specs:
        stages.setdefault(level(s), []).append(s)
    return [stages[k] for k in sorted(stages)]


def chart_review_pipeline(settings: Settings | None = None, *, parallel: bool | None = None,
                          agents: Sequence[str] | None = None, **overrides: Any) -> Pipeline:
    """guard_in → ner → {icd, triage, summarize, …} → verify → route → escalate? → review? → guard_out.

    The agents are those of the registry with ``chart_review=True`` (or ``agents``, names in any order),
    each after the agents whose fields it reads. ``overrides``: per-role model specs
    (``summarize="openai:http://…#m"``) or Settings fields (``escalation_model=…``). Insert your own
    nodes with :meth:`Pipeline.insert`. ``parallel``: the agents of a stage as parallel branches.
    Default: only when one of them calls an endpoint (``openai:``), whose requests then overlap. Local
    models share the CPU and one model per process, so branches gain nothing there and LangGraph's
    thread pool costs ~5 % per note on 2 cores (bench/runner.py); they then run one after the other.
    """
    s, rest = _settings(settings, overrides)
    if rest:
        raise UnknownNameError("chart_review option", next(iter(rest)), [*registry.roles(), *Settings.model_fields])
    specs = ([registry.get(n) for n in agents] if agents is not None
             else [a for a in registry.specs() if a.chart_review])
    stages = agent_stages(specs)
    if parallel is None:
        parallel = any(str(s.model_for(a.role)).startswith("openai:") for st in stages[1:] for a in st)
    pipe = Pipeline(name="chart_review", settings=s).add("guard_in")
    for st in stages:
        if parallel and len(st) > 1:
            pipe = pipe.add(*(a.name for a in st))
        else:
            for a in st:
                pipe = pipe.add(a.name)
    return (
        pipe
        .add("verify")
        .add("route")
        .add("escalate", when=_routed(Route.ESCALATE))
        .add("review", when=_routed(Route.REVIEW))
        .add("guard_out")
    )


def chart_review(settings: Settings | None = None, *, checkpointer: Any = None, parallel: bool | None = None,
                 agents: Sequence[str] | None = None, **overrides: Any) -> Any:
    """The full chart-review graph, compiled (instant: no model loads until the first note)."""
    return chart_review_pipeline(settings, parallel=parallel, agents=agents,
                                 **overrides).compile(checkpointer=checkpointer)


def cohort(settings: Settings | None = None) -> Any:
    """NER only (negation-aware): guard_in → ner. Build a patients × concepts table from the reviews."""
    return Pipeline(name="cohort", settings=settings).add("guard_in").add("ner").compile()


class LevelPolicy:
    """ED-queue policy: send triage to review when the level is urgent (≤ ``max_level``) or unsure."""

    def __init__(self, max_level: int = 2, min_confidence: float = 0.6) -> None:
        self.max_level, self.threshold = max_level, min_confidence

    def decide(self, result: Any) -> Route:
        if result.output.level <= self.max_level or result.confidence < self.threshold:
            return Route.REVIEW
        return Route.ACCEPT


def ed_queue(settings: Settings | None = None, *, max_level: int = 2, use_slm: bool = True) -> Any:
    """ED queue: guard_in → triage → review when level ≤ ``max_level`` or unsure."""
    return (
        Pipeline(name="ed_queue", settings=settings)
        .add("guard_in")
        .add("triage", policy=LevelPolicy(max_level), use_slm=use_slm)
        .add("route")
        .add("review", when=_routed(Route.REVIEW))
        .compile()
    )


def triage_rules(settings: Settings | None = None) -> Any:
    """A cheap graph with no language model (rules + fitted acuity model): for load and crash tests."""
    return (
        Pipeline(name="triage_rules", settings=settings)
        .add("guard_in")
        .add("triage", use_slm=False)
        .add("verify")
        .compile()
    )


def _routed(route: Route) -> Any:
    def check(state: Mapping[str, Any]) -> bool:
        return any(r == route for r in (state.get("routes") or {}).values())

    check.__name__ = f"routed_{route.value}"
    return check


# --------------------------------------------------------------------------- graphs by spec
#: What ``medslm review`` runs without ``--graph``.
DEFAULT_GRAPH = "medslm.graphs.builders:chart_review"


def load_graph(spec: Any, settings: Settings | None = None) -> Any:
    """A compiled graph from a graph, a Pipeline, a builder function or a ``"module:attr"`` spec."""
    if spec is None:
        spec = DEFAULT_GRAPH
    if isinstance(spec, str):
        if ":" not in spec:
            raise ConfigurationError(f"graph spec {spec!r} must be 'module:function' (e.g. {DEFAULT_GRAPH!r})")
        mod_name, attr = spec.split(":", 1)
        try:
            module = import_module(mod_name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import graph module {mod_name!r}: {exc}") from None
        if not hasattr(module, attr):
            known = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            raise UnknownNameError(f"graph builder in {mod_name}", attr, known)
        spec = getattr(module, attr)
    if hasattr(spec, "compile") and hasattr(spec, "describe"):  # a Pipeline
        return spec.compile()
    if hasattr(spec, "invoke"):
        return spec
    if callable(spec):
        try:
            return spec(settings)
        except TypeError:
            return spec()
    raise ConfigurationError(f"cannot make a graph of {type(spec).__name__}")



# --------------------------------------------------------------------------- one note
def as_note(note_or_text: Note | str | bytes, note_id: str | None = None) -> Note:
    """A :class:`Note` from a note, a string or UTF-8 bytes (raises :class:`NotTextError` for binary)."""
    if isinstance(note_or_text, Note):
        return note_or_text
    if isinstance(note_or_text, bytes | bytearray):
        nid = note_id or "note-" + hashlib.sha256(bytes(note_or_text)).hexdigest()[:12]
        return Note.from_bytes(nid, bytes(note_or_text))
    if isinstance(note_or_text, str):
        nid = note_id or "note-" + hashlib.sha256(note_or_text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return Note(id=nid, text=note_or_text)
    raise TypeError(f"review() takes a Note, str or bytes, not {type(note_or_text).__name__}")


def graph_settings(graph: Any) -> Settings:
    return getattr(graph, "medslm_settings", None) or Settings()


def failed_review(note_id: str, reason: str, *, config_hash: str | None = None, sha256: str | None = None) -> ChartReview:
    return ChartReview(note_id=note_id, status=ReviewStatus.FAILED, reason=reason, note_sha256=sha256,
                       config_hash=config_hash)


def run_note(graph: Any, note: Note, context: ReviewContext, config: Mapping[str, Any] | None = None,
             config_hash: str | None = None) -> ChartReview:
    """Run ``graph`` on one note; any crash becomes a ``failed`` review (never an exception)."""
    t0 = time.perf_counter()
    config_hash = config_hash or context.config_hash
    try:
        state = graph.invoke({"note": note}, config=dict(config) if config else None, context=context)
    except Exception as exc:  # noqa: BLE001 - per-note isolation
        return failed_review(note.id, f"graph: {failure_reason(exc)}", config_hash=config_hash, sha256=note.sha256)
    return review_from_state(state, config_hash=config_hash,
                             latency_ms=round((time.perf_counter() - t0) * 1000, 3))


def review(
    note_or_text: Note | str | bytes,
    graph: Any = None,
    *,
    context: ReviewContext | None = None,
    note_id: str | None = None,
) -> ChartReview:
    """Review one note with ``graph`` (default: :func:`chart_review`); never raises for a bad note."""
    graph = graph if graph is not None else _default_graph()
    context = context or default_context(graph_settings(graph))
    try:
        note = as_note(note_or_text, note_id)
    except NoteError as exc:
        nid = note_id or "note-" + hashlib.sha256(bytes(note_or_text) if isinstance(note_or_text, bytes | bytearray)
                                                  else b"").hexdigest()[:12]
        return failed_review(nid, f"{exc.reason_code}: {exc}", config_hash=context.config_hash)
    return run_note(graph, note, context)


_GRAPH: Any = None


def _default_graph() -> Any:
    global _GRAPH
    if _GRAPH is None:
        _GRAPH = chart_review()
    return _GRAPH


__all__ = [
    "DEFAULT_GRAPH",
    "LevelPolicy",
    "agent_stages",
    "as_note",
    "chart_review",
    "chart_review_pipeline",
    "cohort",
    "ed_queue",
    "load_graph",
    "review",
    "run_note",
    "triage_rules",
]
