"""The built-in medication agent's output (``Medications``) reads as exportable mentions."""

from __future__ import annotations

from medslm.agents.medication import Allergy, Medication, Medications
from medslm.export.results import medication_attrs, medication_items
from medslm.records import Assertion, ConceptRef


def test_the_medication_agents_record_exports_its_mentions_not_its_fields() -> None:
    out = Medications(medications=(
        Medication(drug="metformin", start=10, end=19, dose="500", unit="mg", route="oral", frequency="BID",
                   concept=ConceptRef(id="DRUG:metformin", label="metformin"), confidence=0.9),
        Medication(drug="aspirin", start=30, end=37, status="stopped", confidence=0.7)),
        allergies=(Allergy(substance="penicillin", start=50, end=60, confidence=0.9),))
    items = medication_items(out)
    assert [m.drug for m in items] == ["metformin", "aspirin"]  # allergies are not statements of use
    a = medication_attrs(items[0])
    assert (a["text"], a["dose"], a["route"], a["frequency"]) == ("metformin", "500 mg", "oral", "BID")
    assert [c.id for c in a["concepts"]] == ["DRUG:metformin"] and a["assertion"] == Assertion.PRESENT
    b = medication_attrs(items[1])
    assert b["concepts"] == () and b["dose"] is None and (b["start"], b["end"]) == (30, 37)
    assert medication_items(None) == []
