"""The summarization agent with the real embedded model: sections, support spans, faithfulness, chunking."""

from __future__ import annotations

import re

import pytest

from medslm.agents.faithfulness import NoteIndex, check_sentence, numbers_in, segment
from medslm.agents.summarize import SENTENCE_REGEX, SummarizeAgent
from medslm.errors import UnknownNameError
from medslm.models.base import Generation, ModelInfo, Regex
from medslm.records import AgentResult, Note, Summary

NOTE = Note(id="s-angina", text="""CHIEF COMPLAINT
Chest pressure on exertion.

HISTORY OF PRESENT ILLNESS
Mr. Stone is a 58-year-old man who reports two weeks of substernal chest pressure when climbing stairs. He denies fever or cough. No shortness of breath.

PHYSICAL EXAM
BP 150/90, HR 88. Lungs clear. No edema.

ASSESSMENT AND PLAN
Likely stable angina. We will order a stress test and start aspirin 81 mg daily. Follow up in 1 week.
""")

NO_CHEST_PAIN = Note(id="s-nocp", text=(
    "Patient is a 45-year-old woman seen for a cough for five days. She has no chest pain. "
    "No fever. Lungs have scattered wheezes. Assessment: acute bronchitis. Plan: albuterol inhaler as needed, "
    "return if short of breath."))

DIALOGUE = Note(id="s-dialogue", text="""Doctor: What brings you in today?
Patient: I've had a sore throat and a cough for three days.
Doctor: Any chest pain?
Patient: No, none at all.
Doctor: Any fever?
Patient: Yes, up to one hundred and one last night.
Doctor: Your throat is red and the lungs sound clear.
Doctor: I think this is a viral infection. I'll have you take ibuprofen and rest, and come back if it gets worse.
""")


@pytest.fixture(scope="module")
def summ_agent(embedded_lm) -> SummarizeAgent:
    return SummarizeAgent(model=embedded_lm)


@pytest.fixture(scope="module")
def summ_results(summ_agent) -> dict[str, AgentResult[Summary]]:
    out = {n.id: summ_agent.run(n, {}) for n in (NOTE, NO_CHEST_PAIN)}
    # the dialogue checks the extractive path (speaker handling); the SLM path is covered above
    out[DIALOGUE.id] = SummarizeAgent(abstractive=False).run(DIALOGUE, {})
    return out


def _says_chest_pain_present(sentence: str) -> bool:
    m = re.search(r"chest pain", sentence, re.I)
    if not m:
        return False
    return not re.search(r"\b(?:no|not|denies|denied|without|negative)\b[^.]*$", sentence[: m.start()], re.I)


def test_no_chest_pain_never_becomes_chest_pain(summ_results) -> None:
    r = summ_results["s-nocp"]
    for sec in r.output.sections:
        for s in sec.sentences:
            assert not _says_chest_pain_present(s.text), "summary asserts chest pain the note negates"


class _ChestPainWriter:
    """A fake SLM that writes the same unfaithful sentence for every section (a unit test of the
    rejection path; the real model is exercised by the tests above)."""

    info = ModelInfo(id="fake-chest-pain", backend="fake")

    def __init__(self) -> None:
        self.constraints: list[object] = []

    def generate(self, messages, constraint=None, *, max_tokens=256, temperature=0.0, seed=None) -> Generation:
        self.constraints.append(constraint)
        text = "The patient has chest pain."
        return Generation(value=text, text=text, token_logprobs=(-0.1,) * 6, tokens_in=50, tokens_out=6,
                          latency_s=0.0, model=self.info)

    def score_choices(self, messages, options):  # pragma: no cover - not used by the summarizer
        raise NotImplementedError


def test_an_slm_sentence_asserting_a_negated_finding_is_rejected_for_the_extractive_one() -> None:
    fake = _ChestPainWriter()
    r = SummarizeAgent(model=fake).run(NO_CHEST_PAIN, {})
    assert r.signals["generated"] >= 3 and r.signals["generated_rejected"] == r.signals["generated"]
    assert r.output.extractive
    text = " ".join(s.text for sec in r.output.sections for s in sec.sentences)
    assert "wheezes" in text and not any(_says_chest_pain_present(s.text) for sec in r.output.sections
                                         for s in sec.sentences)
    assert all(isinstance(c, Regex) and c.pattern == SENTENCE_REGEX for c in fake.constraints)


def test_generated_sentences_are_one_constrained_sentence() -> None:
    assert re.fullmatch(SENTENCE_REGEX, "Mr. Stone takes aspirin 1.5 mg daily.")
    assert not re.fullmatch(SENTENCE_REGEX, "Chest pain. Then more text.")
    assert not re.fullmatch(SENTENCE_REGEX, "no capital at the start.")


def test_the_check_flags_a_sentence_that_asserts_a_negated_finding() -> None:
    idx = NoteIndex.build(NO_CHEST_PAIN.text)
    bad = check_sentence("The patient has chest pain.", idx)
    assert not bad.supported and any("negation" in i for i in bad.issues)
    ok = check_sentence("She has no chest pain.", idx)
    assert ok.supported and ok.support and "no chest pain" in NO_CHEST_PAIN.text[ok.support[0].start:ok.support[0].end]


def test_the_check_flags_numbers_and_invented_terms() -> None:
    idx = NoteIndex.build(NOTE.text)
    assert any("numbers" in i for i in check_sentence("Aspirin 325 mg daily.", idx).issues)
    assert check_sentence("Aspirin 81 mg daily.", idx).supported
    assert not check_sentence("Started metformin for diabetes mellitus.", idx).supported


def test_dialogue_no_answer_negates_the_question() -> None:
    idx = NoteIndex.build(DIALOGUE.text)
    assert not check_sentence("The patient reports chest pain.", idx).supported
    assert check_sentence("The patient reports fever.", idx).supported
    assert "101" in numbers_in("one hundred and one")


def test_sections_are_filled_and_every_sentence_has_support(summ_results) -> None:
    r = summ_results["s-angina"]
    assert r.agent == "summarize"
    names = [s.name for s in r.output.sections]
    assert names == ["chief_complaint", "hpi", "findings", "assessment", "plan"]
    by = {s.name: s for s in r.output.sections}
    assert all(by[n].sentences for n in names)
    for sec in r.output.sections:
        for s in sec.sentences:
            assert s.support, f"{sec.name}: sentence without support"
            for sp in s.support:
                assert 0 <= sp.start < sp.end <= len(NOTE.text)
    assert "stress test" in " ".join(x.text for x in by["plan"].sentences + by["assessment"].sentences)
    assert any("150/90" in x.text for x in by["findings"].sentences)
    assert r.provenance.model_id and r.provenance.tokens_out > 0
    assert 0.0 < r.confidence <= 1.0
    assert r.signals["generated"] == r.signals["sentences"] >= 5  # one rewrite per selected sentence


def test_final_sentences_pass_the_check(summ_results) -> None:
    for r in summ_results.values():
        sents = [s for sec in r.output.sections for s in sec.sentences]
        assert sents
        assert sum(s.supported for s in sents) / len(sents) >= 0.8


def test_dialogue_summary_is_third_person_and_grounded(summ_results) -> None:
    r = summ_results["s-dialogue"]
    text = r.output.text
    assert "sore throat" in text.lower()
    assert not re.search(r"\bI've\b|\bmy\b", text)


def test_long_note_is_chunked_and_merged_not_truncated() -> None:
    filler = " ".join(f"Routine line {i} about the weather and parking." for i in range(400))
    long_text = (filler + "\nASSESSMENT\nAcute appendicitis is likely. " + filler +
                 "\nPLAN\nWe will consult general surgery for appendectomy today.")
    agent = SummarizeAgent(abstractive=False, sections=("assessment", "plan"))
    r = agent.run(Note(id="s-long", text=long_text), {})
    assert r.signals["chunks"] >= 5
    by = {s.name: " ".join(x.text for x in s.sentences) for s in r.output.sections}
    assert "appendicitis" in by["assessment"].lower()
    assert "surgery" in by["plan"].lower()
    # the plan sentence sits at the very end of the note: its span proves nothing was cut
    ends = [sp.end for x in r.output.sections[1].sentences for sp in x.support]
    assert max(ends) > len(long_text) - 80


def test_unknown_section_suggests_the_nearest() -> None:
    with pytest.raises(UnknownNameError, match="assessment"):
        SummarizeAgent(sections=("assesment",))


def test_segment_offsets_round_trip() -> None:
    for u in segment(DIALOGUE.text):
        assert DIALOGUE.text[u.start:u.end] == u.text


def test_mts_dialog_public_example(data_dir) -> None:
    import csv

    with open(data_dir / "mts-dialog" / "MTS-Dialog-ValidationSet.csv", newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["section_header"] == "GENHX")
    r = SummarizeAgent(abstractive=False, sections=("hpi",)).run(Note(id="mts-0", text=row["dialogue"]), {})
    sents = r.output.sections[0].sentences
    assert sents and all(s.supported for s in sents)
    assert "back pain" in " ".join(s.text for s in sents).lower()
