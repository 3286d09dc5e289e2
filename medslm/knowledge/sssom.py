"""SSSOM mapping tables (TSV with a ``#`` YAML header): cross-walks between terminologies.

``skos:exactMatch``, ``skos:closeMatch`` and ``oboInOwl:hasDbXref`` become ``maps_to`` edges (both
directions); ``skos:broadMatch`` / ``skos:narrowMatch`` become ``broad_match`` / ``narrow_match``.
Subject and object labels, when the table has them, name the concepts (MONDO has no other label source
in the shared data).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from medslm.errors import KnowledgeError
from medslm.knowledge.builder import GraphBuilder, curie, files_version
from medslm.knowledge.concept import Relation

EXACT = frozenset({"skos:exactMatch", "skos:closeMatch", "oboInOwl:hasDbXref", "owl:equivalentClass",
                   "semapv:crossSpeciesExactMatch"})
BROAD, NARROW = "skos:broadMatch", "skos:narrowMatch"


def read_sssom(path: str | Path) -> Iterator[dict[str, str]]:
    """Rows of an SSSOM TSV (the ``#`` metadata header skipped)."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = (line for line in f if not line.startswith("#"))
        yield from csv.DictReader(lines, delimiter="\t")


class SssomSource:
    """One or more SSSOM TSV files (e.g. ``mondo_exactmatch_*.sssom.tsv``)."""

    def __init__(self, paths: str | Path | Iterable[str | Path], *, name: str = "sssom",
                 kinds: dict[str, str] | None = None) -> None:
        if isinstance(paths, (str, Path)):
            p = Path(paths)
            paths = sorted(p.glob("*.sssom.tsv")) if p.is_dir() else [p]
        self.paths = [Path(p) for p in paths]
        self.name = name
        self.kinds = kinds or {"MONDO": "disease", "DOID": "disease", "HPO": "phenotype"}

    def version(self) -> str:
        return files_version(self.paths)

    def load(self, builder: GraphBuilder) -> None:
        if not self.paths:
            raise KnowledgeError(f"no SSSOM files given to source {self.name!r}; pass *.sssom.tsv paths")
        for path in self.paths:
            if not path.exists():
                raise KnowledgeError(f"SSSOM file {path} does not exist")
            for row in read_sssom(path):
                s, o = curie(row.get("subject_id", "")), curie(row.get("object_id", ""))
                pred = row.get("predicate_id", "")
                if s is None or o is None:
                    continue
                sid = builder.add_concept(s[1], s[2], row.get("subject_label", "").removeprefix("obsolete "),
                                          kind=self.kinds.get(s[1], ""))
                oid = builder.add_concept(o[1], o[2], row.get("object_label", ""), kind=self.kinds.get(o[1], ""))
                if pred in EXACT:
                    builder.add_mapping(sid, oid)
                elif pred == BROAD:
                    builder.add_edge(sid, oid, Relation.BROAD_MATCH)
                    builder.add_edge(oid, sid, Relation.NARROW_MATCH)
                elif pred == NARROW:
                    builder.add_edge(sid, oid, Relation.NARROW_MATCH)
                    builder.add_edge(oid, sid, Relation.BROAD_MATCH)


__all__ = ["SssomSource", "read_sssom"]
