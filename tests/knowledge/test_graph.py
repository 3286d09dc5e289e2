"""The embedded graph: counts, get/validate/is_billable, hierarchy, notes, CCSR."""

from __future__ import annotations

import sys

import pytest

from medslm.errors import InvalidCodeError, KnowledgeError
from medslm.knowledge import Concept, KnowledgeGraph, Relation

# simple_icd_10_cm reads its data with the deprecated importlib.resources.read_text at import
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated. Use files\\(\\) instead:DeprecationWarning")


def test_import_is_light() -> None:
    import subprocess

    code = (
        "import sys, medslm.knowledge; "
        "bad = [m for m in ('torch', 'transformers', 'rdflib', 'networkx', 'sentence_transformers') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_icd10cm_counts_match_the_package(kg: KnowledgeGraph) -> None:
    import simple_icd_10_cm as icd

    codes = icd.get_all_codes(True)
    assert len(codes) == 98_505
    assert kg.count("ICD10CM") == 98_505
    billable = {c.code for c in kg.concepts("ICD10CM") if c.billable}
    # the package's is_leaf() is also true for 12 empty header blocks (C00-C96, V00-X58, …) that are
    # not codes; and it counts 5 one-category blocks twice in its 74,736 rows
    leaves = {c for c in codes if icd.is_leaf(c) and "-" not in c and not icd.is_chapter(c)}
    assert billable == leaves
    assert len(billable) == 74_719
    assert sum(1 for c in codes if icd.is_leaf(c)) == 74_736
    kinds: dict[str, int] = {}
    for c in kg.concepts("ICD10CM"):
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    # the shared TSV labels both rows of the 39 one-category blocks (B99 block + B99 category) "block":
    # 336 = 258 range blocks + 2 x 39; here 297 blocks (258 + 39 "B99-B99") and 1,879 + 39 categories
    assert kinds == {"chapter": 22, "block": 297, "category": 1_918, "subcategory": 44_963, "extended": 51_305}


def test_counts_match_the_shared_tsv(kg: KnowledgeGraph, data_dir) -> None:
    import csv

    path = data_dir / "icd10cm" / "icd10cm_2026_from_simple_icd_10_cm.tsv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 98_505
    leaves = {r["code"] for r in rows if r["is_leaf"] == "1" and "-" not in r["code"] and r["kind"] != "chapter"}
    assert len(leaves) == 74_719
    assert all(kg.is_billable(c) for c in leaves)
    for r in rows[:: 97]:
        c = kg.get(r["code"]) if r["kind"] != "block" else kg.get(r["code"]) or kg.get(f"{r['code']}-{r['code']}")
        assert c is not None, r["code"]
        assert " ".join(c.label.split()) == r["description"]  # the TSV collapsed tabs and newlines


def test_get_accepts_ids_and_bare_codes(kg: KnowledgeGraph) -> None:
    c = kg.get("ICD10CM:I21.4")
    assert isinstance(c, Concept)
    assert (c.id, c.system, c.code) == ("ICD10CM:I21.4", "ICD10CM", "I21.4")
    assert c.label == "Non-ST elevation (NSTEMI) myocardial infarction"
    assert c.billable is True and c.kind == "subcategory"
    assert "Non-Q wave myocardial infarction NOS" in c.inclusion_terms
    assert kg.get("I21.4") == c == kg.get("I214") == kg.get("i21.4")
    assert kg.get("X99.999") is None
    hp = kg.get("HP:0002094")
    assert hp is not None and hp.system == "HPO" and hp.label == "Dyspnea"
    assert "Shortness of breath" in hp.synonyms
    assert kg.get("hp:0002094") == hp


def test_validate(kg: KnowledgeGraph) -> None:
    with pytest.raises(InvalidCodeError) as err:
        kg.validate("E11.9X")
    assert err.value.nearest[0] == "E11.9"
    assert "E11.9X" in str(err.value) and "nearest valid codes: E11.9" in str(err.value)
    assert isinstance(err.value, KnowledgeError)
    seven = kg.validate("S67.01XA")
    assert seven.label == "Crushing injury of right thumb, initial encounter"
    assert seven.kind == "extended" and seven.billable
    assert kg.validate("S6701XA") == seven
    assert kg.parents("S67.01XA")[0].code == "S67.01"
    with pytest.raises(InvalidCodeError) as err:
        kg.validate("S67.01XZ")
    assert set(err.value.nearest) & {"S67.01XA", "S67.01XD", "S67.01XS"}
    assert kg.validate("ICD10CM:I10").code == "I10"


def test_billable(kg: KnowledgeGraph) -> None:
    assert kg.is_billable("E11.9") is True
    assert kg.is_billable("E11") is False  # a category with subcategories
    assert kg.is_billable("I10") is True  # a category that is a leaf
    assert kg.is_billable("S67.01") is False and kg.is_billable("S67.01XA") is True
    assert kg.is_billable("E11.9X") is False


def test_one_category_blocks_do_not_collide(kg: KnowledgeGraph) -> None:
    block, cat = kg.get("B99-B99"), kg.get("B99")
    assert block is not None and cat is not None
    assert (block.kind, cat.kind) == ("block", "category")
    assert [p.id for p in kg.parents("B99")] == ["ICD10CM:B99-B99"]
    assert [p.id for p in kg.parents("B99-B99")] == ["ICD10CM:1"]
    assert [c.code for c in kg.children("B99")] == ["B99.8", "B99.9"]


def test_hierarchy(kg: KnowledgeGraph) -> None:
    assert [c.code for c in kg.ancestors("I21.4")] == ["I21", "I20-I25", "9"]
    desc = {c.code for c in kg.descendants("I21")}
    assert {"I21.4", "I21.9", "I21.A1", "I21.01"} <= desc
    assert "I22.0" not in desc
    assert all(kg.get(c).billable for c in desc if not kg.children(c))
    hp = [c.id for c in kg.ancestors("HP:0002094")]
    assert "HP:0000118" in hp  # Phenotypic abnormality


def test_icd_notes(kg: KnowledgeGraph) -> None:
    e11 = kg.get("E11")
    assert any("E10.-" in n for n in e11.excludes1)
    assert {"E10", "E08", "E13", "O24.4"} <= set(kg.excludes1("E11.9"))  # inherited from E11
    assert kg.excludes1("E11.9", inherited=False) == ["E11.A"]  # its own note only
    assert any("E11.A" in n for n in kg.get("E11.9").excludes1)
    assert kg.excluded_together("E11.9", "E10.9")
    assert not kg.excluded_together("E11.9", "I10")
    # code first / use additional code notes become edges to the cited codes
    e08 = kg.get("E08")
    assert "cystic fibrosis (E84.-)" in e08.code_first
    assert {"ICD10CM:E84", "ICD10CM:P35.0", "ICD10CM:E40-E46"} <= {c.id for c in kg.related("E08", Relation.CODE_FIRST)}
    assert any("Z79.4" in n for n in e11.use_additional)
    assert "ICD10CM:Z79.4" in {c.id for c in kg.related("E11", Relation.USE_ADDITIONAL)}


def test_ccsr(kg: KnowledgeGraph) -> None:
    cats = kg.related("E11.9", Relation.IN_CATEGORY)
    assert [c.id for c in cats] == ["CCSR:END002"]
    assert "endocrine" in cats[0].label


def test_hpo_crosswalks(kg: KnowledgeGraph) -> None:
    assert kg.count("HPO") > 18_000
    umls = {c.id for c in kg.crosswalk("HP:0001658", to="UMLS")}
    assert "UMLS:C0027051" in umls  # myocardial infarction
    snomed = {c.code for c in kg.crosswalk("HP:0002094", to="SNOMEDCT")}
    assert "267036007" in snomed  # dyspnea


def test_unknown_code_in_queries_raises(kg: KnowledgeGraph) -> None:
    with pytest.raises(InvalidCodeError):
        kg.ancestors("E11.9X")


def test_the_cache_is_signed_and_a_crafted_pickle_is_never_loaded(tmp_path) -> None:
    """A cache file is unpickled only under this installation's HMAC: a crafted one is refused and rebuilt."""
    import pickle
    from pathlib import Path

    from medslm.knowledge.snomed import SnomedRf2Source

    fixtures = Path(__file__).parent / "fixtures" / "snomed"
    first = KnowledgeGraph([SnomedRf2Source(fixtures)], cache_dir=tmp_path).load()
    assert first.built and first.cache_path.exists()
    assert first.cache_path.read_bytes().startswith(b"medslm-kg-signed-v1\n")
    again = KnowledgeGraph([SnomedRf2Source(fixtures)], cache_dir=tmp_path).load()
    assert not again.built  # the signed cache was read

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    payload = pickle.dumps(Evil())
    for blob in (payload, b"medslm-kg-signed-v1\n" + b"\0" * 32 + payload):  # unsigned, and a forged signature
        first.cache_path.write_bytes(blob)
        crafted = KnowledgeGraph([SnomedRf2Source(fixtures)], cache_dir=tmp_path).load()
        assert crafted.built and not marker.exists()
        assert crafted.get("SNOMEDCT:900000101") is not None
