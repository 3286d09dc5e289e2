"""The triage agent with the real shipped models (the fine-tuned triage-slm specialist + the acuity model):
levels, red flags, spans, the finding that drove the level, the under-triage trade-off."""

from __future__ import annotations

import pytest

from medslm.agents.red_flags import find_red_flags, is_negated
from medslm.agents.triage import TriageAgent, combine, cost_matrix, decide
from medslm.errors import ConfigurationError
from medslm.records import AgentResult, Note, TriageResult

STEMI = Note(id="t-stemi", text=(
    "67-year-old male arrived by ambulance. Chief complaint: crushing chest pain radiating to the left arm, "
    "diaphoretic. BP 85/50, HR 124, RR 26, SpO2 89%."))
SORE_THROAT = Note(id="t-throat", text=(
    "25-year-old female walked in. Chief complaint: sore throat for 2 days. Mental status: alert. "
    "No pain. BP 118/76, HR 78, RR 16, BT 36.9 C, SpO2 99%."))
STROKE = Note(id="t-stroke", text=(
    "72-year-old woman, sudden left-sided weakness and slurred speech since 1 hour. BP 178/95, HR 84, "
    "SpO2 97%. Alert."))
DENIES = Note(id="t-denies", text=(
    "40-year-old man walked in with an ankle sprain after a fall. Denies chest pain, no facial droop. "
    "BP 125/80, HR 76, RR 16, SpO2 99%."))


@pytest.fixture(scope="module")
def triage_agent() -> TriageAgent:
    return TriageAgent()


@pytest.fixture(scope="module")
def triage_results(triage_agent) -> dict[str, AgentResult[TriageResult]]:
    return {n.id: triage_agent.run(n, {}) for n in (STEMI, SORE_THROAT, STROKE, DENIES)}


def test_unstable_chest_pain_is_level_2_or_more_urgent_with_flags_and_spans(triage_results) -> None:
    r = triage_results["t-stemi"]
    assert r.agent == "triage"
    assert r.output.level <= 2
    names = {f.name for f in r.output.red_flags}
    assert {"hypoxia", "hypotension", "chest_pain_ischaemic"} <= names
    hyp = next(f for f in r.output.red_flags if f.name == "hypoxia")
    assert hyp.evidence[0].text_of(STEMI.text) == "SpO2 89%"
    assert any(s.text_of(STEMI.text) == "HR 124" for s in r.evidence)
    assert abs(sum(r.output.probabilities.values()) - 1) < 1e-3
    assert 0.0 <= r.confidence <= 1.0
    assert r.provenance.backend == "encoder" and "triage-slm" in (r.provenance.model_id or "")
    assert len(r.provenance.model_revision or "") == 12
    assert 30 < r.provenance.tokens_in <= 128
    assert "slm_level" in r.signals and "model_prob" in r.signals and r.signals["slm_weight"] >= 0
    # three level-2 flags: one names the driver, the others are listed with it
    d = r.output.driver
    assert d is not None and d.source == "red_flag" and d.finding in names
    assert d.evidence and all(STEMI.text[s.start : s.end] for s in d.evidence)
    assert "driven by red flag" in r.output.rationale


def test_minor_complaint_is_less_urgent_and_has_no_flags(triage_results) -> None:
    r = triage_results["t-throat"]
    assert r.output.level >= 4
    assert r.output.red_flags == ()
    assert r.output.level > triage_results["t-stemi"].output.level
    d = r.output.driver
    assert d is not None and d.source in ("acuity_model", "specialist", "cost")
    assert d.finding not in ("for", "with", "")  # a finding, never a stop word of the complaint


def test_the_specialist_reads_the_text(triage_agent) -> None:
    p = triage_agent.specialist_distribution([STEMI.text, SORE_THROAT.text])
    assert all(abs(sum(d.values()) - 1) < 1e-4 for d in p)
    expected = [sum(k * v for k, v in d.items()) for d in p]
    assert expected[0] < expected[1] - 0.5  # the unstable chest pain reads as more urgent than the sore throat


# realistic ED notes written for this test, in the forms the issue found under-triaged (ACS work-up, SI, DKA)
FRESH = {
    "acs": ("61M c/o substernal chest pressure x 40 min at rest, mild nausea. EKG done at triage, troponin sent, "
            "aspirin 324 mg given. HR 92, BP 150/88, RR 18, SpO2 97% RA. A&O x3.", "chest_pain"),
    "si": ("29F brought in by her roommate. States she has been thinking about killing herself and has pills at "
           "home. Calm, cooperative. BP 118/72, HR 88, RR 14, SpO2 99%, T 36.8.", "suicidal"),
    "dka": ("19 y/o with type 1 diabetes, vomiting since last night, abdominal pain. Fingerstick glucose HI, large "
            "ketones in urine. HR 118, RR 28 deep breaths, BP 104/66, T 37.2.", "dka"),
}


@pytest.mark.parametrize("key", sorted(FRESH))
def test_notes_the_issue_found_under_triaged_are_level_2_or_more_urgent(triage_agent, key) -> None:
    text, flag = FRESH[key]
    r = triage_agent.run(Note(id=f"fresh-{key}", text=text), {})
    assert r.output.level <= 2
    assert r.output.driver is not None and r.output.driver.source == "red_flag"
    assert any(f.name.startswith(flag) or (flag == "dka" and f.name == "hyperglycemia_ketosis")
               for f in r.output.red_flags)


def test_a_generative_model_can_still_score_the_levels(embedded_lm) -> None:
    r = TriageAgent(model=embedded_lm).run(SORE_THROAT, {})
    assert r.provenance.backend == "transformers" and r.provenance.tokens_in > 50 and r.provenance.prompt_hash
    assert "slm_level" in r.signals and 1 <= r.output.level <= 5


def test_stroke_signs_cap_the_level(triage_results) -> None:
    r = triage_results["t-stroke"]
    assert r.output.level <= 2
    flag = next(f for f in r.output.red_flags if f.name == "stroke_signs")
    assert flag.evidence[0].text_of(STROKE.text).lower() in {"left-sided weakness", "slurred speech"}


def test_negated_findings_raise_no_flag(triage_results) -> None:
    r = triage_results["t-denies"]
    assert {f.name for f in r.output.red_flags}.isdisjoint({"chest_pain_ischaemic", "stroke_signs"})
    assert r.output.level >= 3


def test_confidence_is_computed_not_constant(triage_results) -> None:
    confs = {round(r.confidence, 6) for r in triage_results.values()}
    assert len(confs) > 1


def test_under_triage_cost_moves_the_decision_toward_urgency() -> None:
    p = {1: 0.0, 2: 0.3, 3: 0.0, 4: 0.7, 5: 0.0}
    assert decide(p, (), under_triage_cost=1.0)[0] == 4
    assert decide(p, (), under_triage_cost=5.0)[0] == 2
    C = cost_matrix(3.0)
    assert C[1][3] == 6.0 and C[3][1] == 2.0  # true 2 called 4 (under) vs true 4 called 2 (over)


def test_red_flag_cap_wins_over_a_confident_model() -> None:
    flags = find_red_flags("SpO2 84% on room air")
    assert flags and flags[0].name == "hypoxia" and flags[0].max_level == 2
    level, sig = decide({5: 0.99, 4: 0.01}, flags, under_triage_cost=1.0)
    assert level == 2 and sig["flag_cap"] == 2


def test_combine_is_a_product_of_experts() -> None:
    p = combine({1: 0.5, 2: 0.5}, {1: 0.9, 2: 0.1}, 1.0)
    assert p[1] == pytest.approx(0.9, abs=1e-6)
    assert combine({1: 0.5, 2: 0.5}, {1: 0.9, 2: 0.1}, 0.0)[1] == pytest.approx(0.5, abs=1e-6)


def test_is_negated_scopes_to_the_clause() -> None:
    t = "No fever. Chest pain since morning."
    assert not is_negated(t, t.index("Chest"))
    t2 = "Denies fever, chills or chest pain."
    assert is_negated(t2, t2.index("chest"))


def test_bad_costs_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="under_triage_cost"):
        TriageAgent(under_triage_cost=0)


def test_rules_and_model_only_without_a_language_model() -> None:
    r = TriageAgent(use_slm=False).run(STEMI, {})
    assert r.output.level <= 2 and r.provenance.model_id is None and "slm_level" not in r.signals


def test_ktas_notes_from_public_data(data_dir, triage_agent) -> None:
    from medslm.evals.triage import read_ktas

    rows = read_ktas(data_dir, limit=40)
    assert all("Diagnosis" not in r["note"] and str(r["KTAS_RN"]) not in r["note"][-3:] for r in rows)
    # notes with an unresponsive patient carry the flag and an urgent level
    for r in rows:
        if r["Mental"] == "4":
            res = triage_agent.run(Note(id=r["id"], text=r["note"]), {})
            assert res.output.level == 1
    res = [TriageAgent(use_slm=False).run(Note(id=r["id"], text=r["note"]), {}).output.level for r in rows]
    agree = sum(a == r["expert"] for a, r in zip(res, rows, strict=True)) / len(rows)
    assert agree > 0.4  # in-sample for the shipped model; cross-validated figures come from evals
