"""Escalation policy and budget (routing logic: hand-made results are enough here)."""

from __future__ import annotations

import threading

import pytest

from medslm.errors import ConfigurationError
from medslm.records import AgentResult, Provenance, Route
from medslm.routers import Budget, EscalationPolicy, EscalationStats, choose_threshold, note_escalation_rate
from medslm.settings import Settings


def res(agent: str, conf: float, escalated: bool = False) -> AgentResult[int]:
    return AgentResult[int](agent=agent, output=1, confidence=conf, provenance=Provenance(escalated=escalated))


def test_thresholds_per_agent_and_budget_spent_goes_to_review():
    policy = EscalationPolicy({"icd": 0.6, "triage": 0.7}, Budget(max_escalations=2))
    assert policy.decide(res("icd", 0.65)) is Route.ACCEPT
    assert policy.decide(res("triage", 0.65)) is Route.ESCALATE  # 0.65 < 0.7
    assert policy.decide(res("icd", 0.1)) is Route.ESCALATE
    assert policy.budget.used == 2 and policy.budget.remaining == 0
    assert policy.decide(res("icd", 0.1)) is Route.REVIEW  # budget spent
    assert policy.decide(res("icd", 0.9)) is Route.ACCEPT  # accepting costs nothing
    assert policy.decide(res("ner", 0.49)) is Route.REVIEW  # default threshold 0.5, budget spent


def test_llm_results_accepted_unless_llm_unsure_and_no_llm_means_review():
    policy = EscalationPolicy({"icd": 0.6}, llm_threshold=0.4)
    assert policy.decide(res("icd", 0.5, escalated=True)) is Route.ACCEPT
    assert policy.decide(res("icd", 0.3, escalated=True)) is Route.REVIEW
    assert policy.budget.used == 0
    humans = EscalationPolicy.from_settings(Settings(), {"icd": 0.6})
    assert humans.decide(res("icd", 0.1)) is Route.REVIEW
    llm = EscalationPolicy.from_settings(
        Settings(escalation_model="openai:http://127.0.0.1:1/v1#m", escalation_budget=1), {"icd": 0.6}
    )
    assert [llm.decide(res("icd", 0.1)) for _ in range(2)] == [Route.ESCALATE, Route.REVIEW]


def test_cost_budget_and_refund():
    b = Budget(max_cost=1.0)
    assert b.take() and b.take()
    b.charge(0.6)
    b.charge(0.5)
    assert b.spent and not b.take()
    b2 = Budget(max_escalations=1)
    assert b2.take() and not b2.take()
    b2.refund()
    assert b2.take()
    with pytest.raises(ConfigurationError, match="max_escalations must be >= 0"):
        Budget(max_escalations=-1)


def test_budget_is_exact_under_threads():
    b = Budget(max_escalations=50)
    granted = []

    def worker():
        for _ in range(40):
            if b.take():
                granted.append(1)

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(granted) == 50 == b.used


def test_per_call_and_per_note_rates():
    stats = EscalationStats()
    policy = EscalationPolicy({a: 0.5 for a in ("ner", "icd", "triage", "summarize")}, stats=stats)
    # 10 notes x 4 agents; each agent escalates on a different note -> 10 % per call, 40 % of notes
    for n in range(10):
        for k, agent in enumerate(("ner", "icd", "triage", "summarize")):
            policy.decide(res(agent, 0.2 if n == k else 0.9), note_id=f"n{n}")
    assert stats.call_rate(Route.ESCALATE) == pytest.approx(0.10)
    assert stats.call_rate(Route.ESCALATE, agent="icd") == pytest.approx(0.10)
    assert stats.note_rate(Route.ESCALATE) == pytest.approx(0.40)
    assert note_escalation_rate([0.1] * 4) == pytest.approx(0.3439)
    assert stats.as_dict()["notes"] == 10


def test_choose_threshold_meets_targets():
    # confidence i/100 is right iff i >= 30: accepting >= 0.30 gives 0 % error at 30 % escalation
    conf = [i / 100 for i in range(100)]
    ok = [i >= 30 for i in range(100)]
    t = choose_threshold(conf, ok, max_error=0.0)
    assert t.threshold == pytest.approx(0.30) and t.escalation_share == pytest.approx(0.30)
    assert t.accepted_error == 0.0
    t = choose_threshold(conf, ok, max_error=0.10)  # lowest threshold with <= 10 % errors
    assert t.accepted_error <= 0.10 and t.threshold == pytest.approx(0.23)  # 7 wrong of 77
    t = choose_threshold(conf, ok, max_escalation=0.15)
    assert t.escalation_share <= 0.15 and t.threshold == pytest.approx(0.15)
    t = choose_threshold(conf, ok, max_error=0.0, max_escalation=0.15)  # escalation cap wins
    assert t.threshold == pytest.approx(0.15) and t.accepted_error > 0
    with pytest.raises(ConfigurationError, match="needs a target"):
        choose_threshold(conf, ok)


def test_thresholds_from_settings_env_and_their_errors(monkeypatch):
    from medslm.errors import ConfigurationError
    from medslm.settings import Settings, parse_thresholds

    monkeypatch.setenv("MEDSLM_THRESHOLDS", "icd=0.2, triage=0.9")
    s = Settings.from_env()
    assert s.thresholds == {"icd": 0.2, "triage": 0.9}
    assert s.config_hash() != Settings().config_hash()  # thresholds change routes, so results
    policy = EscalationPolicy.from_settings(s)
    assert policy.decide(res("icd", 0.3)) is Route.ACCEPT  # 0.3 >= 0.2
    assert policy.decide(res("triage", 0.8)) is Route.REVIEW  # no LLM configured: review
    assert policy.decide(res("ner", 0.49)) is Route.REVIEW  # default 0.5
    for bad in ("icd", "icd=1.5", "=0.3", "icd=high"):
        with pytest.raises(ConfigurationError, match="AGENT=VALUE"):
            parse_thresholds([bad])
