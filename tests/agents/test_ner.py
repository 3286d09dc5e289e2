"""The NER agent with the real embedded model, the embedded knowledge graph and the shipped BC5CDR-train CRF (the ``ner-crf`` artifact):
spans match the text, types, assertions, concepts; the SLM types the mentions only a lexicon found."""

from __future__ import annotations

import pytest

from medslm.agents.ner import NerAgent, split_sentences
from medslm.records import Assertion, EntityType, Note

TEXT = ("A 58-year-old woman with type 2 diabetes mellitus presented with chest pain. "
        "She denies shortness of breath. Her mother had breast cancer. ECG and troponin were ordered; "
        "an appendectomy was done years ago. Possible pneumonia on the chest film.")


@pytest.fixture(scope="module")
def agent(kg, embedded_lm) -> NerAgent:
    return NerAgent(model=embedded_lm, kg=kg).load()


@pytest.fixture(scope="module")
def result(agent):
    return agent.run(Note(id="ner-1", text=TEXT), {})


def by_text(result) -> dict[str, object]:
    return {e.text.lower(): e for e in result.output}


def test_spans_are_offsets_into_the_note(result) -> None:
    assert len(result.output) >= 6
    for e in result.output:
        assert TEXT[e.start : e.end] == e.text
    assert [(s.start, s.end) for s in result.evidence] == [(e.start, e.end) for e in result.output]


def test_types_assertions_and_concepts(result) -> None:
    ents = by_text(result)
    chest = ents["chest pain"]
    assert chest.type is EntityType.PROBLEM and chest.assertion is Assertion.PRESENT
    assert "ICD10CM:R07.9" in {c.id for c in chest.concepts}
    assert ents["shortness of breath"].assertion is Assertion.NEGATED
    assert ents["breast cancer"].assertion is Assertion.FAMILY
    assert ents["pneumonia"].assertion is Assertion.POSSIBLE
    assert ents["appendectomy"].type is EntityType.PROCEDURE
    assert ents["appendectomy"].assertion is Assertion.HISTORICAL
    assert ents["ecg"].type is EntityType.TEST and ents["troponin"].type is EntityType.TEST
    diabetes = next(e for e in result.output if "diabetes mellitus" in e.text)
    assert any(c.id.startswith("ICD10CM:E") for c in diabetes.concepts)


def test_confidence_varies_with_the_signals(result) -> None:
    confs = {e.confidence for e in result.output}
    assert len(confs) >= 3, confs
    ents = by_text(result)
    # a mention the CRF and the lexicon agree on beats one that only a rule lexicon found
    assert ents["chest pain"].confidence > ents["ecg"].confidence
    assert 0.0 < result.confidence < 1.0


def test_the_slm_types_lexicon_only_mentions(kg, embedded_lm) -> None:
    """Without the CRF every problem comes from the lexicon; the SLM is asked for its type."""
    agent = NerAgent(model=embedded_lm, kg=kg, tagger=None, max_slm_calls=2)
    text = "Patient reports nausea and persistent headache."
    r = agent.run(Note(id="ner-2", text=text), {})
    assert r.signals["slm_calls"] == 2
    assert r.provenance.model_id and r.provenance.tokens_in > 0
    asked = [e for e in r.output if "slm" in e.source]
    assert len(asked) == 2
    for e in r.output:
        assert text[e.start : e.end] == e.text
    # the SLM's probability of the type scales the confidence: not the lexicon score alone
    assert all(e.confidence < 0.7 for e in asked)


def test_sentences_split_on_punctuation_and_newlines() -> None:
    text = "Chest pain. No fever.\nPlan: ECG."
    assert [text[a:b] for a, b in split_sentences(text)] == ["Chest pain.", "No fever.", "Plan: ECG."]
