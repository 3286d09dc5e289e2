"""Embedding search with all-MiniLM-L6-v2 (offline) on a small graph, and the term-list source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medslm.knowledge import KnowledgeGraph
from medslm.knowledge.terms import TermListSource

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")

TERMS = [
    ("LOCAL:1", "Myocardial infarction"),
    ("LOCAL:2", "Fracture of femur"),
    ("LOCAL:3", "Asthma"),
    ("LOCAL:4", "Migraine"),
    ("LOCAL:5", "Essential hypertension"),
    ("LOCAL:6", "Urinary tract infection"),
    ("LOCAL:7", "Major depressive disorder"),
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeGraph:
    cache = tmp_path_factory.mktemp("kgcache")
    return KnowledgeGraph([TermListSource(TERMS, name="local")], cache_dir=cache).load()


def test_term_list_source(small: KnowledgeGraph) -> None:
    assert small.count("LOCAL") == 7
    assert small.get("LOCAL:3").label == "Asthma"
    assert small.lookup("asthma", systems=("LOCAL",), k=1)[0].concept.id == "LOCAL:3"


@pytest.mark.parametrize(
    ("query", "expected"),
    [("heart attack", "LOCAL:1"), ("broken thigh bone", "LOCAL:2"), ("high blood pressure", "LOCAL:5"),
     ("bladder infection", "LOCAL:6"), ("severe headache", "LOCAL:4"), ("feeling very sad and hopeless", "LOCAL:7")],
)
def test_embedding_search(small: KnowledgeGraph, query: str, expected: str) -> None:
    hits = small.search(query, k=3, systems=("LOCAL",))
    assert hits[0].concept.id == expected, [(h.id, h.score) for h in hits]
    assert hits[0].method == "embedding" and 0.3 < hits[0].score <= 1.0
    assert hits[0].score > hits[1].score


def test_embedding_cache_on_disk(small: KnowledgeGraph) -> None:
    from medslm.knowledge.embedding import EmbeddingIndex, encoder

    files = list(small.cache_dir.glob("emb-LOCAL-*.npy"))
    assert len(files) == 1
    vecs = np.load(files[0])
    assert vecs.shape == (7, 384) and vecs.dtype == np.float16
    assert np.allclose(np.linalg.norm(vecs.astype(np.float32), axis=1), 1.0, atol=1e-2)
    again = EmbeddingIndex.for_graph(small, "LOCAL")  # from the cache: same vectors
    assert again.ids == [c for c, _ in TERMS]
    assert np.allclose(again.vectors, vecs.astype(np.float32))
    one = encoder().encode(["Asthma"])[0]
    assert float(one @ again.vectors[2]) > 0.99


def test_term_list_tsv_adds_names_to_closed_systems(tmp_path: Path) -> None:
    from medslm.knowledge.testing import FewIcdCodes

    tsv = tmp_path / "local.tsv"
    tsv.write_text("# id\tname\nICD10CM:I10\tbp too high\nICD10CM:X99.99\tnot a code\nLOCAL:9\tsite term\n")
    kg = KnowledgeGraph([FewIcdCodes(), TermListSource(tsv, name="site")], use_cache=False).load()
    assert kg.count("ICD10CM") == 4  # no code invented
    assert kg.lookup("bp too high", systems=("ICD10CM",), k=1)[0].concept.code == "I10"
    assert "bp too high" in kg.borrowed_synonyms("I10") and "bp too high" not in kg.get("I10").synonyms
    assert kg.get("LOCAL:9").label == "site term"
