"""The NER specialist on the shipped ``ner-slm`` artifact: one head per corpus, BIO-constrained decoding,
fusion with the paired CRF (weight tuned on NCBI-disease devel), windows for long sentences."""

from __future__ import annotations

import numpy as np
import pytest

from medslm.agents.crf_tagger import CrfTagger, kg_gazetteer
from medslm.agents.ner import split_sentences
from medslm.agents.ner_slm import SlmTagger, fusion_settings, windows
from medslm.models.encoder import viterbi_tags

TEXT = "Cisplatin-induced nephrotoxicity was seen in two patients with ataxia-telangiectasia."


@pytest.fixture(scope="module")
def crf(kg) -> CrfTagger:
    return CrfTagger.from_artifact("ner-crf", gazetteer=kg_gazetteer(kg)).load()


@pytest.fixture(scope="module")
def fused(crf) -> SlmTagger:
    return SlmTagger.from_artifact("ner-slm", head="bc5cdr", crf=crf).load()


def _spans(tagger: SlmTagger, text: str = TEXT) -> dict[str, tuple[str, float]]:
    return {text[s.start : s.end]: (s.label, s.prob) for s in tagger.tag(text, split_sentences(text))}


def test_heads_and_their_labels(fused) -> None:
    heads = fused.model.heads
    assert set(heads) == {"ncbi", "bc5cdr"}
    assert heads["ncbi"] == ("O", "B-Disease", "I-Disease")
    assert set(heads["bc5cdr"]) == {"O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"}


def test_bc5cdr_head_finds_chemicals_and_diseases(fused) -> None:
    got = _spans(fused)
    assert got["Cisplatin"][0] == "Chemical" and got["nephrotoxicity"][0] == "Disease"
    assert all(0.0 < p <= 1.0 for _, p in got.values())


def test_ncbi_head_finds_diseases_only() -> None:
    ncbi = SlmTagger.from_artifact("ner-slm", head="ncbi").load()
    got = _spans(ncbi)
    assert "ataxia-telangiectasia" in got and got["ataxia-telangiectasia"][0] == "Disease"
    assert {lab for lab, _ in got.values()} == {"Disease"}
    assert ncbi.weight == 1.0  # no CRF: the SLM alone


def test_fusion_weight_was_tuned_and_mixes_the_crf_in(fused, crf) -> None:
    settings = fusion_settings(fused.model.folder)
    assert 0.0 < settings["weight"] <= 1.0 and "devel" in settings["tuned_on"]
    assert fused.weight == settings["weight"]
    alone = SlmTagger(fused.model, head="bc5cdr", crf=crf, weight=1.0)
    a, b = _spans(alone), _spans(fused)
    # the same mentions here, but the probabilities are the mixture's, not the SLM's
    assert set(a) == set(b) and any(abs(a[k][1] - b[k][1]) > 1e-4 for k in a)


def test_viterbi_never_opens_a_span_with_inside() -> None:
    labels = ("O", "B-Disease", "I-Disease")
    probs = np.array([[0.9, 0.05, 0.05], [0.3, 0.2, 0.5], [0.2, 0.1, 0.7]])
    # argmax would read O, I, I (an "I" after "O"); the constrained path opens with B
    assert [labels[i] for i in viterbi_tags(probs, labels)] == ["O", "B-Disease", "I-Disease"]
    assert viterbi_tags(np.zeros((0, 3)), labels) == []


def test_long_sentences_are_cut_into_windows() -> None:
    text = " ".join(["fever"] * 150) + "."
    wins = windows(text, [(0, len(text))], max_words=60)
    assert len(wins) == 3 and wins[0][0] == 0 and wins[-1][1] == len(text)
    assert all(text[a:b].strip() == text[a:b] for a, b in wins)
