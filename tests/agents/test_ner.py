"""The NER agent with the shipped specialists (``ner-slm`` fused with ``ner-crf``, ``assertion-slm``), the
embedded knowledge graph and abbreviations read in context: spans match the text, types, assertions with
ownership, concepts, and the optional generative SLM typing of lexicon-only mentions."""

from __future__ import annotations

import pytest

from medslm.agents.ner import NerAgent, split_sentences
from medslm.records import Assertion, EntityType, Note

TEXT = ("A 58-year-old woman with type 2 diabetes mellitus on metformin presented with chest pain. "
        "She denies shortness of breath. Her mother had breast cancer. ECG and troponin were ordered; "
        "an appendectomy was done years ago. Possible pneumonia on the chest film.")

#: written for this test: abbreviations in context and findings of other people
CLINIC = ("62M c/o substernal CP x 2 hours. SpO2 93% on RA. Wife reports he has had a cough and fever. "
          "His wife has covid. Tachycardic, r/o PE. PE: lungs clear. Hx of RA on methotrexate.")


@pytest.fixture(scope="module")
def agent(kg) -> NerAgent:
    return NerAgent(kg=kg).load()


@pytest.fixture(scope="module")
def result(agent):
    return agent.run(Note(id="ner-1", text=TEXT), {})


@pytest.fixture(scope="module")
def clinic(agent):
    return agent.run(Note(id="ner-2", text=CLINIC), {})


def by_text(result) -> dict[str, object]:
    return {e.text.lower(): e for e in result.output}


def test_spans_are_offsets_into_the_note(result) -> None:
    assert len(result.output) >= 6
    for e in result.output:
        assert TEXT[e.start : e.end] == e.text
    assert [(s.start, s.end) for s in result.evidence] == [(e.start, e.end) for e in result.output]


def test_the_specialist_finds_the_spans(result) -> None:
    ents = by_text(result)
    # the fused SLM + CRF tagger, not the lexicon alone, found the diseases and the drug
    assert "slm" in ents["chest pain"].source and "slm" in ents["metformin"].source
    assert ents["metformin"].type is EntityType.MEDICATION
    assert result.provenance.model_id == "ner-slm:bc5cdr" and result.provenance.backend == "encoder-lora"


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
    # a mention the tagger and the lexicon agree on beats one that only a rule lexicon found
    assert ents["chest pain"].confidence > ents["ecg"].confidence
    assert 0.0 < result.confidence < 1.0


def test_abbreviations_are_read_in_their_sentence(clinic) -> None:
    found = {(e.text, e.start): e for e in clinic.output}
    cp = found[("CP", CLINIC.index("CP"))]
    assert cp.type is EntityType.PROBLEM and "ICD10CM:R07.9" in {c.id for c in cp.concepts}
    # "SpO2 93% on RA" is room air: no mention; "Hx of RA on methotrexate" is rheumatoid arthritis
    ras = [e for e in clinic.output if e.text == "RA"]
    assert [e.start for e in ras] == [CLINIC.index("RA on methotrexate")]
    assert any(c.id.startswith("ICD10CM:M06") for c in ras[0].concepts)
    # "r/o PE" is a suspected pulmonary embolism; "PE: lungs clear" is the physical exam, no mention
    pes = [e for e in clinic.output if e.text == "PE"]
    assert [e.start for e in pes] == [CLINIC.index("PE.")]
    assert pes[0].assertion is Assertion.POSSIBLE and any(c.id.startswith("ICD10CM:I26") for c in pes[0].concepts)


def test_whose_finding(clinic) -> None:
    ents = {e.text.lower(): e for e in clinic.output}
    # the wife tells about the patient's cough; the covid is the wife's
    assert ents["cough"].assertion is Assertion.PRESENT and ents["fever"].assertion is Assertion.PRESENT
    assert ents["covid"].assertion is Assertion.OTHER_PERSON
    assert "ICD10CM:U07.1" in {c.id for c in ents["covid"].concepts}


def test_the_crf_alone_without_the_specialist(kg) -> None:
    agent = NerAgent(kg=kg, slm=None, assertion_model=None).load()
    r = agent.run(Note(id="ner-3", text="Cisplatin-induced nephrotoxicity was treated."), {})
    got = {(e.text, e.type) for e in r.output}
    assert ("nephrotoxicity", EntityType.PROBLEM) in got and ("Cisplatin", EntityType.MEDICATION) in got
    assert all("crf" in e.source for e in r.output if e.text in ("Cisplatin", "nephrotoxicity"))
    assert r.provenance.model_id == "ner-crf"


def test_the_generative_slm_types_lexicon_only_mentions(kg, embedded_lm) -> None:
    """Without a tagger every problem comes from the lexicon; the generative SLM is asked for its type."""
    agent = NerAgent(model=embedded_lm, kg=kg, tagger=None, slm=None, max_slm_calls=2)
    text = "Patient reports nausea and persistent headache."
    r = agent.run(Note(id="ner-4", text=text), {})
    assert r.signals["slm_calls"] == 2
    assert r.provenance.model_id and r.provenance.tokens_in > 0
    asked = [e for e in r.output if "lm" in e.source.split("+")]
    assert len(asked) == 2
    for e in r.output:
        assert text[e.start : e.end] == e.text
    # the SLM's probability of the type scales the confidence: not the lexicon score alone
    assert all(e.confidence < 0.7 for e in asked)


def test_sentences_split_on_punctuation_and_newlines() -> None:
    text = "Chest pain. No fever.\nPlan: ECG."
    assert [text[a:b] for a, b in split_sentences(text)] == ["Chest pain.", "No fever.", "Plan: ECG."]
