"""Coding-guideline helpers of the ICD agent: encounter setting, assertions refined for coding, long-term
drug therapy and status statements. Sentences written for the test."""

from __future__ import annotations

from medslm.agents.icd_candidates import sentences
from medslm.agents.icd_guidelines import (
    EMERGENCY,
    INPATIENT,
    OUTPATIENT,
    UNKNOWN,
    Finding,
    codable_as_present,
    encounter_setting,
    long_term_drug_codes,
    refine_assertion,
    status_codes,
)
from medslm.records import Assertion


def test_encounter_setting_from_metadata_then_from_the_note() -> None:
    assert encounter_setting("anything", {"encounter": "Emergency Department"}) == EMERGENCY
    assert encounter_setting("anything", {"note_type": "Discharge Summary"}) == INPATIENT
    assert encounter_setting("anything", {"setting": "primary care clinic"}) == OUTPATIENT
    assert encounter_setting("DISCHARGE SUMMARY\nHospital course: uneventful.") == INPATIENT
    assert encounter_setting("Pt presents to the ED with a cut on the hand.") == EMERGENCY
    assert encounter_setting("Office visit for blood pressure check.") == OUTPATIENT
    assert encounter_setting("Cough for three days.") == UNKNOWN


def _refine(text: str, mention: str, assertion: Assertion = Assertion.PRESENT) -> Finding:
    s = text.index(mention)
    spans = sentences(text)
    sent = next(sp for sp in spans if sp[0] <= s < sp[1])
    return refine_assertion(text, s, s + len(mention), sent, assertion)


def test_refined_assertions() -> None:
    assert _refine("Screening labs: HIV negative, hepatitis C antibody negative.", "HIV").assertion is Assertion.NEGATED
    assert _refine("COVID PCR (-) on arrival.", "COVID").assertion is Assertion.NEGATED
    assert _refine("Likely viral bronchitis vs early pneumonia.", "bronchitis").assertion is Assertion.POSSIBLE
    assert _refine("Likely viral bronchitis vs early pneumonia.", "pneumonia").assertion is Assertion.POSSIBLE
    # the spouse reports the patient's symptom; the spouse's own illness is another person's
    assert _refine("Her husband reports she has been coughing.", "coughing", Assertion.FAMILY).assertion \
        is Assertion.PRESENT
    spouse = _refine("Her husband has influenza.", "influenza", Assertion.FAMILY)
    assert spouse.other_person
    assert _refine("Her sister has lupus.", "lupus", Assertion.FAMILY) == Finding(Assertion.FAMILY)


def test_uncertain_diagnoses_are_coded_only_at_inpatient_discharge() -> None:
    possible = Finding(Assertion.POSSIBLE)
    assert codable_as_present(possible, INPATIENT)
    assert not codable_as_present(possible, EMERGENCY)
    assert not codable_as_present(possible, OUTPATIENT)
    assert not codable_as_present(possible, UNKNOWN)
    assert not codable_as_present(Finding(Assertion.NEGATED), INPATIENT)
    assert not codable_as_present(Finding(Assertion.PRESENT, other_person=True), INPATIENT)
    assert codable_as_present(Finding(Assertion.HISTORICAL), OUTPATIENT)  # a chronic condition stays coded


def _drugs(text: str) -> list[str]:
    return [code for code, _, _ in long_term_drug_codes(text, sentences(text))]


def test_long_term_drug_therapy_only_when_the_patient_is_on_the_drug() -> None:
    assert _drugs("He remains on apixaban for his AF.") == ["Z79.01"]
    assert _drugs("Medications:\n- insulin glargine 20 units nightly\n- aspirin 81 mg") == ["Z79.4", "Z79.82"]
    assert _drugs("Plan: start warfarin, bridge with enoxaparin.") == []
    assert _drugs("Clopidogrel was stopped before surgery.") == []
    assert _drugs("Allergic to aspirin (hives).") == []
    assert _drugs("Takes prednisone 10 mg daily for polymyalgia.") == ["Z79.52"]


def test_status_statements() -> None:
    got = {code for code, _, _ in status_codes("Ex-smoker, quit 10 years ago. Dual-chamber pacemaker in place. "
                                               "Dialysis M/W/F via a left arm fistula, on hemodialysis since 2019.")}
    assert {"Z87.891", "Z95.0", "Z99.2"} <= got
    assert "F17.210" in {c for c, _, _ in status_codes("Current smoker, 1 ppd.")}
    assert {c for c, _, _ in status_codes("Penicillin allergy (rash).")} == {"Z88.0"}
