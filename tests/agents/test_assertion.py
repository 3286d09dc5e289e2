"""Assertion status by ConText rules: the shipped synthetic set, and sentences written for this test
(none of them in the shipped set, so the rules are checked on phrasings they were not written against)."""

from __future__ import annotations

import pytest

from medslm.agents.assertion import AssertionClassifier, evaluate_assertion, load_assertion_sentences
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


@pytest.fixture(scope="module")
def clf() -> AssertionClassifier:
    return AssertionClassifier().load()


def test_shipped_set_accuracy_is_at_least_095_and_every_class_is_represented(clf) -> None:
    rows = load_assertion_sentences()
    assert len(rows) >= 100
    assert {r["assertion"] for r in rows} == {a.value for a in Assertion}
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


def test_no_spans_no_work(clf) -> None:
    assert clf.classify("Anything.", []) == []
