"""medslm.agents.medication on the real embedded model, the real drug vocabulary and RxNorm-format files.

Sentences here are written for these tests (not the attribute set of medslm/evals/data, which is only
scored, in test_attribute_set_figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medslm.agents.medication import ANSWER_SCHEMA, Medication, MedicationAgent, Medications
from medslm.records import ChartReview, Note, ReviewStatus

FIXTURES = Path(__file__).parents[1] / "knowledge" / "fixtures" / "rxnorm"


@pytest.fixture(scope="module")
def rules() -> MedicationAgent:
    return MedicationAgent(None)


def _by_drug(out: Medications) -> dict[str, Medication]:
    return {m.drug.lower(): m for m in out.medications}


def test_rules_attributes_status_and_spans(rules):
    text = ("Home meds: metoprolol 25 mg PO BID, furosemide 20 mg daily. Stopped naproxen last week. "
            "Vancomycin 1.5 g IV q12h for 10 days was started. Insulin held while NPO.")
    r = rules.run(Note(id="t1", text=text), {})
    meds = _by_drug(r.output)
    assert set(meds) == {"metoprolol", "furosemide", "naproxen", "vancomycin", "insulin"}
    m = meds["metoprolol"]
    assert (m.dose, m.unit, m.route, m.frequency, m.status) == ("25", "mg", "oral", "BID", "active")
    assert (meds["furosemide"].dose, meds["furosemide"].frequency, meds["furosemide"].route) == ("20", "daily", None)
    assert meds["naproxen"].status == "stopped" and meds["insulin"].status == "held"
    v = meds["vancomycin"]
    assert (v.dose, v.unit, v.route, v.frequency, v.duration, v.status) == ("1.5", "g", "IV", "q12h", "for 10 days", "new")
    for med in r.output.medications:  # every evidence span is the note's own text
        assert text[med.start:med.end] == med.drug
        labels = {s.label: text[s.start:s.end] for s in med.evidence}
        assert labels["drug"] == med.drug
        if med.dose:
            assert labels["dose"].startswith(med.dose)
    assert meds["vancomycin"].concept is not None and meds["vancomycin"].concept.id == "DRUGBANK:DB00512"
    assert r.provenance.model_id is None and r.provenance.tokens_out == 0  # rules only


def test_allergies_are_kept_apart_and_nkda(rules):
    r = rules.run(Note(id="t2", text="Allergic to amoxicillin (rash). Takes sertraline 100 mg daily."), {})
    assert [a.substance for a in r.output.allergies] == ["amoxicillin"]
    assert list(_by_drug(r.output)) == ["sertraline"] and not r.output.no_known_allergies
    r2 = rules.run(Note(id="t3", text="NKDA. Aspirin 81 mg daily."), {})
    assert r2.output.no_known_allergies and not r2.output.allergies
    assert _by_drug(r2.output)["aspirin"].dose == "81"


def test_no_drug_no_result(rules):
    r = rules.run(Note(id="t4", text="Patient walked two miles today and feels well."), {})
    assert r.output == Medications() and r.signals["candidates"] == 0.0


def test_schema_is_bounded_and_enforceable():
    from medslm.models.base import JsonSchema

    schema = JsonSchema(ANSWER_SCHEMA).as_dict()
    props = schema["properties"]
    assert all("enum" in p for p in props.values())  # nothing free-form: every output is grounded
    assert props["dose"]["enum"][0] == -1 and len(props["dose"]["enum"]) == 7


def test_slm_answers_under_the_schema_and_stay_grounded():
    """The embedded SLM decodes every candidate under the JSON schema; its answers are note spans."""
    text = "Started ceftriaxone 2 g IV daily and azithromycin 500 mg PO; allergic to sulfa."
    agent = MedicationAgent("embedded", mode="slm")
    r = agent.run(Note(id="t5", text=text), {})
    assert r.provenance.backend == "transformers" and r.provenance.tokens_out > 0
    assert r.signals["slm_calls"] == r.signals["candidates"] >= 3
    assert 0.0 < r.confidence <= 1.0 and 0.0 < r.signals["slm_mean_prob"] <= 1.0
    for m in r.output.medications:
        assert m.source == "slm" and text[m.start:m.end] == m.drug
        assert m.drug.lower() in ("ceftriaxone", "azithromycin", "sulfa")
        for s in m.evidence:
            assert 0 <= s.start < s.end <= len(text)
    hybrid = MedicationAgent("embedded").run(Note(id="t5", text=text), {})
    got = _by_drug(hybrid.output)
    assert (got["ceftriaxone"].dose, got["ceftriaxone"].route, got["azithromycin"].dose) == ("2", "IV", "500")
    assert [a.substance for a in hybrid.output.allergies] == ["sulfa"]


def test_rxnorm_brought_by_the_user_normalises_first():
    from medslm.knowledge.drugs import RxNormRrfSource, drug_graph

    src = RxNormRrfSource(FIXTURES)
    kg = drug_graph(src)
    assert kg.get("RXNORM:6809").label == "metformin"
    assert "Glucophage" not in kg.get("RXNORM:6809").synonyms  # a brand is its own concept
    assert kg.get("RXNORM:151827").kind == "BN"
    assert kg.get("RXNORM:203160") is None  # suppressed
    agent = MedicationAgent(None, kg=kg)
    r = agent.run(Note(id="t6", text="Glucophage 500 mg BID; lisinopril 10 mg daily."), {})
    ids = {m.drug: m.concept.id for m in r.output.medications}
    assert ids == {"Glucophage": "RXNORM:151827", "lisinopril": "RXNORM:29046"}


def test_rxnorm_folder_without_the_file_fails_clearly(tmp_path):
    from medslm.errors import KnowledgeError
    from medslm.knowledge.drugs import RxNormRrfSource

    with pytest.raises(KnowledgeError, match=r"RXNCONSO\.RRF not found"):
        RxNormRrfSource(tmp_path).version()


def test_drug_vocabulary_is_read_without_unpickling_objects():
    from medslm.knowledge.drugs import DrugVocabulary, read_drug_dictionary

    data = read_drug_dictionary()
    assert len(data["drug_canonical_to_data"]) > 15_000
    assert DrugVocabulary().version().startswith("drug_named_entity_recognition==")
    import sys

    assert "drug_named_entity_recognition" not in sys.modules  # the package itself is never imported


def test_attribute_set_figures(rules):
    """The written set (medslm/evals/data): the rules baseline's figures, as reported in docs/medication.md."""
    from medslm.evals.medication import read_attribute_set, score_attributes

    rows = read_attribute_set()
    assert len(rows) == 66
    preds = [rules.run(Note(id=r["id"], text=r["text"]), {}).output for r in rows]
    s = score_attributes(rows, preds)
    assert s["drug"]["recall"] >= 0.95 and s["attributes_micro"]["precision"] >= 0.95
    assert s["attributes_micro"]["recall"] >= 0.9 and s["status"]["f1"] >= 0.9


def test_medication_is_a_registered_chart_review_agent():
    from medslm import registry
    from medslm.graphs.builders import chart_review_pipeline

    spec = registry.get("medication")
    assert spec.field == "medications" and spec.chart_review
    assert "medication" in chart_review_pipeline().node_names
    out = Medications(medications=(Medication(drug="aspirin", start=0, end=7, dose="81", unit="mg", confidence=0.9),))
    from medslm.records import AgentResult

    r = ChartReview(note_id="n", status=ReviewStatus.OK, text="aspirin 81 mg",
                    results={"medication": AgentResult[Medications](agent="medication", output=out, confidence=0.9)})
    back = ChartReview.model_validate_json(r.model_dump_json())
    assert back == r and isinstance(back.results["medication"].output, Medications)
    assert "aspirin 81 mg [active]" in str(r)
    assert "<table class='medslm-meds'>" in r._repr_html_()
    from medslm.graphs.io import flat_row

    assert flat_row(r)["medications"] == "aspirin 81 mg [active]"
