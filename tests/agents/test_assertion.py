"""Assertion - whose finding and how certain: ConText rules alone on the shipped synthetic set and on
sentences written for this test, and the shipped combination (rules + ``assertion-slm``) on the held-out
ownership set and on fresh ownership sentences (none of them in any shipped set)."""

from __future__ import annotations

import pytest

from medslm.agents.assertion import (
    AssertionClassifier,
    ContextRules,
    evaluate_assertion,
    load_assertion_sentences,
)
from medslm.records import Assertion

#: (sentence, mention, gold) - written for this test, not taken from the shipped set
FRESH = [
    ("The abdomen is soft and there is marked hepatomegaly on palpation.", "hepatomegaly", "present"),
    ("Blood cultures grew Staphylococcus aureus and she developed sepsis.", "sepsis", "present"),
    ("He complains of intermittent palpitations at night.", "palpitations", "present"),
    ("No signs of cellulitis around the wound.", "cellulitis", "negated"),
    ("The patient denies any hematuria.", "hematuria", "negated"),
    ("CT of the head was negative for hemorrhage.", "hemorrhage", "negated"),
    ("Without fever or chills since discharge.", "fever", "negated"),
    ("Findings are suspicious for early osteomyelitis.", "osteomyelitis", "possible"),
    ("Possible small pleural effusion on the left.", "pleural effusion", "possible"),
    ("The picture is likely viral gastroenteritis.", "gastroenteritis", "possible"),
    ("He had a cholecystectomy for gallstones in 2009.", "gallstones", "historical"),
    ("History of pulmonary embolism, no longer anticoagulated.", "pulmonary embolism", "historical"),
    ("Her father died of a myocardial infarction at 52.", "myocardial infarction", "family"),
    ("Family history is significant for colon cancer in a sister.", "colon cancer", "family"),
    ("His brother has schizophrenia.", "schizophrenia", "family"),
    ("Call us if you develop shortness of breath.", "shortness of breath", "hypothetical"),
    ("Return to the emergency department if the chest pain recurs.", "chest pain", "hypothetical"),
]


#: (sentence, mention, gold): ownership and certainty, written for this test (not in any shipped set)
FRESH_OWNERSHIP = [
    ("Her husband says she has had night sweats for a month.", "night sweats", "present"),
    ("Per the daughter, he has been falling at home.", "falling", "present"),
    ("Mom noticed the baby has a rash on his cheeks.", "rash", "present"),
    ("His girlfriend has mono.", "mono", "other_person"),
    ("The patient's roommate was treated for scabies last month.", "scabies", "other_person"),
    ("Coworkers out sick with influenza.", "influenza", "other_person"),
    ("Paternal uncle with early-onset dementia.", "dementia", "family"),
    ("Her brother died of sudden cardiac arrest at 30.", "sudden cardiac arrest", "family"),
    ("Denies any dysuria.", "dysuria", "negated"),
    ("Likely a viral exanthem.", "viral exanthem", "possible"),
    ("R/O appendicitis, surgery aware.", "appendicitis", "possible"),
    ("Remote history of gastric ulcer.", "gastric ulcer", "historical"),
    ("Return if you develop difficulty breathing.", "difficulty breathing", "hypothetical"),
]


@pytest.fixture(scope="module")
def clf() -> ContextRules:
    return ContextRules().load()


@pytest.fixture(scope="module")
def combined() -> AssertionClassifier:
    return AssertionClassifier().load()


def test_shipped_set_accuracy_is_at_least_095_and_every_class_is_represented(clf) -> None:
    rows = load_assertion_sentences()
    assert len(rows) >= 100
    assert {r["assertion"] for r in rows} == {a.value for a in Assertion} - {"other_person"}
    r = evaluate_assertion(clf)
    assert r["n"] == len(rows)
    assert r["accuracy"] >= 0.95, r["errors"]
    assert min(r["per_class"].values()) >= 0.8, r["per_class"]


def test_fresh_sentences(clf) -> None:
    preds = []
    for text, mention, gold in FRESH:
        s = text.index(mention)
        preds.append((clf.classify(text, [(s, s + len(mention))])[0].value, gold, text))
    wrong = [p for p in preds if p[0] != p[1]]
    # at most two misses out of 17 (0.88): these are phrasings the rules were not written against
    assert len(wrong) <= 2, wrong


def test_two_mentions_in_one_sentence_get_their_own_status(clf) -> None:
    text = "She has diabetes but no hypertension."
    got = clf.classify(text, [(8, 16), (24, 36)])
    assert got == [Assertion.PRESENT, Assertion.NEGATED]


def test_no_spans_no_work(clf, combined) -> None:
    assert clf.classify("Anything.", []) == []
    assert combined.classify("Anything.", []) == []


def test_held_out_ownership_set_accuracy_is_at_least_095(combined) -> None:
    """The test half of the ownership set: written and committed before anything was tuned; never tuned on."""
    rows = load_assertion_sentences("ownership-test")
    assert len(rows) >= 75 and {r["assertion"] for r in rows} == {a.value for a in Assertion}
    r = evaluate_assertion(combined, rows)
    assert r["accuracy"] >= 0.95, r["errors"]
    assert r["per_class"]["other_person"] >= 0.9 and r["per_class"]["present"] >= 0.9, r["per_class"]
    # together the ownership set has at least 150 sentences
    assert len(rows) + len(load_assertion_sentences("ownership-dev")) >= 150


def test_fresh_ownership_sentences(combined) -> None:
    spans = []
    for text, mention, gold in FRESH_OWNERSHIP:
        s = text.index(mention)
        spans.append((combined.classify(text, [(s, s + len(mention))])[0].value, gold, text))
    wrong = [p for p in spans if p[0] != p[1]]
    assert len(wrong) <= 1, wrong


def test_one_sentence_two_owners(combined) -> None:
    # (a known miss, in docs/agents.md: "Wife reports he has had a cough; she has the flu" - "she" is the
    # reporter; the model reads the flu as the patient's)
    for text in ("His wife has the flu; he has had a cough for 3 days.",
                 "Wife reports he has had a cough for 3 days and she has the flu too."):
        got = combined.classify_with_confidence(text, [(text.index("cough"), text.index("cough") + 5),
                                                       (text.index("flu"), text.index("flu") + 3)])
        assert [a for a, _ in got] == [Assertion.PRESENT, Assertion.OTHER_PERSON], text
        assert all(0.0 < c <= 1.0 for _, c in got)
    # the confidence is the model's (combined) probability, not a constant
    assert got[1][1] < 0.99


def test_rules_alone_still_answer_without_the_model() -> None:
    rules_only = AssertionClassifier(None)
    text = "His wife has covid."
    assert rules_only.name == "context"
    assert rules_only.classify(text, [(13, 18)]) == [Assertion.OTHER_PERSON]
