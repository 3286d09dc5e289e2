"""Clinical abbreviations read in their sentence (``sense_in_context``): sentences written for this test,
none of them among the senses' examples, so the rules and the context model are checked on phrasings they
were not written against."""

from __future__ import annotations

import pytest

from medslm.knowledge.abbreviations import ABBREVIATIONS, SENSES, sense_in_context
from medslm.records import Assertion

#: (sentence, abbreviation, expected sense)
FRESH = [
    ("Vitals: T 37.2, HR 104, BP 132/80, RR 20, SpO2 93% on RA.", "RA", "room air"),
    ("Saturating 97% RA at rest.", "RA", "room air"),
    ("Long-standing RA treated with methotrexate and folic acid.", "RA", "rheumatoid arthritis"),
    ("PMH: hypothyroidism, RA, osteopenia.", "RA", "rheumatoid arthritis"),
    ("TTE: moderately dilated RA, normal LV function.", "RA", "right atrium"),
    ("58M c/o substernal CP since 6 am, 8/10, radiating to the jaw.", "CP", "chest pain"),
    ("He describes pressure-like CP with exertion.", "CP", "chest pain"),
    ("14-year-old with spastic diplegic CP here for botox injections.", "CP", "cerebral palsy"),
    ("Wells score 4.5; CTA ordered to r/o PE.", "PE", "pulmonary embolism"),
    ("PE: alert, lungs clear bilaterally, no edema.", "PE", "physical examination"),
    ("On PE there was tenderness in the RLQ.", "PE", "physical examination"),
    ("Admitted last year for a saddle PE.", "PE", "pulmonary embolism"),
    ("Family reports altered MS over two days.", "MS", "mental status"),
    ("Known MS, last relapse in 2021, on natalizumab.", "MS", "multiple sclerosis"),
    ("Echo with severe MS, valve area 0.9 cm2.", "MS", "mitral stenosis"),
    ("Fell from a ladder, + LOC for about a minute.", "LOC", "loss of consciousness"),
    ("Depressed LOC, intubated for airway protection.", "LOC", "level of consciousness"),
    ("AF with RVR to 150s, started on diltiazem.", "AF", "atrial fibrillation"),
    ("Overnight AF, VSS, tolerating diet.", "AF", "afebrile"),
]


def _sense(text: str, abbr: str, **kw):
    s = text.index(abbr)
    return sense_in_context(text, s, s + len(abbr), **kw)


@pytest.mark.parametrize(("text", "abbr", "gold"), FRESH, ids=[f"{a}-{g}" for _, a, g in FRESH])
def test_fresh_sentences(text: str, abbr: str, gold: str) -> None:
    sense = _sense(text, abbr)
    assert sense is not None and sense.expansion == gold, (sense, text)
    assert sense.abbreviation == abbr and text[sense.start : sense.end] == abbr


def test_senses_that_are_not_conditions_must_not_be_coded() -> None:
    air = _sense("SpO2 91% on RA, placed on 2 L NC.", "RA")
    assert air.expansion == "room air" and air.condition is False and air.type == "other"
    exam = _sense("PE: abdomen soft, nontender.", "PE")
    assert exam.condition is False
    ra = _sense("RA flare with swollen MCP joints.", "RA")
    assert ra.condition is True and ra.type == "problem" and "room air" in ra.alternatives


def test_rule_out_is_a_possible_condition_and_no_is_negated() -> None:
    pe = _sense("Tachycardic and hypoxic, r/o PE.", "PE")
    assert pe.expansion == "pulmonary embolism" and pe.assertion is Assertion.POSSIBLE
    cp = _sense("Denies fever; no CP.", "CP")
    assert cp.expansion == "chest pain" and cp.assertion is Assertion.NEGATED


def test_context_model_and_prior_where_no_rule_decides() -> None:
    # no cue word of any RA sense in the sentence: the MiniLM sense prototypes decide
    text = "Her RA is well controlled and she walks two miles a day."
    with_model = _sense(text, "RA")
    assert with_model.method in ("context-model", "prior")
    rules_only = _sense(text, "RA", use_model=False)
    assert rules_only.method == "prior" and rules_only.expansion == SENSES["RA"][0].expansion
    assert rules_only.confidence == 0.5


def test_unambiguous_abbreviations_and_words_that_are_none() -> None:
    htn = _sense("Hx of HTN on lisinopril.", "HTN")
    assert htn.expansion == ABBREVIATIONS["HTN"][0] and htn.method == "only-sense" and htn.condition
    assert htn.assertion is Assertion.HISTORICAL
    text = "The patient walked in."
    assert sense_in_context(text, 4, 11) is None


def test_every_condition_sense_names_a_concept_of_the_graph(kg) -> None:
    for abbr, senses in SENSES.items():
        for s in senses:
            if s.condition:
                assert kg.lookup(s.expansion, k=1, fuzzy=False), (abbr, s.expansion)
