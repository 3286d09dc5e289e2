"""UMLS Metathesaurus in Rich Release Format (``MRCONSO``, ``MRSTY``, ``MRREL``, ``MRSAB``), bring your own.

You hold the UMLS licence and the files; medslm never ships them. Concepts become ``UMLS:<CUI>`` with the
preferred English name as label and the other strings as synonyms, their semantic types as kind, and
``maps_to`` edges to the source codes they hold (``SNOMEDCT_US`` -> ``SNOMEDCT``, ``ICD10CM``, ``MSH`` ->
``MESH``, ``HPO``, ``OMIM``…), which is what makes CUI <-> SNOMED CT <-> ICD-10-CM cross-walks work.
``MRREL`` ``PAR`` rows give CUI-level ``is_a`` edges. Filter by source (``SAB``) and language (``LAT``).
Files are streamed: a full release works, in minutes; keep ``sources`` small for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from medslm.errors import KnowledgeError
from medslm.knowledge.builder import GraphBuilder, curie, files_version, icd10cm_dotted
from medslm.knowledge.concept import Relation

#: MRCONSO.RRF columns (UMLS Reference Manual, 3.3.4)
MRCONSO = ("CUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "AUI", "SAUI", "SCUI", "SDUI", "SAB", "TTY",
           "CODE", "STR", "SRL", "SUPPRESS", "CVF")
MRREL = ("CUI1", "AUI1", "STYPE1", "REL", "CUI2", "AUI2", "STYPE2", "RELA", "RUI", "SRUI", "SAB", "SL", "RG",
         "DIR", "SUPPRESS", "CVF")
MRSTY = ("CUI", "TUI", "STN", "STY", "ATUI", "CVF")
MRSAB = ("VCUI", "RCUI", "VSAB", "RSAB", "SON", "SF", "SVER", "VSTART", "VEND", "IMETA", "RMETA", "SLC", "SCC",
         "SRL", "TFR", "CFR", "CXTY", "TTYL", "ATNL", "LAT", "CENC", "CURVER", "SABIN", "SSN", "SCIT")

#: UMLS source abbreviation -> medslm system
SAB_SYSTEMS = {
    "SNOMEDCT_US": "SNOMEDCT", "SNOMEDCT": "SNOMEDCT", "ICD10CM": "ICD10CM", "ICD10": "ICD10WHO",
    "ICD9CM": "ICD9CM", "MSH": "MESH", "HPO": "HPO", "OMIM": "OMIM", "NCI": "NCIT", "MDR": "MEDDRA",
    "ORPHANET": "ORPHANET", "RXNORM": "RXNORM", "LNC": "LOINC", "MEDLINEPLUS": "MEDLINEPLUS",
}


def read_rrf(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Rows of a pipe-delimited RRF file as dicts (the trailing ``|`` of every line ignored)."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("|")
            if parts and parts[-1] == "":
                parts.pop()
            if len(parts) != len(columns):
                raise KnowledgeError(
                    f"{path.name} line {n}: {len(parts)} fields, expected {len(columns)} "
                    f"({'|'.join(columns)}); is this the right file of a UMLS RRF release?"
                )
            yield dict(zip(columns, parts, strict=True))


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / "META" / name):
        if candidate.exists():
            return candidate
    found = sorted(directory.rglob(name))
    return found[0] if found else None


class UmlsRrfSource:
    """A UMLS Metathesaurus subset in RRF (a release's ``META`` directory or a MetamorphoSys subset)."""

    name = "umls"

    def __init__(self, directory: str | Path, *, sources: Iterable[str] | None = (
            "SNOMEDCT_US", "ICD10CM", "MSH", "HPO", "OMIM"), languages: Iterable[str] = ("ENG",),
            include_suppressed: bool = False) -> None:
        self.directory = Path(directory)
        self.sources = frozenset(sources) if sources is not None else None
        self.languages = frozenset(languages)
        self.include_suppressed = include_suppressed

    def _path(self, name: str, required: bool = True) -> Path | None:
        p = _find(self.directory, name)
        if p is None and required:
            raise KnowledgeError(
                f"{name} not found under {self.directory}; pass the UMLS release's META directory "
                "(with MRCONSO.RRF, MRSTY.RRF, MRREL.RRF)"
            )
        return p

    def version(self) -> str:
        paths = [p for n in ("MRCONSO.RRF", "MRSTY.RRF", "MRREL.RRF", "MRSAB.RRF") if (p := _find(self.directory, n))]
        filt = f"{sorted(self.sources) if self.sources else 'all'}|{sorted(self.languages)}|{self.include_suppressed}"
        return f"{files_version(paths)}|{filt}"

    def release(self) -> dict[str, str]:
        """Current source versions from ``MRSAB`` (``RSAB`` -> ``SVER``)."""
        p = self._path("MRSAB.RRF", required=False)
        if p is None:
            return {}
        return {r["RSAB"]: r["SVER"] for r in read_rrf(p, MRSAB) if r["CURVER"] == "Y"}

    def load(self, builder: GraphBuilder) -> None:
        conso = self._path("MRCONSO.RRF")
        assert conso is not None
        preferred: dict[str, tuple[int, str]] = {}
        names: dict[str, list[str]] = {}
        codes: list[tuple[str, str, str, str]] = []  # (cui, system, code, string)
        for r in read_rrf(conso, MRCONSO):
            if r["LAT"] not in self.languages:
                continue
            if self.sources is not None and r["SAB"] not in self.sources:
                continue
            if not self.include_suppressed and r["SUPPRESS"] in ("O", "E", "Y"):
                continue
            cui, text = r["CUI"], r["STR"]
            # rank: preferred term of the preferred string of the preferred atom first
            rank = (r["TS"] != "P") * 4 + (r["STT"] != "PF") * 2 + (r["ISPREF"] != "Y")
            if cui not in preferred or rank < preferred[cui][0]:
                preferred[cui] = (rank, text)
            names.setdefault(cui, []).append(text)
            system = SAB_SYSTEMS.get(r["SAB"])
            if system and r["CODE"] and r["CODE"] != "NOCODE":
                code = r["CODE"]
                if system == "ICD10CM":
                    code = icd10cm_dotted(code)
                elif system == "HPO":
                    code = code.partition(":")[2] or code
                codes.append((cui, system, code, text))
        kinds: dict[str, str] = {}
        sty = self._path("MRSTY.RRF", required=False)
        if sty is not None:
            for r in read_rrf(sty, MRSTY):
                if r["CUI"] in preferred and r["CUI"] not in kinds:
                    kinds[r["CUI"]] = f"{r['TUI']} {r['STY']}"
        for cui, (_, label) in preferred.items():
            builder.add_concept("UMLS", cui, label, synonyms=names[cui], kind=kinds.get(cui, ""))
        for cui, system, code, text in codes:
            norm = curie(f"{system}:{code}")
            if norm is None:
                continue
            builder.add_concept(system, norm[2], text)  # names the code when its owner did not load
            builder.add_mapping(f"UMLS:{cui}", norm[0])
        rel = self._path("MRREL.RRF", required=False)
        if rel is not None:
            for r in read_rrf(rel, MRREL):
                if r["REL"] != "PAR" or r["CUI1"] == r["CUI2"]:
                    continue
                if r["CUI1"] in preferred and r["CUI2"] in preferred:
                    # "REL: relationship of the second concept to the first": CUI2 is a parent of CUI1
                    builder.add_edge(f"UMLS:{r['CUI1']}", f"UMLS:{r['CUI2']}", Relation.IS_A)


__all__ = ["MRCONSO", "MRREL", "MRSAB", "MRSTY", "SAB_SYSTEMS", "UmlsRrfSource", "read_rrf"]
