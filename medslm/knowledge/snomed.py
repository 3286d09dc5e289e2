"""SNOMED CT RF2 snapshot (concepts, descriptions, language refset, relationships, ICD-10 maps), bring your own.

Point it at a release folder (International or US Edition); files are found by their RF2 names anywhere
below it (``sct2_Concept_Snapshot*``, ``sct2_Description_Snapshot-en*``, ``der2_cRefset_Language
Snapshot-en*``, ``sct2_Relationship_Snapshot*``, ``der2_iisssccRefset_ExtendedMapSnapshot*``). Active
concepts become ``SNOMEDCT:<sctid>`` with the preferred synonym of the chosen language refset as label,
the semantic tag of the fully specified name as kind, and the other acceptable descriptions as synonyms;
active ``116680003 |Is a|`` relationships become ``is_a`` edges; rows of the ICD-10-CM (US Edition
``6011000124106``) or ICD-10 (``447562003``) extended map refsets become ``maps_to`` edges.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from medslm.errors import KnowledgeError
from medslm.knowledge.builder import GraphBuilder, curie, files_version
from medslm.knowledge.concept import Relation

FSN, SYNONYM = "900000000000003001", "900000000000013009"
PREFERRED, ACCEPTABLE = "900000000000548007", "900000000000549004"
US_ENGLISH, GB_ENGLISH = "900000000000509007", "900000000000508004"
IS_A = "116680003"
ICD10CM_MAP, ICD10_MAP = "6011000124106", "447562003"
_SEMANTIC_TAG = re.compile(r"\s*\(([^()]+)\)\s*$")

PATTERNS = {
    "concept": "sct2_Concept_*Snapshot*.txt",
    "description": "sct2_Description_*Snapshot-en*.txt",
    "language": "der2_cRefset_*LanguageSnapshot-en*.txt",
    "relationship": "sct2_Relationship_Snapshot*.txt",
    "extended_map": "der2_iisssccRefset_*ExtendedMapSnapshot*.txt",
}


def read_rf2(path: Path) -> Iterator[dict[str, str]]:
    """Rows of an RF2 file (UTF-8, tab-separated, header line, CRLF line ends)."""
    with path.open(encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


class SnomedRf2Source:
    """A SNOMED CT RF2 snapshot folder."""

    name = "snomedct"

    def __init__(self, directory: str | Path, *, language_refset: str = US_ENGLISH,
                 map_refsets: dict[str, str] | None = None) -> None:
        self.directory = Path(directory)
        self.language_refset = language_refset
        self.map_refsets = map_refsets or {ICD10CM_MAP: "ICD10CM", ICD10_MAP: "ICD10WHO"}

    def files(self) -> dict[str, list[Path]]:
        return {k: sorted(self.directory.rglob(p)) for k, p in PATTERNS.items()}

    def version(self) -> str:
        paths = [p for ps in self.files().values() for p in ps]
        return f"{files_version(paths)}|{self.language_refset}|{sorted(self.map_refsets)}"

    def load(self, builder: GraphBuilder) -> None:
        files = self.files()
        for need in ("concept", "description"):
            if not files[need]:
                raise KnowledgeError(
                    f"no {PATTERNS[need]} under {self.directory}; pass a SNOMED CT RF2 release folder "
                    "(its Snapshot/Terminology files)"
                )
        active = {r["id"] for p in files["concept"] for r in read_rf2(p) if r["active"] == "1"}
        acceptability: dict[str, str] = {}
        for p in files["language"]:
            for r in read_rf2(p):
                if r["active"] == "1" and r["refsetId"] == self.language_refset:
                    acceptability[r["referencedComponentId"]] = r["acceptabilityId"]
        labels: dict[str, str] = {}
        kinds: dict[str, str] = {}
        synonyms: dict[str, list[str]] = {}
        for p in files["description"]:
            for r in read_rf2(p):
                cid = r["conceptId"]
                if r["active"] != "1" or cid not in active:
                    continue
                acc = acceptability.get(r["id"])
                if acceptability and acc is None:
                    continue  # not in this dialect
                if r["typeId"] == FSN:
                    m = _SEMANTIC_TAG.search(r["term"])
                    if m:
                        kinds[cid] = m.group(1)
                elif acc == PREFERRED or (not acceptability and cid not in labels):
                    labels[cid] = r["term"]
                else:
                    synonyms.setdefault(cid, []).append(r["term"])
        for cid in active:
            builder.add_concept("SNOMEDCT", cid, labels.get(cid, ""), synonyms=synonyms.get(cid, ()),
                                kind=kinds.get(cid, ""))
        for p in files["relationship"]:
            for r in read_rf2(p):
                if r["active"] == "1" and r["typeId"] == IS_A and r["sourceId"] in active:
                    builder.add_edge(f"SNOMEDCT:{r['sourceId']}", f"SNOMEDCT:{r['destinationId']}", Relation.IS_A)
        for p in files["extended_map"]:
            for r in read_rf2(p):
                system = self.map_refsets.get(r["refsetId"])
                target = r.get("mapTarget", "").strip()
                if r["active"] != "1" or system is None or not target or r["referencedComponentId"] not in active:
                    continue
                norm = curie(f"{system}:{target}")
                if norm is not None:
                    builder.add_mapping(f"SNOMEDCT:{r['referencedComponentId']}", norm[0])


__all__ = ["SnomedRf2Source", "read_rf2"]
