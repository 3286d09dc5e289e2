"""Lexical lookup (exact, normalized, abbreviation, fuzzy) and the lexicon matcher on the embedded graph."""

from __future__ import annotations

import pytest

from medslm.errors import UnknownNameError
from medslm.knowledge import Candidate, KnowledgeGraph, LexiconMatcher, Match
from medslm.knowledge.abbreviations import ABBREVIATIONS


def codes(cands: list[Candidate]) -> list[str]:
    return [c.concept.code for c in cands]


def test_exact_and_normalized(kg: KnowledgeGraph) -> None:
    top = kg.lookup("Chest pain, unspecified", systems=("ICD10CM",), k=5)[0]
    assert (top.concept.code, top.score, top.method) == ("R07.9", 1.0, "exact")
    # case, punctuation, plural and word order
    for q in ("MYOCARDIAL INFARCTIONS", "infarction, myocardial", "myocardial-infarction"):
        top = kg.lookup(q, systems=("ICD10CM",), k=3)[0]
        assert top.concept.code == "I21.9", q
        assert top.method == "normalized" and 0.9 <= top.score < 1.0
    assert kg.lookup("crohn's disease", systems=("ICD10CM",), k=1)[0].concept.code.startswith("K50")


def test_lay_synonym_borrowed_from_hpo(kg: KnowledgeGraph) -> None:
    # "heart attack" is not an ICD-10-CM name; HPO's Myocardial infarction has it as a synonym
    top = kg.lookup("heart attack", systems=("ICD10CM",), k=10)
    assert top[0].concept.code == "I21.9" and top[0].score == 1.0
    assert "Heart attack" in kg.borrowed_synonyms("I21.9")
    both = kg.lookup("heart attack", systems=("ICD10CM", "HPO"), k=3)
    assert {"ICD10CM:I21.9", "HP:0001658"} <= {c.id for c in both}


@pytest.mark.parametrize(
    ("abbr", "code"),
    [("MI", "I21.9"), ("HTN", "I10"), ("SOB", "R06.02"), ("COPD", "J44.9"), ("CHF", "I50.9"), ("afib", "I48.91")],
)
def test_abbreviations(kg: KnowledgeGraph, abbr: str, code: str) -> None:
    cands = kg.lookup(abbr, systems=("ICD10CM",), k=5)
    assert cands[0].method == "abbreviation"
    assert code in codes(cands[:3]), codes(cands)


def test_every_abbreviation_resolves(kg: KnowledgeGraph) -> None:
    m = kg.matcher(("ICD10CM", "HPO"))
    unresolved = [a for a in ABBREVIATIONS if a not in m.abbreviations and "/" not in a]
    assert unresolved == []


def test_fuzzy(kg: KnowledgeGraph) -> None:
    cands = kg.lookup("pnuemonia", systems=("ICD10CM",), k=5)  # misspelled
    assert cands[0].method == "fuzzy" and cands[0].concept.code in ("J18", "J18.9")
    assert all(0.0 <= c.score < 0.9 for c in cands)
    assert "E11" in codes(kg.lookup("diabetes mellitus type 2", systems=("ICD10CM",), k=3))
    hp = kg.lookup("shortness of breath", systems=("HPO",), k=3)
    assert hp[0].concept.id == "HP:0002094" and hp[0].score >= 0.97


def test_billable_only_and_scores_sorted(kg: KnowledgeGraph) -> None:
    cands = kg.lookup("type 2 diabetes mellitus", systems=("ICD10CM",), k=10, billable_only=True)
    assert len(cands) == 10 and all(c.concept.billable for c in cands)
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)


def test_unknown_system(kg: KnowledgeGraph) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'ICD10CM'"):
        kg.lookup("x", systems=("ICD10C",))


NOTE = (
    "72M with h/o HTN and type 2 diabetes mellitus presents with SOB and substernal chest pain. "
    "Troponin up; rule out MI. Denies fevers. Father had a heart attack. so he came in."
)


def test_matcher_spans(kg: KnowledgeGraph) -> None:
    m = kg.matcher(("ICD10CM", "HPO"))
    assert isinstance(m, LexiconMatcher) and len(m) > 100_000
    found = {NOTE[x.start : x.end]: x for x in m.find(NOTE)}
    assert all(isinstance(x, Match) and x.text == NOTE[x.start : x.end] for x in found.values())
    assert "ICD10CM:I10" in found["HTN"].concept_ids
    assert "ICD10CM:E11.9" in found["type 2 diabetes mellitus"].concept_ids or \
        "ICD10CM:E11" in found["type 2 diabetes mellitus"].concept_ids  # longest match, not "diabetes"
    assert "HP:0002094" in found["SOB"].concept_ids
    assert "ICD10CM:R07.9" in found["chest pain"].concept_ids
    assert "ICD10CM:I21.9" in found["MI"].concept_ids
    assert "ICD10CM:R50.9" in found["fevers"].concept_ids  # plural
    assert "ICD10CM:I21.9" in found["heart attack"].concept_ids
    assert "so" not in found and "So" not in found  # abbreviations only as written
    assert found["chest pain"].score == 1.0 and found["MI"].score < found["fevers"].score


def test_matcher_offsets_are_half_open_and_sorted(kg: KnowledgeGraph) -> None:
    text = "Chest pain.\nChest  pain"
    ms = kg.matcher(("ICD10CM",)).find(text)
    assert [(x.start, x.end) for x in ms] == [(0, 10), (12, 23)]
    assert ms[1].text == "Chest  pain"
