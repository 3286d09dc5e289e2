"""The ICD-10-CM Alphabetic Index as a concept source: the coder's own look-up, in the knowledge graph.

The Alphabetic Index to Diseases and Injuries lists main terms with indented subterms, each path ending in
a code: ``Sprain > ankle -> S93.40-`` (a trailing ``-`` means the code needs more characters: a category
pointer that the coder completes from the note: laterality, encounter, specificity). ``medslm train
icd-index`` turns the public-domain index file into the ``icd-index`` artifact (``index.json``: one entry
per coded path, every code checked against the ICD-10-CM 2026 tabular); this module reads that artifact at
run time (never the data folder) and gives the graph:

- **names**: each path read as a clinician writes it ("ankle sprain", "sprain of ankle", "type 2 diabetes
  with hyperglycemia", "family history of colonic polyps"), added to the code's lexical names, so lexicon
  matching and look-up find index terms the tabular list never names;
- **paths**: ``kg.index_paths("S93.40")`` -> ``("Sprain, ankle",)``, the index path a code is reached by
  (shown to the reranker next to the code's description, and to a human as the reason for a candidate);
- **pointers**: ``kg.index_pointer("S93.40")`` is True when the index points at the code as a category to
  be completed ("S93.40-").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medslm.knowledge.builder import GraphBuilder

COMPONENT = "icd-index"
FORMAT = "icd-index-1"
SYSTEM = "ICD10CM"

#: subterms that join what follows to the phrase read so far ("diabetes" + "with" + "hyperglycemia")
CONNECTORS = (
    "with", "without", "due to", "in", "of", "following", "after", "from", "during", "complicating", "by",
    "on", "and", "associated with", "affecting", "involving", "resulting from", "at", "to", "caused by",
    "not", "except", "as", "at or near", "NEC", "for", "into", "complicated by",
)
_CONNECTOR_RE = re.compile(r"^(?:" + "|".join(re.escape(c) for c in sorted(CONNECTORS, key=len, reverse=True))
                           + r")\b", re.IGNORECASE)
_PARENS = re.compile(r"\s*\([^)]*\)")
_NEC = re.compile(r"\b(?:NEC|NOS)\b|\bspecified\b(?: \w+)? NEC|\bunspecified\b", re.IGNORECASE)
#: main terms read as "<main> of <rest>" rather than "<rest> <main>"
_OF_HEADS = {"history": "history of", "long-term": "long-term use of", "status": "status", "presence": "presence of",
             "absence": "absence of", "exposure": "exposure to", "contact": "contact with",
             "allergy": "allergy to", "screening": "screening for", "encounter": "encounter for"}
#: at most this many names per index path
MAX_NAMES = 3
MAX_WORDS = 10


@dataclass(frozen=True)
class IndexEntry:
    """One coded path of the index."""

    terms: tuple[str, ...]  # main term first: ("Sprain", "ankle")
    code: str               # dotted, without the trailing "-": "S93.40"
    pointer: bool           # True: the index wrote "S93.40-" (more characters required)
    see: bool = False       # True: reached through a "see" cross-reference

    @property
    def path(self) -> str:
        """``"Sprain, ankle"``: the terms as the index prints them."""
        return ", ".join(self.terms)


def _clean(term: str) -> str:
    t = _PARENS.sub("", term)
    t = _NEC.sub(" ", t)
    return re.sub(r"\s+", " ", t).strip(" ,;-")


def _forms(term: str) -> list[str]:
    """The comma-separated forms of a term: "Tuberculosis, tubercular, tuberculous" -> all three."""
    return [p for p in (x.strip() for x in _clean(term).split(", ")) if p]


def _alternates(parts: list[str]) -> bool:
    """True when the parts are forms of one word ("Diabetes, diabetic"), not a word and its qualifier."""
    return len(parts) > 1 and all(p[:4].lower() == parts[0][:4].lower() for p in parts[1:])


def _head(term: str) -> tuple[str, list[str], str]:
    """A main term's head, its adjectival alternates and its qualifier: "Diabetes, diabetic" ->
    ("Diabetes", ["diabetic"], ""); "Pericapsulitis, adhesive" -> ("Pericapsulitis", [], "adhesive")."""
    parts = _forms(term)
    if not parts:
        return "", [], ""
    if _alternates(parts):
        return parts[0], parts[1:], ""
    if len(parts) > 1 and len(" ".join(parts[1:]).split()) <= 3:
        return parts[0], [], " ".join(parts[1:])
    return " ".join(parts), [], ""


def _sub(term: str) -> str:
    """A subterm as it reads in a phrase: "femur, femoral" -> "femur";
    "hyperlipidemia, familial combined" -> "familial combined hyperlipidemia"."""
    parts = _forms(term)
    if not parts:
        return ""
    if len(parts) == 1 or _alternates(parts):
        return parts[0]
    return " ".join([*parts[1:], parts[0]])


_ADJECTIVE = re.compile(r"(?:al|ic|ous|ive|ed|ary|ar|oid|ile|ent|ant|ing|ful|less|ian|form)$", re.IGNORECASE)


def index_names(terms: Sequence[str]) -> list[str]:
    """Phrases a note may use for an index path, best first (at most :data:`MAX_NAMES`).

    ``("Sprain", "ankle")`` -> ``["ankle sprain", "sprain of ankle"]``;
    ``("Diabetes, diabetic", "type 2", "with", "hyperglycemia")`` -> ``["type 2 diabetes with hyperglycemia"]``;
    ``("History", "family", "asthma")`` -> ``["family history of asthma", …]``. A path whose last
    subterm is only "NEC" / "specified NEC" gets no names (they would repeat its parent's).
    """
    if not terms:
        return []
    head, alternates, qualifier = _head(terms[0])
    subs = [_sub(t) for t in terms[1:]]
    if not head or (subs and not subs[-1]):
        return []
    subs = [x for x in subs if x]
    key = head.lower()
    if key in _OF_HEADS:
        if key == "history" and subs and subs[0].lower() in ("family", "personal"):
            lead, rest = f"{subs[0].lower()} history of", subs[1:]
        else:
            lead, rest = _OF_HEADS[key], subs
        if not rest:
            return []
        out = [" ".join([*rest, "status"])] if key == "status" else [" ".join([lead, *rest])]
        if key == "history":
            out.append(f"history of {' '.join(rest)}")
        return [n for n in out if len(n.split()) <= MAX_WORDS][:MAX_NAMES]
    if not subs:
        return [f"{qualifier} {head}"] if qualifier else [head]
    # read the path: modifiers go before the phrase ("ankle sprain"), connector subterms after it
    # ("pneumonia due to streptococcus"), and so does everything after a connector
    phrase = head
    mods: list[str] = []
    joined = False
    for x in subs:
        if joined or _CONNECTOR_RE.match(x):
            phrase, joined = f"{phrase} {x}", True
        else:
            phrase = f"{x} {phrase}"
            mods.append(x)
    out = [phrase]
    if mods and len(mods) == len(subs) and not any(_ADJECTIVE.search(m) for m in mods):
        if alternates:  # "Tuberculosis, tuberculous" + "hepatitis" -> "tuberculous hepatitis"
            out.append(" ".join([alternates[-1], *reversed(mods)]))
        out.append(f"{head} of {' of '.join(reversed(mods))}")  # sites: "sprain of ankle"
    return [n for n in dict.fromkeys(x.strip() for x in out) if n and len(n.split()) <= MAX_WORDS][:MAX_NAMES]


def read_entries(path: str | Path) -> list[IndexEntry]:
    """The entries of an ``index.json`` written by the ``icd-index`` recipe."""
    from medslm.errors import ConfigurationError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"ICD-10-CM index artifact {path} is unreadable ({type(exc).__name__}); "
                                 "refit it with `medslm train icd-index`") from None
    if data.get("format") != FORMAT:
        raise ConfigurationError(f"ICD-10-CM index artifact {path} has format {data.get('format')!r}; this medslm "
                                 f"reads {FORMAT!r}: refit it with `medslm train icd-index`")
    return [IndexEntry(tuple(t), c, bool(p), bool(s)) for t, c, p, s in data["entries"]]


class AlphabeticIndex:
    """Concept source: the ``icd-index`` artifact's paths as names of ICD-10-CM concepts (see module doc).

    ``root``: a folder of retrained artifacts (default ``$MEDSLM_ARTIFACTS``, else the shipped one). Must
    load after the ICD-10-CM tabular source: it names codes, it never adds any.
    """

    name = "icd10cm-index"

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = root

    def folder(self) -> Path:
        from medslm.artifacts import artifact_dir

        return artifact_dir(COMPONENT, self.root)

    def version(self) -> str:
        from medslm.artifacts import read_manifest

        return f"{COMPONENT}:{read_manifest(self.folder()).fingerprint}"

    def entries(self) -> list[IndexEntry]:
        return read_entries(self.folder() / "index.json")

    def load(self, builder: GraphBuilder) -> None:
        add_entries(builder, self.entries())


def add_entries(builder: GraphBuilder, entries: Iterable[IndexEntry]) -> None:
    """Give each entry's code its index names and path (codes the tabular lacks are skipped)."""
    for e in entries:
        cid = f"{SYSTEM}:{e.code}"
        if cid not in builder.concepts:
            continue
        builder.index_paths.setdefault(cid, []).append((e.path, e.pointer))
        names = builder.extra_names.setdefault(cid, [])
        for n in index_names(e.terms):
            if n not in names:
                names.append(n)


__all__ = ["COMPONENT", "FORMAT", "AlphabeticIndex", "IndexEntry", "add_entries", "index_names", "read_entries"]
