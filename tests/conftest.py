"""Shared fixtures: the public data folder and the embedded model (loaded once per test session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("MEDSLM_DATA_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The public datasets (``../shared/data`` beside the checkout, or ``$MEDSLM_DATA_DIR``)."""
    path = _data_dir()
    if not path.is_dir():
        pytest.fail(f"public data not found at {path}; set MEDSLM_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def embedded_lm():
    """The embedded SmolLM2-135M-Instruct, loaded once per session (shared process-wide by the catalog)."""
    from medslm.models.catalog import load_model

    return load_model("embedded").load()


@pytest.fixture(scope="session")
def kg():
    """The shared embedded graph (ICD-10-CM 2026 + HPO + CCSR); built once into the cache if needed."""
    from medslm.knowledge import KnowledgeGraph

    return KnowledgeGraph.default().load()


@pytest.fixture(scope="session")
def sample_reviews(tmp_path_factory):
    """The real chart review of the 18 bundled sample notes, run once per session: ``(report, jsonl path)``."""
    from medslm.graphs.runner import review_batch
    from medslm.samples import load_samples

    out = tmp_path_factory.mktemp("sample-reviews") / "samples.reviews.jsonl"
    report = review_batch(load_samples(), out, progress=False)
    assert len(report.reviews) == 18
    return report, out
