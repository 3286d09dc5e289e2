"""The ICD-10-CM Alphabetic Index as a concept source: the recipe's conversion, the names paths read as,
and the shipped artifact embedded in the default knowledge graph."""

from __future__ import annotations

import json

from medslm.knowledge.icd_index import AlphabeticIndex, IndexEntry, add_entries, index_names, read_entries

CSV = """RowID,Letter,Level,Term,See,SeeAlso,NonEssModif,Code
1,S,0,Sprain,,,(joint) (ligament),
2,S,1,ankle,,,,S93.40-
3,S,2,calcaneofibular ligament,,,,S93.41-
4,S,2,specified ligament NEC,,,,S93.49-
5,S,2,talofibular ligament,"Sprain, ankle, specified ligament NEC",,,
6,S,1,breast bone,"Sprain, sternum",,,
7,S,1,sternum,,,,S23.429
8,S,1,imaginary site,,,,Q99.99
9,H,0,History,,,,
10,H,1,family,,,(of),
11,H,2,asthma,,,,Z82.5
"""


def test_parse_index_rebuilds_paths_resolves_see_references_and_checks_codes(tmp_path) -> None:
    from medslm.training.icd_index import parse_index

    path = tmp_path / "index.csv"
    path.write_text(CSV, encoding="utf-8")
    entries, counts = parse_index(path)
    by_path = {", ".join(t): (c, p, s) for t, c, p, s in entries}
    assert by_path["Sprain, ankle"] == ("S93.40", 1, 0)  # "-": a category pointer to complete
    assert by_path["Sprain, ankle, calcaneofibular ligament"] == ("S93.41", 1, 0)
    assert by_path["Sprain, sternum"] == ("S23.429", 0, 0)
    # "see" cross-references become entries of the code they point to
    assert by_path["Sprain, ankle, talofibular ligament"] == ("S93.49", 1, 1)
    assert by_path["Sprain, breast bone"] == ("S23.429", 0, 1)
    assert by_path["History, family, asthma"] == ("Z82.5", 0, 0)
    # a code the 2026 tabular does not hold is dropped and counted
    assert "Sprain, imaginary site" not in by_path and counts["not_in_tabular"] == 1


def test_index_paths_read_as_clinicians_write_them() -> None:
    assert index_names(("Sprain", "ankle")) == ["ankle Sprain", "Sprain of ankle"]
    assert index_names(("Diabetes, diabetic", "type 2", "with", "hyperglycemia")) == [
        "type 2 Diabetes with hyperglycemia"]
    assert index_names(("History", "family", "asthma"))[0] == "family history of asthma"
    assert index_names(("Long-term", "anticoagulants")) == ["long-term use of anticoagulants"]
    assert index_names(("Status", "pacemaker")) == ["pacemaker status"]
    assert "tuberculous hepatitis" in index_names(("Tuberculosis, tubercular, tuberculous", "hepatitis"))
    assert index_names(("Impediment", "speech", "specified NEC")) == []  # would repeat its parent's name


def test_entries_name_existing_codes_only(tmp_path) -> None:
    from medslm.knowledge.builder import GraphBuilder

    b = GraphBuilder()
    b.add_concept("ICD10CM", "S93.40", "Sprain of unspecified ligament of ankle", billable=False)
    add_entries(b, [IndexEntry(("Sprain", "ankle"), "S93.40", True), IndexEntry(("Nothing", "here"), "Q99.99", False)])
    assert b.extra_names["ICD10CM:S93.40"] == ["ankle Sprain", "Sprain of ankle"]
    assert b.index_paths["ICD10CM:S93.40"] == [("Sprain, ankle", True)]
    assert "ICD10CM:Q99.99" not in b.extra_names and "ICD10CM:Q99.99" not in b.concepts


def test_the_default_graph_embeds_the_shipped_index(kg) -> None:
    from medslm.artifacts import artifact_dir

    assert any(isinstance(s, AlphabeticIndex) for s in kg.sources)
    assert "Sprain, ankle" in kg.index_paths("S93.40") and kg.index_pointer("S93.40")
    assert not kg.index_pointer("S93.401A")
    assert "History, personal, nicotine dependence" in kg.index_paths("Z87.891")
    # index names reach codes the tabular list never names this way
    assert kg.lookup("family history of asthma", systems=("ICD10CM",), k=1)[0].concept.code == "Z82.5"
    # every entry of the shipped artifact names a code of the graph
    entries = read_entries(artifact_dir("icd-index") / "index.json")
    assert len(entries) > 60_000
    assert all(kg.get(e.code, "ICD10CM") is not None for e in entries)
    raw = json.loads((artifact_dir("icd-index") / "index.json").read_text(encoding="utf-8"))
    assert raw["format"] == "icd-index-1" and "2026" in raw["tabular"]


def test_the_index_changes_the_graph_cache_key(kg) -> None:
    from medslm.knowledge import KnowledgeGraph
    from medslm.knowledge.icd10cm import EmbeddedCCSR, EmbeddedICD10CM
    from medslm.knowledge.obo import EmbeddedHPO

    without = KnowledgeGraph([EmbeddedICD10CM(), EmbeddedHPO(), EmbeddedCCSR()])
    assert without.cache_key() != kg.cache_key()
    assert any(s.name == "icd10cm-index" and s.version().startswith("icd-index:") for s in kg.sources)
