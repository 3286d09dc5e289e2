"""Candidates of the ICD agent on the embedded graph and its Alphabetic Index: abbreviations in context,
order-free matches, completion of categories (laterality, 7th character). Sentences written for the test."""

from __future__ import annotations

from medslm.agents.icd_candidates import (
    abbreviation_sense,
    complete,
    context_for,
    encounter_char,
    find_mentions,
    laterality,
    sentence_of,
    sentences,
)


def _sense(text: str, abbr: str) -> str | None:
    s = text.index(abbr)
    spans = sentences(text)
    return abbreviation_sense(text, s, s + len(abbr), sentence_of(spans, s, s + len(abbr)))


def test_abbreviations_are_read_in_their_sentence_sense() -> None:
    assert _sense("Sats 93% on RA at rest.", "RA") is None  # room air
    assert _sense("O2 sat 97 % RA, afebrile.", "RA") is None
    assert _sense("Longstanding RA on methotrexate, hand joints swollen.", "RA") == "rheumatoid arthritis"
    assert _sense("Complains of crushing CP radiating to the left arm.", "CP") == "chest pain"
    assert _sense("Spastic quadriplegic CP since birth, uses a wheelchair.", "CP") == "cerebral palsy"
    assert _sense("PE: lungs clear, abdomen soft.", "PE") is None  # physical exam
    assert _sense("Concern for PE given tachycardia and a positive D-dimer.", "PE") == "pulmonary embolism"
    assert _sense("Known HTN, well controlled.", "HTN") == "essential hypertension"
    assert _sense("Patient is XYZ today.", "XYZ") is None  # an abbreviation medslm does not know


def test_mentions_guard_abbreviations_and_find_order_free_names(kg) -> None:
    text = "SpO2 91% on RA. She has had pain in the left knee since the fall."
    found = {(text[m.start : m.end], m.source): m.codes for m in find_mentions(kg, text)}
    assert not any(k[0] == "RA" for k in found), found
    bag = found.get(("pain in the left knee", "bag"))
    assert bag is not None and "M25.562" in bag, found  # "Pain in left knee", words in another order


def test_laterality_and_encounter_from_the_words_around_a_mention() -> None:
    assert laterality("fell on her right wrist") == "right"
    assert laterality("pain in both knees") == "bilateral"
    assert laterality("left-sided weakness, right facial droop") is None  # both sides named: undecided
    assert encounter_char("cast check, fracture healing as expected") == "subsequent"
    assert encounter_char("late effect of an old burn") == "sequela"
    assert encounter_char("fell off a ladder today") == "initial"


def test_a_category_is_completed_to_the_billable_code_the_note_supports(kg) -> None:
    chosen, others = complete(kg, "S93.40", "right ankle sprain, initial encounter")
    assert chosen == "S93.401A"
    assert "S93.402A" in others and all(kg.is_billable(c) for c in others)
    chosen, _ = complete(kg, "S93.40", "sprained left ankle, seen for follow-up")
    assert chosen == "S93.402D"
    chosen, _ = complete(kg, "S93.40", "ankle sprain")  # no side: the unspecified ankle
    assert chosen == "S93.409A"
    assert complete(kg, "J18.9", "pneumonia") == ("J18.9", [])  # billable already


def test_the_reranker_context_marks_the_mention_in_its_sentence() -> None:
    text = "Seen in clinic. The right ankle sprain is better. Walks without crutches."
    spans = sentences(text)
    s = text.index("ankle sprain")
    ctx = context_for(text, (s, s + len("ankle sprain")), spans)
    assert ctx == "The right [[ ankle sprain ]] is better."
