"""A list of ``(concept id, name)`` pairs as a source: your own synonyms, a site's local terms, a lexicon
drawn from annotated data. Names become the label of a new concept or synonyms of an existing one
(concepts of systems another source owns, such as ICD-10-CM, are never created: their names go to
:meth:`KnowledgeGraph.borrowed_synonyms`-style lexical entries only when the concept exists).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from pathlib import Path

from medslm.errors import KnowledgeError
from medslm.knowledge.builder import GraphBuilder, curie, files_version


class TermListSource:
    """Names for concepts from pairs in memory or a two-column TSV (``id<TAB>name``, ``#`` comments)."""

    def __init__(self, terms: Iterable[tuple[str, str]] | str | Path, *, name: str = "terms",
                 kind: str = "") -> None:
        self.path: Path | None = None
        self.pairs: list[tuple[str, str]] | None = None
        if isinstance(terms, (str, Path)):
            self.path = Path(terms)
        else:
            self.pairs = [(str(a), str(b)) for a, b in terms]
        self.name = name
        self.kind = kind

    def version(self) -> str:
        if self.path is not None:
            return files_version([self.path])
        h = hashlib.sha256()
        for cid, n in self.pairs or ():
            h.update(f"{cid}\t{n}\n".encode())
        return h.hexdigest()[:16]

    def _read(self) -> Iterable[tuple[str, str]]:
        if self.pairs is not None:
            return self.pairs
        assert self.path is not None
        if not self.path.exists():
            raise KnowledgeError(f"term list {self.path} does not exist")
        with self.path.open(encoding="utf-8", newline="") as f:
            return [(r[0], r[1]) for r in csv.reader(f, delimiter="\t") if len(r) >= 2 and not r[0].startswith("#")]

    def load(self, builder: GraphBuilder) -> None:
        for raw, name in self._read():
            norm = curie(raw)
            if norm is None or not name.strip():
                continue
            cid, system, code = norm
            if system in builder.closed:
                if cid in builder.concepts:
                    builder.extra_names.setdefault(cid, []).append(name.strip())
                continue
            row = builder.concepts.get(cid)
            if row is None or not row["label"]:
                builder.add_concept(system, code, name.strip(), kind=self.kind)  # the first name is the label
            else:
                builder.add_concept(system, code, synonyms=[name.strip()])


__all__ = ["TermListSource"]
