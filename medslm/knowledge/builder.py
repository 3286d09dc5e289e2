"""Building a graph: the :class:`ConceptSource` contract, CURIE normalization and :class:`GraphBuilder`.

A source (embedded ICD-10-CM, an OBO file, a UMLS directory…) is any object with a ``name``, a
``version()`` that changes whenever its content does (it keys the on-disk cache) and a ``load(builder)``
that adds concepts and edges. A user's class fits without inheriting.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from medslm.knowledge.concept import Relation

#: prefix as found in the wild (upper-cased) -> (system, id prefix)
_PREFIXES: dict[str, tuple[str, str]] = {
    "HP": ("HPO", "HP"),
    "HPO": ("HPO", "HP"),
    "MSH": ("MESH", "MESH"),
    "MESH": ("MESH", "MESH"),
    "MIM": ("OMIM", "OMIM"),
    "OMIM": ("OMIM", "OMIM"),
    "OMIMPS": ("OMIM", "OMIM"),
    "UMLS": ("UMLS", "UMLS"),
    "UMLS_CUI": ("UMLS", "UMLS"),
    "CUI": ("UMLS", "UMLS"),
    "SNOMEDCT": ("SNOMEDCT", "SNOMEDCT"),
    "SNOMEDCT_US": ("SNOMEDCT", "SNOMEDCT"),
    "SCTID": ("SNOMEDCT", "SNOMEDCT"),
    "SNOMED": ("SNOMEDCT", "SNOMEDCT"),
    "SCT": ("SNOMEDCT", "SNOMEDCT"),
    "ICD10CM": ("ICD10CM", "ICD10CM"),
    "ICD-10-CM": ("ICD10CM", "ICD10CM"),
    "ICD10WHO": ("ICD10WHO", "ICD10WHO"),
    "ICD10": ("ICD10WHO", "ICD10WHO"),
    "ICD9CM": ("ICD9CM", "ICD9CM"),
    "DOID": ("DOID", "DOID"),
    "MONDO": ("MONDO", "MONDO"),
    "ORDO": ("ORPHANET", "ORPHANET"),
    "ORPHANET": ("ORPHANET", "ORPHANET"),
    "ORPHA": ("ORPHANET", "ORPHANET"),
    "NCI": ("NCIT", "NCIT"),
    "NCIT": ("NCIT", "NCIT"),
    "SYMP": ("SYMP", "SYMP"),
    "CCSR": ("CCSR", "CCSR"),
}
_SNOMED_DATED = re.compile(r"^SNOMEDCT_US_\d{4}_\d{2}_\d{2}$")


def system_of_prefix(prefix: str) -> tuple[str, str]:
    """``(system, id prefix)`` for a CURIE prefix: ``"MSH"`` -> ``("MESH", "MESH")``."""
    p = prefix.strip().upper()
    if p in _PREFIXES:
        return _PREFIXES[p]
    if _SNOMED_DATED.match(p):
        return ("SNOMEDCT", "SNOMEDCT")
    return (p, p)


def id_prefix(system: str) -> str:
    """The id prefix of a system: ``"HPO"`` -> ``"HP"``, anything else itself."""
    return system_of_prefix(system)[1]


def icd10cm_dotted(code: str) -> str:
    """``"E119"`` -> ``"E11.9"``; ranges and dotted codes unchanged."""
    code = code.strip().upper()
    if "." in code or "-" in code or len(code) <= 3:
        return code
    return f"{code[:3]}.{code[3:]}"


def curie(text: str) -> tuple[str, str, str] | None:
    """Normalize a CURIE: ``"MSH:D000006"`` -> ``("MESH:D000006", "MESH", "D000006")``; None if not one."""
    text = text.strip().strip('"')
    if ":" not in text:
        return None
    prefix, _, code = text.partition(":")
    code = code.strip()
    if not prefix or not code:
        return None
    system, pfx = system_of_prefix(prefix)
    if system == "ICD10CM":
        code = icd10cm_dotted(code)
    elif system == "MESH" or system == "UMLS":
        code = code.upper()
    return f"{pfx}:{code}", system, code


@runtime_checkable
class ConceptSource(Protocol):
    """Anything that adds concepts and edges to a :class:`GraphBuilder`."""

    name: str

    def version(self) -> str:
        """A string that changes whenever the content changes (package version, file hash…)."""
        ...

    def load(self, builder: GraphBuilder) -> None: ...


def files_version(paths: Iterable[Path]) -> str:
    """Version of file-based sources: names, sizes and modification times (cheap, no hashing)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)};".encode())
    return h.hexdigest()[:16]


_FIELDS = ("label", "synonyms", "kind", "billable", "excludes1", "excludes2", "code_first", "use_additional",
           "inclusion_terms", "definition")
_LISTS = ("synonyms", "excludes1", "excludes2", "code_first", "use_additional", "inclusion_terms")


class GraphBuilder:
    """Collects concepts (merged by id) and typed edges from sources."""

    def __init__(self) -> None:
        self.concepts: dict[str, dict[str, Any]] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self.systems: dict[str, str] = {}  # id -> system
        #: systems whose owner source has loaded: other sources may link to their concepts but not add any
        #: (a cross-walk to a retired ICD-10-CM code is dropped, never turned into a node)
        self.closed: set[str] = set()
        #: names for concepts of closed systems (lexical entries only, not part of the Concept record)
        self.extra_names: dict[str, list[str]] = {}
        #: ICD-10-CM Alphabetic Index paths that reach a concept: id -> [(path, is a category pointer)]
        self.index_paths: dict[str, list[tuple[str, bool]]] = {}

    def add_concept(
        self,
        system: str,
        code: str,
        label: str = "",
        *,
        synonyms: Iterable[str] = (),
        kind: str = "",
        billable: bool | None = None,
        definition: str = "",
        **notes: Iterable[str],
    ) -> str:
        """Add (or enrich) a concept; returns its id ``PREFIX:code``. A later label fills a stub's."""
        cid = f"{id_prefix(system)}:{code}"
        row = self.concepts.get(cid)
        if system in self.closed:
            return cid  # owned by another source: neither created nor renamed here
        if row is None:
            row = self.concepts[cid] = {f: [] for f in _LISTS}
            row.update(label="", kind="", billable=None, definition="")
            self.systems[cid] = system
        if label and not row["label"]:
            row["label"] = label
        elif label and label != row["label"]:
            row["synonyms"].append(label)
        row["synonyms"].extend(s for s in synonyms if s)
        if kind and not row["kind"]:
            row["kind"] = kind
        if billable is not None:
            row["billable"] = billable
        if definition and not row["definition"]:
            row["definition"] = definition
        for name, values in notes.items():
            if name not in _LISTS:
                raise TypeError(f"unknown concept field {name!r}; expected one of {', '.join(_LISTS)}")
            row[name].extend(values)
        return cid

    def ensure(self, cid: str) -> str:
        """Make sure a node exists for a CURIE (a stub without label if new); returns the normalized id."""
        norm = curie(cid)
        if norm is None:
            raise ValueError(f"not a CURIE: {cid!r} (expected PREFIX:code)")
        nid, system, code = norm
        if nid not in self.concepts and system not in self.closed:
            self.add_concept(system, code)
        return nid

    def add_edge(self, src: str, dst: str, relation: Relation | str) -> None:
        self.edges.add((src, dst, str(relation)))

    def add_mapping(self, a: str, b: str) -> None:
        """A cross-walk, stored in both directions; unknown ends become stub nodes."""
        a, b = self.ensure(a), self.ensure(b)
        if a != b and a in self.concepts and b in self.concepts:
            self.edges.add((a, b, Relation.MAPS_TO.value))
            self.edges.add((b, a, Relation.MAPS_TO.value))

    def rows(self) -> dict[str, tuple[Any, ...]]:
        """Concept rows in :class:`Concept` field order (id, system, code, label, synonyms, …)."""
        out: dict[str, tuple[Any, ...]] = {}
        for cid, row in self.concepts.items():
            code = cid.partition(":")[2]
            label = row["label"] or code
            syn = tuple(s for s in dict.fromkeys(row["synonyms"]) if s != label)
            values: list[Any] = [cid, self.systems[cid], code, label]
            for f in _FIELDS[1:]:
                v = row[f] if f != "synonyms" else syn
                values.append(tuple(dict.fromkeys(v)) if f in _LISTS else v)
            out[cid] = tuple(values)
        return out


__all__ = ["ConceptSource", "GraphBuilder", "curie", "files_version", "icd10cm_dotted", "id_prefix",
           "system_of_prefix"]
