"""medslm.knowledge: the knowledge graph every agent grounds its output in.

>>> from medslm.knowledge import KnowledgeGraph
>>> kg = KnowledgeGraph.default()        # embedded ICD-10-CM 2026 + HPO + CCSR, cached on disk
>>> kg.validate("I21.4").label
'Non-ST elevation (NSTEMI) myocardial infarction'
>>> [c.concept.code for c in kg.lookup("heart attack", systems=("ICD10CM",), k=3)]  # doctest: +SKIP

Importing this package loads nothing heavy (no torch, transformers, rdflib, networkx).
"""

from medslm.knowledge.builder import ConceptSource, GraphBuilder
from medslm.knowledge.concept import Candidate, Concept, Match, Relation
from medslm.knowledge.graph import KnowledgeGraph, embedded_sources
from medslm.knowledge.matcher import LexiconMatcher

__all__ = [
    "Candidate",
    "Concept",
    "ConceptSource",
    "GraphBuilder",
    "KnowledgeGraph",
    "LexiconMatcher",
    "Match",
    "Relation",
    "embedded_sources",
]
