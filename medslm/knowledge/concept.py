"""The knowledge graph's records: concepts, ranked candidates, lexicon matches, relations.

These are small frozen dataclasses rather than pydantic models: a graph holds ~130k concepts and builds
them on demand, so construction cost matters. :meth:`Concept.ref` converts to the pydantic
:class:`medslm.records.ConceptRef` that agents put into their results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medslm.records import ConceptRef


class Relation(StrEnum):
    """Edge types of the graph. Edges point from the concept to the one it names."""

    IS_A = "is_a"  #: child -> parent
    MAPS_TO = "maps_to"  #: cross-walk between systems (stored in both directions)
    BROAD_MATCH = "broad_match"  #: the target is broader (SSSOM skos:broadMatch); reverse: narrow_match
    NARROW_MATCH = "narrow_match"
    HAS_SYMPTOM = "has_symptom"  #: disease -> symptom / phenotype
    EXCLUDES1 = "excludes1"  #: ICD-10-CM: never coded together
    EXCLUDES2 = "excludes2"  #: ICD-10-CM: not included here, may be coded together
    CODE_FIRST = "code_first"  #: ICD-10-CM: code the underlying condition first
    USE_ADDITIONAL = "use_additional"  #: ICD-10-CM: use an additional code
    IN_CATEGORY = "in_category"  #: ICD-10-CM code -> CCSR category


@dataclass(frozen=True, slots=True)
class Concept:
    """One node of the graph, keyed ``SYSTEM:code`` (``ICD10CM:I21.4``, ``HP:0002094``, ``DOID:9352``)."""

    id: str
    system: str
    code: str
    label: str
    synonyms: tuple[str, ...] = ()
    kind: str = ""
    """Semantic type or kind: ``category``, ``subcategory``, ``extended``, ``block``, ``chapter``
    (ICD-10-CM), ``phenotype`` (HPO), ``disease``, a UMLS semantic type (``T047``)…"""
    billable: bool | None = None
    """ICD-10-CM: True for leaves (valid on a claim); None for systems without the notion."""
    excludes1: tuple[str, ...] = ()
    excludes2: tuple[str, ...] = ()
    code_first: tuple[str, ...] = ()
    use_additional: tuple[str, ...] = ()
    inclusion_terms: tuple[str, ...] = ()
    definition: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The preferred label followed by synonyms and inclusion terms, without duplicates."""
        return tuple(dict.fromkeys((self.label, *self.synonyms, *self.inclusion_terms)))

    def ref(self, score: float = 1.0) -> ConceptRef:
        from medslm.records import ConceptRef

        return ConceptRef(id=self.id, label=self.label, score=max(0.0, min(1.0, score)))

    def __str__(self) -> str:
        return f"{self.id} {self.label}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A ranked answer of :meth:`KnowledgeGraph.lookup` or :meth:`KnowledgeGraph.search`."""

    concept: Concept
    score: float
    """In [0, 1]; 1.0 for an exact match of a name."""
    method: str
    """How it was found: ``exact``, ``normalized``, ``abbreviation``, ``fuzzy``, ``embedding``."""
    matched: str = ""
    """The name of the concept that matched (label, synonym or inclusion term)."""

    @property
    def id(self) -> str:
        return self.concept.id


@dataclass(frozen=True, slots=True)
class Match:
    """A lexicon hit in a text: a half-open character span ``[start, end)`` and the concepts it names."""

    start: int
    end: int
    concept_ids: tuple[str, ...]
    score: float
    text: str = ""
    """The matched text as it appears (``text[start:end]``)."""
    matched: str = field(default="", compare=False)
    """The lexicon term that matched (normalized)."""


__all__ = ["Candidate", "Concept", "Match", "Relation"]
