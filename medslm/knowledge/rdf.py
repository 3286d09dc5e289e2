"""RDF, OWL and SKOS through rdflib: UMLS-RDF as ``umls2rdf`` writes it, OBO-style OWL, SKOS schemes.

Any class or SKOS concept with a label becomes a concept. Its id comes from the IRI: OBO PURLs
(``…/obo/HP_0000822`` -> ``HP:0000822``), BioPortal / umls2rdf IRIs (``…/ontology/SNOMEDCT/22298006`` ->
``SNOMEDCT:22298006``, ``…/ontology/ICD10CM/I21.4``), ``http://snomed.info/id/<sctid>`` and
``identifiers.org`` IRIs; other IRIs become ``<prefix>:<local name>`` with ``prefix`` as given.
Labels: ``skos:prefLabel`` then ``rdfs:label``; synonyms: ``skos:altLabel`` and ``oboInOwl:has*Synonym``;
``rdfs:subClassOf`` (named classes) and ``skos:broader`` give ``is_a``; ``skos:exactMatch`` /
``closeMatch``, ``oboInOwl:hasDbXref`` and umls2rdf's ``umls:cui`` give cross-walks. OWL in functional
syntax (the SNOMED OWL refset's axioms) is not RDF: convert it first (e.g. ``robot convert``).
"""

from __future__ import annotations

import re
from pathlib import Path

from medslm.errors import KnowledgeError, MissingExtraError
from medslm.knowledge.builder import GraphBuilder, curie, files_version, system_of_prefix
from medslm.knowledge.concept import Relation
from medslm.knowledge.obo import MAPPED_PREFIXES

_OBO = re.compile(r"^https?://purl\.obolibrary\.org/obo/([A-Za-z]+)_([A-Za-z0-9]+)$")
_BIOPORTAL = re.compile(r"^https?://purl\.bioontology\.org/ontology/([A-Za-z0-9_-]+)/(.+)$")
_SNOMED = re.compile(r"^https?://snomed\.info/id/(\d+)$")
_IDENTIFIERS = re.compile(r"^https?://identifiers\.org/([A-Za-z0-9_.-]+)[/:](.+)$")
_LOCAL = re.compile(r"[#/]([^#/]+)$")

OBOINOWL = "http://www.geneontology.org/formats/oboInOwl#"
UMLS_CUI = "http://bioportal.bioontology.org/ontologies/umls/cui"
SYNONYM_PROPERTIES = tuple(OBOINOWL + p for p in ("hasExactSynonym", "hasRelatedSynonym", "hasNarrowSynonym",
                                                  "hasBroadSynonym"))


def iri_to_curie(iri: str, default_prefix: str = "") -> str | None:
    """``http://purl.obolibrary.org/obo/HP_0000822`` -> ``HP:0000822`` (None for blank nodes etc.)."""
    for pattern in (_OBO, _BIOPORTAL, _IDENTIFIERS):
        m = pattern.match(iri)
        if m:
            norm = curie(f"{m.group(1)}:{m.group(2)}")
            return norm[0] if norm else None
    m = _SNOMED.match(iri)
    if m:
        return f"SNOMEDCT:{m.group(1)}"
    if default_prefix:
        m = _LOCAL.search(iri)
        if m:
            return f"{system_of_prefix(default_prefix)[1]}:{m.group(1)}"
    return None


class RdfSource:
    """An RDF file (RDF/XML, Turtle, N-Triples, JSON-LD…) read with rdflib."""

    def __init__(self, path: str | Path, *, format: str | None = None, prefix: str = "",
                 name: str | None = None) -> None:
        self.path = Path(path)
        self.format = format
        self.prefix = prefix
        self.name = name or self.path.stem

    def version(self) -> str:
        return f"{files_version([self.path])}|{self.prefix}"

    def load(self, builder: GraphBuilder) -> None:
        try:
            import rdflib
            from rdflib.namespace import OWL, RDF, RDFS, SKOS
        except ImportError as exc:
            raise MissingExtraError(package="rdflib", extra="rdf", feature="RDF/OWL loading") from exc
        if not self.path.exists():
            raise KnowledgeError(f"RDF file {self.path} does not exist")
        g = rdflib.Graph()
        fmt = self.format or rdflib.util.guess_format(str(self.path)) or "xml"
        try:
            g.parse(str(self.path), format=fmt)
        except Exception as exc:
            raise KnowledgeError(
                f"could not parse {self.path} as {fmt} RDF ({exc}); pass format= "
                "('xml', 'turtle', 'nt', 'json-ld'); OWL functional syntax needs converting first"
            ) from exc

        def cid(node: object) -> str | None:
            return iri_to_curie(str(node), self.prefix) if isinstance(node, rdflib.URIRef) else None

        def text(node: object) -> str:
            return str(node).strip() if isinstance(node, rdflib.Literal) else ""

        subjects = set(g.subjects(RDF.type, OWL.Class)) | set(g.subjects(RDF.type, SKOS.Concept))
        subjects |= set(g.subjects(SKOS.prefLabel, None)) | set(g.subjects(RDFS.label, None))
        for kind in (OWL.AnnotationProperty, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.Ontology, RDF.Property):
            subjects -= set(g.subjects(RDF.type, kind))
        deprecated = {s for s in g.subjects(OWL.deprecated, None) if str(g.value(s, OWL.deprecated)).lower() == "true"}
        ids: dict[object, str] = {}
        for s in subjects:
            if s in deprecated:
                continue
            c = cid(s)
            if c is None:
                continue
            labels = [text(o) for o in g.objects(s, SKOS.prefLabel)] + [text(o) for o in g.objects(s, RDFS.label)]
            labels = [x for x in labels if x]
            if not labels:
                continue
            syns = labels[1:] + [text(o) for o in g.objects(s, SKOS.altLabel)]
            for p in SYNONYM_PROPERTIES:
                syns += [text(o) for o in g.objects(s, rdflib.URIRef(p))]
            norm = curie(c)
            if norm is None:
                continue
            definition = next((text(o) for o in g.objects(s, SKOS.definition)), "")
            ids[s] = builder.add_concept(norm[1], norm[2], labels[0], synonyms=[x for x in syns if x],
                                         definition=definition)
        for s, c in ids.items():
            for parent in (*g.objects(s, RDFS.subClassOf), *g.objects(s, SKOS.broader)):
                p = cid(parent)
                if p is not None:
                    builder.add_edge(c, p, Relation.IS_A)
            for prop in (SKOS.exactMatch, SKOS.closeMatch):
                for o in g.objects(s, prop):
                    t = cid(o)
                    if t is not None:
                        builder.add_mapping(c, t)
            for o in g.objects(s, rdflib.URIRef(OBOINOWL + "hasDbXref")):
                x = curie(text(o))
                if x is not None and x[1] in MAPPED_PREFIXES and x[0] != c:
                    builder.add_mapping(c, x[0])
            for o in g.objects(s, rdflib.URIRef(UMLS_CUI)):
                if text(o):
                    builder.add_mapping(c, f"UMLS:{text(o)}")


__all__ = ["RdfSource", "iri_to_curie"]
