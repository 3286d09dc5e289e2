"""Loaders: UMLS RRF and SNOMED CT RF2 on synthetic fixtures in the official formats; OBO, DOID reports,
SSSOM and RDF on the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from medslm.errors import KnowledgeError
from medslm.knowledge import GraphBuilder, KnowledgeGraph, Relation
from medslm.knowledge.testing import FewIcdCodes, IcdSubset
from medslm.knowledge.doid import DoidReports
from medslm.knowledge.obo import OboSource, read_obo
from medslm.knowledge.rdf import RdfSource, iri_to_curie
from medslm.knowledge.snomed import SnomedRf2Source
from medslm.knowledge.sssom import SssomSource
from medslm.knowledge.umls import UmlsRrfSource

FIXTURES = Path(__file__).parent / "fixtures"


def small_graph(*sources) -> KnowledgeGraph:
    return KnowledgeGraph([FewIcdCodes(), *sources], use_cache=False).load()


def test_umls_rrf() -> None:
    umls = UmlsRrfSource(FIXTURES / "umls")
    kg = small_graph(umls)
    mi = kg.get("UMLS:C9000001")
    assert mi is not None and mi.label == "Fixture myocardial infarction"  # TS=P, STT=PF, ISPREF=Y
    assert "Fixture heart attack" in mi.synonyms
    assert "Fixture infarctus" not in mi.synonyms  # French filtered out
    assert "Fixture obsolete name" not in mi.synonyms  # SUPPRESS=O
    assert mi.kind == "T047 Disease or Syndrome"
    # CUI <-> SNOMED CT <-> ICD-10-CM
    assert [c.id for c in kg.crosswalk("UMLS:C9000001", to="SNOMEDCT")] == ["SNOMEDCT:900000101"]
    assert [c.id for c in kg.crosswalk("UMLS:C9000001", to="ICD10CM")] == ["ICD10CM:I21.9"]
    assert [c.id for c in kg.crosswalk("SNOMEDCT:900000101", to="ICD10CM")] == ["ICD10CM:I21.9"]
    assert [c.id for c in kg.crosswalk("ICD10CM:E11.9", to="UMLS")] == ["UMLS:C9000003"]  # E119 dotted
    assert [c.id for c in kg.crosswalk("UMLS:C9000002", to="MESH")] == ["MESH:D900002"]
    # MRREL PAR: CUI2 is the parent of CUI1
    assert [c.id for c in kg.parents("UMLS:C9000001")] == ["UMLS:C9000002"]
    assert kg.get("UMLS:C9000004") is None  # RXNORM not among the chosen sources
    assert umls.release() == {"SNOMEDCT_US": "2099_03_01", "ICD10CM": "2099"}
    top = kg.lookup("fixture heart attack", systems=("UMLS",), k=1)[0]
    assert top.concept.id == "UMLS:C9000001" and top.score == 1.0
    all_sources = small_graph(UmlsRrfSource(FIXTURES / "umls", sources=None))
    assert all_sources.get("UMLS:C9000004").kind == "T121 Pharmacologic Substance"


def test_umls_rrf_errors(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="MRCONSO.RRF not found"):
        small_graph(UmlsRrfSource(tmp_path))
    (tmp_path / "MRCONSO.RRF").write_text("C1|ENG|P|\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="3 fields, expected 18"):
        small_graph(UmlsRrfSource(tmp_path))


def test_snomed_rf2() -> None:
    kg = small_graph(SnomedRf2Source(FIXTURES / "snomed"))
    mi = kg.get("SNOMEDCT:900000101")
    assert mi is not None
    assert mi.label == "Fixture myocardial infarction"  # US preferred synonym, not the FSN
    assert mi.kind == "disorder"  # semantic tag of the FSN
    assert mi.synonyms == ("Fixture heart attack",)  # acceptable in US; GB-only and inactive ones left out
    assert kg.get("SNOMEDCT:900000404") is None  # inactive concept
    assert [c.id for c in kg.parents("SNOMEDCT:900000101")] == ["SNOMEDCT:900000202"]
    assert kg.parents("SNOMEDCT:900000303") == []  # inactive is-a row; attribute rows are not is-a
    assert [c.id for c in kg.crosswalk("SNOMEDCT:900000101", to="ICD10CM")] == ["ICD10CM:I21.9"]
    # map to a code that is not ICD-10-CM 2026 is dropped; inactive map rows too
    assert [c.id for c in kg.crosswalk("SNOMEDCT:900000303", to="ICD10CM")] == ["ICD10CM:E11.9"]
    assert kg.crosswalk("SNOMEDCT:900000202", to="ICD10CM") == []
    assert kg.count("ICD10CM") == 4
    gb = small_graph(SnomedRf2Source(FIXTURES / "snomed", language_refset="900000000000508004"))
    assert gb.get("SNOMEDCT:900000101").label == "Fixture cardiac infarction (GB)"


def test_umls_and_snomed_together() -> None:
    kg = small_graph(UmlsRrfSource(FIXTURES / "umls"), SnomedRf2Source(FIXTURES / "snomed"))
    c = kg.get("SNOMEDCT:900000101")
    assert c.label == "Fixture myocardial infarction"
    assert {x.id for x in kg.crosswalk("ICD10CM:I21.9", to="UMLS")} == {"UMLS:C9000001"}


def test_rdf_umls2rdf_turtle() -> None:
    kg = small_graph(RdfSource(FIXTURES / "umls2rdf.ttl"))
    c = kg.get("SNOMEDCT:900000101")
    assert c.label == "Fixture myocardial infarction" and c.synonyms == ("Fixture heart attack",)
    assert [p.id for p in kg.parents(c.id)] == ["SNOMEDCT:900000202"]
    assert [x.id for x in kg.crosswalk(c.id, to="UMLS")] == ["UMLS:C9000001"]
    assert kg.get("SNOMEDCT:900000909") is None  # owl:deprecated
    assert iri_to_curie("http://purl.obolibrary.org/obo/HP_0000822") == "HP:0000822"
    assert iri_to_curie("http://snomed.info/id/22298006") == "SNOMEDCT:22298006"
    assert iri_to_curie("http://purl.bioontology.org/ontology/ICD10CM/I21.4") == "ICD10CM:I21.4"


def test_rdf_owl_real_file(data_dir: Path) -> None:
    # SYMP (symptom ontology) as the Disease Ontology imports it: RDF/XML OWL
    b = GraphBuilder()
    RdfSource(data_dir / "doid" / "symp_import.owl").load(b)
    rows = b.rows()
    assert rows["SYMP:0000300"][3] == "hyperesthesia" and "hyperaesthesia" in rows["SYMP:0000300"][4]
    assert ("SYMP:0000006", "SYMP:0000099", "is_a") in b.edges
    assert not any(cid.startswith("IAO:") for cid in rows)  # annotation properties are not concepts
    assert 1_000 < len(rows) < 1_200


def test_obo_hpo_real_file(data_dir: Path) -> None:
    terms = {t.id: t for t in read_obo(data_dir / "hpo" / "hp.obo")}
    assert terms["HP:0002094"].name == "Dyspnea"
    assert ("Shortness of breath", "EXACT") in [(s, sc) for s, sc in terms["HP:0002094"].synonyms]
    kg = small_graph(OboSource(data_dir / "hpo" / "hp.obo", name="hpo-shared"))
    assert kg.count("HPO") == sum(1 for t in terms.values() if not t.obsolete)
    assert "UMLS:C0013404" in {c.id for c in kg.crosswalk("HP:0002094", to="UMLS")}
    assert [p.id for p in kg.parents("HP:0002094")] == ["HP:0002793"]  # Abnormal pattern of respiration


def test_doid_reports_and_sssom(data_dir: Path) -> None:
    kg = small_graph(DoidReports(data_dir / "doid"),
                     SssomSource(sorted((data_dir / "mondo").glob("*.sssom.tsv")), name="mondo"))
    assert 12_000 < kg.count("DOID") < 12_400
    dm2 = kg.get("DOID:9352")
    assert dm2.label == "type 2 diabetes mellitus"
    assert [p.label for p in kg.parents("DOID:9352")] == ["diabetes mellitus"]
    assert "MESH:D003924" in {c.id for c in kg.crosswalk("DOID:9352", to="MESH")}
    assert "MONDO:0005148" in {c.id for c in kg.crosswalk("DOID:9352", to="MONDO")}
    assert kg.get("MONDO:0005148").label == "type 2 diabetes mellitus"
    assert {c.label for c in kg.related("DOID:820", Relation.HAS_SYMPTOM)} >= {"inflammation"}
    # MONDO broad matches are not exact cross-walks
    broad = {c.id for c in kg.related("MONDO:0004995", Relation.BROAD_MATCH)}
    assert kg.crosswalk("MONDO:0004995", to="ICD10CM", hops=1) == [] or broad
    assert kg.count("ICD10CM") == 4  # cross-walks never invent ICD-10-CM codes


def test_every_valid_doid_icd10cm_xref_resolves_through_crosswalk(data_dir: Path) -> None:
    """Each DOID→ICD10CM xref of ``allXREFinDO.tsv`` that is a valid 2026 code is a ``crosswalk`` result;
    the others (retired or made-up codes) are not invented as concepts."""
    import csv
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simple_icd_10_cm as icd

    with (data_dir / "doid" / "allXREFinDO.tsv").open(encoding="utf-8", newline="") as fh:
        pairs = {(r["id"], r["xref"].removeprefix("ICD10CM:")) for r in csv.DictReader(fh, delimiter="\t")
                 if r["xref"].startswith("ICD10CM:")}
    valid = {(d, c) for d, c in pairs if icd.is_valid_item(c)}
    invalid = pairs - valid
    assert len(valid) > 3_000 and invalid  # the file has both kinds
    kg = KnowledgeGraph([IcdSubset(sorted({c for _, c in valid})), DoidReports(data_dir / "doid")],
                        use_cache=False).load()
    missing = [(d, c) for d, c in sorted(valid)
               if f"ICD10CM:{c}" not in {x.id for x in kg.crosswalk(d, to="ICD10CM", hops=1)}]
    assert missing == []
    assert all(kg.get(f"ICD10CM:{c}") is None for _, c in invalid if c not in {v for _, v in valid})
