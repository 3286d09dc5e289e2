"""Run-scoped components of a graph run, passed as LangGraph's runtime context.

A compiled graph holds no model, terminology or queue: ``graph.invoke(state, context=ReviewContext(...))``
hands them to every node through ``Runtime.context``. Each component is built on first use, so
making a context is instant and a graph that never runs ``icd`` never loads the knowledge graph.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medslm import registry
from medslm.agents.base import Agent
from medslm.records import AgentResult, Note, Route, SafetyVerdict
from medslm.settings import Settings

if TYPE_CHECKING:
    from medslm.routers.review_queue import ReviewQueue


# What the nodes need of each component (medslm's classes fit; so does a test's or a user's own).
class GuardianLike(Protocol):
    """Input and output screening (:class:`medslm.safety.Guardian`)."""

    def check_input(self, note: Note) -> SafetyVerdict: ...

    def fence(self, text: str, verdict: SafetyVerdict | None = None) -> str: ...

    def check_output(self, note_text: str, *, summary_text: str | None = None, codes: Iterable[Any] = (),
                     input_verdict: SafetyVerdict | None = None,
                     code_validator: Callable[[str], bool] | None = None) -> SafetyVerdict: ...


class KnowledgeBase(Protocol):
    """Code lookups of ``verify`` and ``guard_out`` (:class:`medslm.knowledge.KnowledgeGraph`)."""

    def get(self, code: str, system: str | None = None) -> Any: ...

    def validate(self, code: str, system: str = "ICD10CM") -> Any: ...

    def is_billable(self, code: str) -> bool: ...


class RoutingPolicy(Protocol):
    """Accept / escalate / review one result (:class:`medslm.routers.EscalationPolicy`; ``decide`` may
    also take ``note_id=``)."""

    def decide(self, result: AgentResult[Any]) -> Route: ...


class Escalating(Protocol):
    """Re-runs a result on the large model (:class:`medslm.routers.Escalator`)."""

    def escalate(self, agent_name: str, note: Note, result: AgentResult[Any],
                 constraint_or_agent: Any) -> AgentResult[Any]: ...


def make_agent(name: str, model: Any = "embedded", *, artifacts: Path | str | None = None, **options: Any) -> Any:
    """A registered agent (:mod:`medslm.registry`) on ``model`` (a spec or a LanguageModel); loads nothing yet.

    ``artifacts``: a folder of retrained artifacts, passed to agents that load trained components.
    """
    return registry.get(name).build(model, **with_artifacts(registry.get(name), artifacts, options))


def with_artifacts(agent_spec: Any, artifacts: Path | str | None, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus ``artifacts=`` when the agent's class takes it and a folder is configured."""
    import inspect

    if artifacts is None or "artifacts" in options:
        return options
    try:
        params = inspect.signature(registry.resolve(agent_spec.factory)).parameters
    except (TypeError, ValueError):
        return options
    return {"artifacts": str(artifacts), **options} if "artifacts" in params else options


@dataclass
class ReviewContext:
    """What nodes share during a run: settings, agents, guardian, KG, escalation policy and review queue.

    Pass ready-made components to override the defaults (a test's guardian, a job's queue). ``agents``
    maps a role (or a node name) to an agent object; missing roles are built from ``settings.models``.
    ``interactive=True`` makes the review node pause the graph with LangGraph's ``interrupt`` (needs a
    checkpointer; resume with ``Command(resume=...)``); otherwise review items go to the queue and the
    run goes on. ``serialize_agents`` (default) runs one agent at a time per context even where the graph
    fans out: on CPU, parallel branches only fight over the cores and share one model; turn it off when
    agents call remote endpoints, so that their requests overlap.
    """

    settings: Settings = field(default_factory=Settings)
    agents: dict[str, Agent[Any]] = field(default_factory=dict)
    guardian: GuardianLike | None = None
    kg: KnowledgeBase | None = None
    policy: RoutingPolicy | None = None
    escalator: Escalating | None = None
    queue: ReviewQueue | None = None
    queue_path: Path | None = None
    interactive: bool = False
    serialize_agents: bool = True
    #: the batch job's key (set by the runner); review items are keyed by it (default: the settings hash)
    job_key: str | None = None
    _agent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _note_locks: dict[Any, list[Any]] = field(default_factory=dict, repr=False, compare=False)

    def agent_slot(self, note: Any = None) -> Any:
        """A context manager held while an agent runs (a no-op when ``serialize_agents`` is off).

        With ``note`` (the note being reviewed), agents are serialised per note: the agents of one note run
        one at a time, while the notes a batch runner keeps in flight run side by side (their model calls
        then meet in one batch, see :mod:`medslm.models.batching`). Without it, one agent at a time in
        the whole context."""
        if not self.serialize_agents:
            return contextlib.nullcontext()
        if note is None:
            return self._agent_lock
        return self._note_slot((type(note).__name__, getattr(note, "id", None) or id(note)))

    @contextlib.contextmanager
    def _note_slot(self, key: Any) -> Iterator[None]:
        with self._lock:
            entry = self._note_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    self._note_locks.pop(key, None)

    @property
    def config_hash(self) -> str:
        return self.settings.config_hash()

    # ----------------------------------------------------------------- components, built on first use
    def agent(self, name: str, model: Any = None, options: dict[str, Any] | None = None) -> Agent[Any]:
        """The agent ``name`` on ``model`` (default: ``settings.model_for`` its role), one per context."""
        agent_spec = registry.get(name)
        spec = model if model is not None else self.settings.model_for(agent_spec.role)
        key = name if model is None and not options else f"{name}@{spec!r}@{sorted((options or {}).items())!r}"
        with self._lock:
            if key not in self.agents:
                self.agents[key] = agent_spec.build(
                    self._model(spec), **with_artifacts(agent_spec, self.settings.artifacts, options or {}))
            return self.agents[key]

    def _model(self, spec: Any) -> Any:
        """A spec as agents get it: models load with this run's settings only when the user allowed PHI
        to remote endpoints (otherwise every remote model de-identifies, the safe default)."""
        if isinstance(spec, str) and self.settings.allow_phi_to_remote and spec not in ("rules", "none"):
            from medslm.models.catalog import load_model

            return load_model(spec, settings=self.settings)
        return spec

    def get_guardian(self) -> GuardianLike:
        with self._lock:
            if self.guardian is None:
                from medslm.safety import Guardian

                spec = self.settings.model_for("guardian")
                # "rules": the guardian without a language model or spaCy NER (regular expressions only)
                rules = spec in ("rules", "none")
                arts = self.settings.artifacts
                self.guardian = Guardian(None if rules else self._model(spec), use_ner=not rules,
                                         max_chars=self.settings.max_note_chars,
                                         artifacts=str(arts) if arts is not None else None)
            return self.guardian

    def get_kg(self) -> KnowledgeBase:
        with self._lock:
            if self.kg is None:
                from medslm.knowledge import KnowledgeGraph

                self.kg = KnowledgeGraph.default()
            return self.kg

    def get_policy(self) -> RoutingPolicy:
        with self._lock:
            if self.policy is None:
                from medslm.routers import EscalationPolicy

                self.policy = EscalationPolicy.from_settings(self.settings)
            return self.policy

    def get_escalator(self) -> Escalating | None:
        """The escalator to the configured LLM, or None when no escalation model is configured."""
        with self._lock:
            if self.escalator is None and self.settings.escalation_model:
                from medslm.routers import Escalator

                self.escalator = Escalator(model=self.settings.escalation_model, settings=self.settings,
                                           policy=self.get_policy())
            return self.escalator

    def get_queue(self) -> ReviewQueue:
        with self._lock:
            if self.queue is None:
                from medslm.routers import ReviewQueue
                from medslm.routers.review_queue import default_queue_path

                self.queue = ReviewQueue(self.queue_path or default_queue_path(self.settings))
            return self.queue


__all__ = ["Escalating", "GuardianLike", "KnowledgeBase", "ReviewContext", "RoutingPolicy", "make_agent"]
