"""Red-flag rules on sentences written for these tests (none of them is in the rules or the KTAS data):
what the issue found under-triaged (chest pain with an ACS work-up, suicidal ideation, DKA) is flagged at
level 2, and the negated, historical or look-alike sentence is not."""

from __future__ import annotations

import pytest

from medslm.agents.red_flags import find_red_flags


def _flags(text: str) -> dict[str, int]:
    return {f.name: f.max_level for f in find_red_flags(text)}


@pytest.mark.parametrize("text", [
    "58 y/o man, substernal chest pain since 0600; 12-lead EKG at triage, troponin pending.",
    "Chest discomfort x 3 days. Plan: serial troponins to rule out ACS.",
    "Intermittent chest tightness while shovelling snow, r/o MI, aspirin chewed in triage.",
])
def test_chest_pain_with_an_acs_work_up_is_level_2(text: str) -> None:
    flags = _flags(text)
    assert min(flags.values()) == 2
    assert {"chest_pain_acs_workup", "chest_pain_ischaemic"} & set(flags)


@pytest.mark.parametrize("text", [
    "Pt reports SI with a plan to take all of her sertraline tonight.",
    "States she has been thinking about killing herself since her divorce.",
    "Brought in by police; he keeps saying he wants to die.",
    "Denies HI, endorses SI.",
])
def test_suicidal_ideation_is_level_2(text: str) -> None:
    assert _flags(text).get("suicidal") == 2


@pytest.mark.parametrize("text", [
    "Type 1 diabetic with glucose 612 and large urine ketones, vomiting since last night.",
    "Known T1DM, fingerstick reads HI, fruity breath, abdominal pain.",
    "Insulin pump failed yesterday; labs concerning for DKA.",
])
def test_dka_is_level_2(text: str) -> None:
    flags = _flags(text)
    assert {"dka", "hyperglycemia_ketosis"} & set(flags)
    assert min(flags.values()) == 2


@pytest.mark.parametrize("text", [
    "Denies chest pain. EKG ordered as part of the pre-operative work-up.",
    "Denies SI/HI. Here for a medication refill.",
    "SI joint pain after lifting boxes.",
    "History of DKA two years ago, here for an insulin refill. No vomiting.",
    "Glucose 455 on the home meter, no ketones, no vomiting, feels well.",
    "No intent to harm himself or others.",
    "Chest wall bruise after a fall. Blood pressure 132/84.",
])
def test_negated_historical_and_look_alike_sentences_raise_no_such_flag(text: str) -> None:
    flags = _flags(text)
    assert not {"chest_pain_acs_workup", "chest_pain_ischaemic", "suicidal", "dka", "hyperglycemia_ketosis"} & set(flags)


def test_blood_pressure_is_not_chest_pressure() -> None:
    # "pressure" in "blood pressure" once made any chest pain an ischaemic one
    assert "chest_pain_ischaemic" not in _flags("Chest pain after coughing. Blood pressure 128/76, HR 80.")
    assert _flags("Chest pressure radiating to the jaw.")["chest_pain_ischaemic"] == 2


def test_flags_carry_their_evidence_spans() -> None:
    text = "Pt reports SI with a plan. BP 120/80."
    flag = next(f for f in find_red_flags(text) if f.name == "suicidal")
    assert text[flag.evidence[0].start : flag.evidence[0].end] == "SI"
