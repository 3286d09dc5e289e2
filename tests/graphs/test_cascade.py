"""The cascade's wiring in the running graph: calibrated routing, budget refunds and max_cost, escalation
with the graph state, the context's knowledge graph in every agent, and an ensemble node's arbiter.

Language models here are small fakes of the ``LanguageModel`` protocol (unit tests of routing logic);
the agents, the route / escalate / review nodes, the Escalator and the queue are the real ones.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from medslm.agents.icd import IcdAgent
from medslm.graphs.context import ReviewContext
from medslm.graphs.ensemble import Ensemble
from medslm.graphs.pipeline import Pipeline
from medslm.models.base import ChoiceScores, ModelInfo
from medslm.records import AgentResult, Note, Route, TriageResult
from medslm.routers import Budget, EscalationPolicy, Escalator
from medslm.settings import Settings

CHEST = Note(id="c1", text="58F with chest pain radiating to the jaw. BP 150/90, HR 96. History of hypertension.")


class FakeLM:
    """Scores choices with a fixed preference (the option ``prefer`` gets most of the mass)."""

    def __init__(self, name: str, prefer: str | None = None) -> None:
        self.info = ModelInfo(id=name, backend="test")
        self.prefer = prefer
        self.calls: list[list[dict[str, str]]] = []

    def score_choices(self, messages: list[dict[str, str]], options: list[str], **kw: Any) -> ChoiceScores:
        self.calls.append(messages)
        best = self.prefer if self.prefer in options else options[0]
        return ChoiceScores(options=tuple(options), logprobs=tuple(0.0 if o == best else -3.0 for o in options),
                            tokens_in=50, latency_s=0.001, model=self.info)


class Fixed:
    """A member agent that answers one triage level (what an ensemble member is to the ensemble)."""

    name = "triage"

    def __init__(self, level: int, confidence: float = 0.7) -> None:
        self.level, self.confidence = level, confidence

    def run(self, note: Note, state: Any = None) -> AgentResult[TriageResult]:
        return AgentResult[TriageResult](agent="triage", output=TriageResult(level=self.level),
                                         confidence=self.confidence, signals={"choice_prob": self.confidence})


def _ensemble_graph(ens: Ensemble) -> Any:
    def routed(route: Route):
        return lambda s: any(r == route for r in (s.get("routes") or {}).values())

    return (Pipeline(name="ens").add("guard_in").add(ens).add("route")
            .add("escalate", when=routed(Route.ESCALATE)).add("review", when=routed(Route.REVIEW)).compile())


def test_an_ensemble_that_disagrees_reaches_the_llm_arbiter(tmp_path) -> None:
    ens = Ensemble("triage", [Fixed(2), Fixed(3), Fixed(4)], min_agree=2)
    arbiter = FakeLM("arbiter-llm", prefer="2")  # picks the second distinct answer: level 3
    ctx = ReviewContext(settings=Settings(escalation_model="openai:http://127.0.0.1:9/v1#unused"),
                        escalator=Escalator(model=arbiter, teacher_store=False), queue_path=tmp_path / "q.sqlite",
                        guardian=_NoGuard())
    state = _ensemble_graph(ens).invoke({"note": CHEST}, context=ctx)
    r = state["triage"]
    assert r.output.level == 3 and r.provenance.escalated and r.provenance.model_id == "arbiter-llm"
    assert r.route == Route.ACCEPT and r.signals["arbiter_candidates"] == 3.0
    assert "1. " in arbiter.calls[0][1]["content"] and "3. " in arbiter.calls[0][1]["content"]
    # 2 of 3 agree: accepted without the arbiter
    arbiter.calls.clear()
    state = _ensemble_graph(Ensemble("triage", [Fixed(2), Fixed(4), Fixed(2, 0.9)], min_agree=2)).invoke(
        {"note": CHEST}, context=ctx)
    assert state["triage"].output.level == 2 and state["triage"].route == Route.ACCEPT and not arbiter.calls
    assert state["triage"].signals["ensemble_agreement"] == pytest.approx(2 / 3)


def test_an_unsure_arbiter_or_no_llm_sends_the_disagreement_to_a_human(tmp_path) -> None:
    ens = Ensemble("triage", [Fixed(2), Fixed(3), Fixed(4)], min_agree=2, arbiter_threshold=0.99)
    ctx = ReviewContext(settings=Settings(escalation_model="openai:http://127.0.0.1:9/v1#unused"),
                        escalator=Escalator(model=FakeLM("arb", prefer="1"), teacher_store=False),
                        queue_path=tmp_path / "q.sqlite", guardian=_NoGuard())
    state = _ensemble_graph(ens).invoke({"note": CHEST}, context=ctx)
    assert state["routes"]["triage"] == Route.REVIEW and state["review_items"]
    ctx2 = ReviewContext(queue_path=tmp_path / "q2.sqlite", guardian=_NoGuard())  # no LLM configured
    state = _ensemble_graph(ens).invoke({"note": CHEST}, context=ctx2)
    assert state["routes"]["triage"] == Route.REVIEW and "no escalation model" in state["route_reasons"]["triage"]


class _NoGuard:
    """guard_in passes everything (these tests are about routing)."""

    def check_input(self, note: Note) -> Any:
        from medslm.records import SafetyVerdict

        return SafetyVerdict(allowed=True)

    def fence(self, text: str, verdict: Any = None) -> str:
        return text

    def check_output(self, *a: Any, **k: Any) -> Any:
        from medslm.records import SafetyVerdict

        return SafetyVerdict(allowed=True)


def test_a_failed_escalation_is_refunded_and_goes_to_review(tmp_path) -> None:
    """A dead endpoint: each note's escalation fails, its budget unit comes back, the item goes to review."""
    s = Settings(escalation_model="openai:http://127.0.0.1:9/v1#none?server=vllm&timeout=2&retries=1",
                 thresholds={"triage": 1.0})
    budget = Budget(max_escalations=1)
    policy = EscalationPolicy(s.thresholds, budget, llm_available=True)
    ctx = ReviewContext(settings=s, policy=policy, queue_path=tmp_path / "q.sqlite", guardian=_NoGuard())
    from medslm.agents.triage import TriageAgent

    graph = (Pipeline(name="t", settings=s).add("guard_in").add(TriageAgent(model="embedded", use_slm=False))
             .add("route").add("escalate").add("review").compile())
    for i in range(2):  # with max 1 escalation, the second note escalates only because the first was refunded
        state = graph.invoke({"note": Note(id=f"n{i}", text=CHEST.text)}, context=ctx)
        assert state["routes"]["triage"] == Route.REVIEW
        assert state["route_reasons"]["triage"] == "review: escalation failed (EndpointError)"
    assert budget.used == 0 and policy.stats.calls["triage"]["escalate"] == 2


def test_max_cost_stops_escalating_once_spent(tmp_path) -> None:
    s = Settings(escalation_model="openai:http://127.0.0.1:9/v1#unused", thresholds={"triage": 1.0})
    budget = Budget(max_cost=0.04)
    policy = EscalationPolicy(s.thresholds, budget, llm_available=True)
    esc = Escalator(model=FakeLM("llm", prefer="2"), teacher_store=False, cost_per_1k_tokens_in=1.0, policy=policy)
    ctx = ReviewContext(settings=s, policy=policy, escalator=esc, queue_path=tmp_path / "q.sqlite",
                        guardian=_NoGuard())
    from medslm.agents.triage import TriageAgent

    graph = (Pipeline(name="t", settings=s).add("guard_in").add(TriageAgent(model=FakeLM("slm", prefer="4")))
             .add("route").add("escalate").add("review").compile())
    first = graph.invoke({"note": Note(id="a", text=CHEST.text)}, context=ctx)
    assert first["triage"].provenance.escalated and budget.cost == pytest.approx(0.05)  # 50 tokens in at 1/1k
    second = graph.invoke({"note": Note(id="b", text=CHEST.text + " Afebrile.")}, context=ctx)
    assert not second["triage"].provenance.escalated and second["routes"]["triage"] == Route.REVIEW
    assert budget.used == 1


class SpyIcd(IcdAgent):
    """The real ICD agent, recording which entities each run was given."""

    seen: ClassVar[list[tuple[str, Any]]] = []

    def run(self, note: Note, state: Any = None) -> Any:
        ents = (state or {}).get("entities")
        SpyIcd.seen.append((getattr(self.model, "info", None) and self.model.info.id, ents))
        return super().run(note, state)


def test_an_escalated_icd_run_sees_the_ner_entities(tmp_path, kg) -> None:
    SpyIcd.seen.clear()
    s = Settings(escalation_model="openai:http://127.0.0.1:9/v1#unused", thresholds={"icd": 1.0},
                 models={"ner": "rules", "icd": "rules"})
    llm = FakeLM("big-llm")
    ctx = ReviewContext(settings=s, kg=kg, escalator=Escalator(model=llm, teacher_store=False, settings=s),
                        queue_path=tmp_path / "q.sqlite", guardian=_NoGuard())
    from medslm.agents.ner import NerAgent

    graph = (Pipeline(name="icd", settings=s).add("guard_in").add(NerAgent(model=None, kg=kg))
             .add(SpyIcd(model=None, kg=kg)).add("route").add("escalate").add("review").compile())
    state = graph.invoke({"note": CHEST}, context=ctx)
    assert state["codes"].provenance.escalated and state["codes"].provenance.model_id == "big-llm"
    _, (model_id, escalated_saw) = SpyIcd.seen
    assert model_id == "big-llm" and escalated_saw is not None
    assert [e.text for e in escalated_saw.output] == [e.text for e in state["entities"].output]
    assert any("chest pain" in e.text for e in escalated_saw.output)


def test_the_contexts_knowledge_graph_reaches_every_agent_that_takes_one(kg) -> None:
    mine = kg.with_sources()  # another graph object over the same terminologies
    ctx = ReviewContext(kg=mine)
    assert ctx.agent("icd").kg is mine and ctx.agent("ner").kg is mine
    assert ReviewContext().agent("icd").kg is not mine
