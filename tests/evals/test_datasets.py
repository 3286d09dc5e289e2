"""medslm.evals.datasets: the public sets read into typed records (counts and first values checked)."""

from __future__ import annotations

import pytest

from medslm.errors import ConfigurationError, UnknownNameError
from medslm.evals import datasets as d


def test_ncbi_disease_conll_and_pubtator(data_dir) -> None:
    sents = d.read_ncbi_disease(data_dir, "test")
    assert len(sents) == 940
    s = sents[0]
    assert s.tokens[:3] == ("Clustering", "of", "missense")
    assert [s.text[a:b] for a, b, _ in s.spans()] == ["ataxia - telangiectasia", "sporadic T - cell leukaemia"]
    assert {t for x in sents for t in x.tags} == {"O", "B-Disease", "I-Disease"}
    docs = d.read_ncbi_disease(data_dir, "test", format="pubtator", limit=3)
    doc = docs[0]
    assert all(doc.text[g.start : g.end] == g.text for g in doc.spans)
    assert doc.spans and doc.spans[0].concept


def test_bc5cdr_types(data_dir) -> None:
    sents = d.read_bc5cdr(data_dir, "devel", limit=50)
    assert sents[0].tokens[:3] == ("22", "-", "oxacalcitriol")
    assert sents[0].spans()[0][2] == "Chemical"
    assert {t.split("-")[-1] for x in sents for t in x.tags if t != "O"} == {"Chemical", "Disease"}


def test_codiesp_dev(data_dir) -> None:
    cases = d.read_codiesp(data_dir, "dev")
    assert len(cases) == 250
    c = next(x for x in cases if x.id == "S0004-06142005000900016-1")
    assert c.diagnoses[:3] == ("Q62.11", "N28.89", "N39.0")
    assert c.text.startswith("A 29-year-old woman")
    assert any(e.code == "Q62.11" and e.kind == "diagnosis" and e.spans == ((540, 583),) for e in c.evidence)


def test_summaries_safety_qa_triage(data_dir) -> None:
    mts = d.read_mts_dialog(data_dir, "valid")
    assert len(mts) == 100 and mts[0].section == "GENHX" and mts[0].source.startswith("Doctor:")
    aci = d.read_aci_bench(data_dir, "valid")
    assert len(aci) == 20 and aci[0].id == "D2N068" and aci[0].source.startswith("[doctor] hi , brian")
    meq = d.read_meqsum(data_dir, limit=5)
    assert meq[0].reference == "Who manufactures cetirizine?"
    saf = d.read_medsafetybench(data_dir, limit=18)
    assert all(x.harmful for x in saf) and len({x.category for x in saf}) == 9
    assert len(d.read_medsafetybench(data_dir, source="all")) == 900
    qa = d.read_pubmedqa(data_dir, "test")
    assert len(qa) == 500 and {q.answer for q in qa} == {"yes", "no", "maybe"}
    kt = d.read_ktas_visits(data_dir, limit=3)
    assert kt[0].level == 5 and kt[0].nurse_level == 4 and "Chief complaint: ascites tapping" in kt[0].text


def test_missing_data_and_bad_split(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="MEDSLM_DATA_DIR"):
        d.read_bc5cdr(tmp_path)
    with pytest.raises(UnknownNameError, match="did you mean 'ncbi-disease'"):
        d.dataset_path("ncbi_disease", tmp_path)


def test_bad_split_names_choices(data_dir) -> None:
    with pytest.raises(UnknownNameError, match="'devel'"):
        d.read_bc5cdr(data_dir, "deve")
