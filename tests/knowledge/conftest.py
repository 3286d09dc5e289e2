"""Knowledge-graph fixtures: the embedded graph, loaded once per test session (from the disk cache)."""

from __future__ import annotations

import pytest

from medslm.knowledge import KnowledgeGraph


@pytest.fixture(scope="session")
def kg() -> KnowledgeGraph:
    """The shared embedded graph (ICD-10-CM 2026 + HPO + CCSR); built once into the cache if needed."""
    return KnowledgeGraph.default().load()
