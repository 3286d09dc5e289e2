"""The ICD-10-CM coding agent with the real embedded model, the embedded knowledge graph and the
CodiEsp-train models (the shipped ``icd-coder`` artifact): codes are graph nodes, negation and family history are respected, Excludes1 holds."""

from __future__ import annotations

import pytest

from medslm.agents.icd import IcdAgent, family_history_code
from medslm.records import AgentResult, CodeAssignment, Note

NOTES = {
    "present": "Admitted with community-acquired pneumonia. Known asthma, on inhaled salbutamol.",
    "negated": "Chest X-ray shows no pneumonia. Patient denies asthma.",
    "family": "Her mother had colon cancer at 60. The patient has essential hypertension.",
    "both_diabetes": "Type 1 diabetes mellitus on an insulin pump. An old letter says type 2 diabetes mellitus.",
    "nothing": "Patient seen today, doing well, follow-up in three months.",
}


@pytest.fixture(scope="module")
def agent(kg, embedded_lm) -> IcdAgent:
    return IcdAgent(model=embedded_lm, kg=kg).load()


@pytest.fixture(scope="module")
def results(agent) -> dict[str, AgentResult[list[CodeAssignment]]]:
    return {k: agent.run(Note(id=k, text=t), {}) for k, t in NOTES.items()}


def codes(result: AgentResult[list[CodeAssignment]]) -> set[str]:
    return {c.code for c in result.output}


def test_every_emitted_and_ranked_code_is_an_icd10cm_node(agent, kg, results) -> None:
    for r in results.values():
        for c in r.output:
            assert kg.validate(c.code).code == c.code
            assert c.description == kg.get(c.code, "ICD10CM").label
    # the whole ranking too (what MAP is computed on), not only what passed the threshold
    ranked = agent.code(NOTES["present"]).ranked
    assert len(ranked) > 10
    assert all(kg.get(c.code, "ICD10CM") is not None for c in ranked)


def test_present_findings_are_coded_with_evidence_spans(results) -> None:
    r = results["present"]
    assert {"J18.9", "J45.909"} <= codes(r), codes(r)
    text = NOTES["present"]
    by_code = {c.code: c for c in r.output}
    assert text[by_code["J18.9"].evidence[0].start : by_code["J18.9"].evidence[0].end].lower() == "pneumonia"
    assert "asthma" in text[by_code["J45.909"].evidence[0].start : by_code["J45.909"].evidence[0].end].lower()
    assert all(c.billable for c in r.output)


def test_negated_findings_are_not_coded(results) -> None:
    got = codes(results["negated"])
    assert not any(c.startswith(("J18", "J45")) for c in got), got


def test_family_history_gives_a_z_code_not_the_disease(results) -> None:
    got = codes(results["family"])
    assert "Z80.0" in got, got  # family history of malignant neoplasm of digestive organs
    assert not any(c.startswith(("C18", "C19", "C20", "C80")) for c in got), got
    assert "I10" in got  # the patient's own condition in the same note is coded


def test_excludes1_pair_keeps_one_code(kg, results) -> None:
    got = codes(results["both_diabetes"])
    diabetes = [c for c in got if c.startswith(("E10", "E11"))]
    assert len(diabetes) == 1, got
    assert not any(kg.excluded_together(a, b) for a in got for b in got if a < b)


def test_select_resolves_an_excludes1_pair_towards_the_named_code(agent, kg) -> None:
    """A narrow unit test of the rule on a hand-made ranking (the ranker-only code scores higher)."""
    assert kg.excluded_together("E10.9", "E11.9")

    def item(code: str, score: float) -> CodeAssignment:
        c = kg.get(code, "ICD10CM")
        return CodeAssignment(code=code, description=c.label, billable=True, confidence=score, score=score,
                              evidence=())

    ranked = [item("E11.9", 0.9), item("E10.9", 0.8), item("I10", 0.7)]
    agent_no_ev = IcdAgent(model=None, kg=kg, require_evidence=False)
    chosen = agent_no_ev.select(ranked, {}, 0.5, lexical={"E10.9", "I10"})
    assert [c.code for c in chosen] == ["E10.9", "I10"]
    # without lexicon support for either, the better-scored one stays
    assert [c.code for c in agent_no_ev.select(ranked, {}, 0.5)] == ["E11.9", "I10"]


def test_confidence_comes_from_the_models(results) -> None:
    confs = [c.confidence for r in results.values() for c in r.output]
    assert len(set(confs)) >= 3, confs
    note_confs = {round(r.confidence, 4) for r in results.values()}
    assert len(note_confs) >= 3, note_confs
    assert results["present"].signals["candidates"] > results["present"].signals["emitted"]


def test_the_slm_chooses_among_a_mentions_codes_only(agent, kg) -> None:
    text = "Acute myocardial infarction on admission."
    evidence = agent.evidence(text)
    scored = {c: 0.5 for c in evidence}
    probs, calls, tokens, _ = agent._disambiguate(text, evidence, scored)
    assert calls >= 1 and tokens > 0
    assert set(probs) <= set(evidence)  # options are the mention's own graph codes, nothing else
    assert all(kg.get(c, "ICD10CM") is not None for c in probs)
    assert abs(sum(probs.values()) - 1.0) < 1e-3


def test_family_history_table() -> None:
    assert family_history_code("C50.919") == "Z80.3"
    assert family_history_code("E11.9") == "Z83.3"
    assert family_history_code("I63.9") == "Z82.3"
    assert family_history_code("R05.9") is None


def test_the_chart_review_graph_builds_this_agent() -> None:
    from medslm.graphs.context import make_agent

    assert isinstance(make_agent("icd", None), IcdAgent)


def test_without_the_trained_coder_the_agent_ranks_by_the_lexicon(kg) -> None:
    agent = IcdAgent(model=None, kg=kg, coder=None)
    r = agent.run(Note(id="nodata", text=NOTES["present"]), {})
    assert agent.coder is None
    assert "J18.9" in codes(r)
    assert all(kg.get(c.code, "ICD10CM") is not None for c in r.output)
