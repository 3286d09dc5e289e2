"""The Disease Ontology from its TSV reports (``DOreports/``): terms, hierarchy, xrefs, symptoms.

The reports are what the DO project publishes beside ``doid.obo``: ``HumanDO.tsv`` (id, label, parent
label), ``allXREFinDO.tsv`` (id, label, xref) and ``disease-symptom.tsv`` (DOID -> SYMP). When you have
``doid.obo`` use :class:`medslm.knowledge.obo.OboSource` instead (it also carries synonyms).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from medslm.errors import KnowledgeError
from medslm.knowledge.builder import GraphBuilder, curie, files_version
from medslm.knowledge.concept import Relation
from medslm.knowledge.obo import MAPPED_PREFIXES


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            yield {k.strip().strip('"'): (v or "").strip().strip('"') for k, v in row.items() if k}


class DoidReports:
    """Disease Ontology TSV reports in a directory (``HumanDO.tsv`` is required; the rest optional)."""

    name = "doid"
    FILES = ("HumanDO.tsv", "allXREFinDO.tsv", "disease-symptom.tsv")

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def version(self) -> str:
        return files_version(p for f in self.FILES if (p := self.directory / f).exists())

    def load(self, builder: GraphBuilder) -> None:
        main = self.directory / "HumanDO.tsv"
        if not main.exists():
            raise KnowledgeError(
                f"{main} not found; pass the directory holding the Disease Ontology reports "
                "(HumanDO.tsv, allXREFinDO.tsv, disease-symptom.tsv)"
            )
        by_label: dict[str, str] = {}
        parents: list[tuple[str, str]] = []
        for row in _rows(main):
            norm = curie(row["id"])
            if norm is None:
                continue
            cid = builder.add_concept("DOID", norm[2], row["label"], kind="disease")
            by_label.setdefault(row["label"], cid)
            if row.get("subClassOf"):
                parents.append((cid, row["subClassOf"]))
        builder.closed.add("DOID")
        for cid, parent_label in parents:
            pid = by_label.get(parent_label)
            if pid is not None and pid != cid:
                builder.add_edge(cid, pid, Relation.IS_A)
        xrefs = self.directory / "allXREFinDO.tsv"
        if xrefs.exists():
            for row in _rows(xrefs):
                src, dst = curie(row["id"]), curie(row.get("xref", ""))
                if src is None or dst is None or dst[1] not in MAPPED_PREFIXES or src[0] not in builder.concepts:
                    continue
                builder.add_mapping(src[0], dst[0])
        symptoms = self.directory / "disease-symptom.tsv"
        if symptoms.exists():
            for row in _rows(symptoms):
                d, s = curie(row["disease_id"]), curie(row["symptom_id"])
                if d is None or s is None:
                    continue
                sid = builder.add_concept(s[1], s[2], row.get("symptom_label", ""), kind="symptom")
                builder.add_edge(builder.ensure(d[0]), sid, Relation.HAS_SYMPTOM)


__all__ = ["DoidReports"]
