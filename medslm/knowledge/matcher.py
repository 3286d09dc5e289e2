"""A clinical lexicon matcher: dictionary terms from the graph -> concept mentions (char spans) in a note.

Terms are the labels, synonyms and inclusion terms of the chosen systems, in the forms a note would
write them (ICD qualifiers like ", unspecified" and parentheses removed), normalized like lookups (case,
possessive, plural). Matching is greedy longest-match, left to right, over the note's tokens;
abbreviations ("MI", "HTN", "SOB") match only as written in :data:`ABBREVIATIONS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from medslm.knowledge import normalize as nz
from medslm.knowledge.abbreviations import ABBREVIATIONS
from medslm.knowledge.concept import Match

if TYPE_CHECKING:
    from medslm.knowledge.graph import KnowledgeGraph

#: longest term (in tokens) the matcher keeps; longer names do not occur verbatim in notes
MAX_TERM_TOKENS = 10
#: ICD-10-CM kinds left out of the lexicon (their names add nothing a note would write)
_SKIP_KINDS = frozenset({"chapter", "block", "extended", "ccsr_category"})


class LexiconMatcher:
    """Finds concept mentions in text. Build with :meth:`KnowledgeGraph.matcher` or from terms."""

    def __init__(self, terms: Iterable[tuple[str, str]], abbreviations: dict[str, tuple[str, ...]] | None = None,
                 *, min_chars: int = 3) -> None:
        """``terms``: ``(concept id, name)`` pairs; ``abbreviations``: surface form -> expansions."""
        table: dict[str, list[str]] = {}
        prefixes: set[str] = set()
        self.abbreviations: dict[str, tuple[str, ...]] = {}
        for cid, name in terms:
            if name.isupper() and len(name) <= 6 and " " not in name:
                # an acronym among the synonyms ("MI"): case-sensitive, like the abbreviation table
                self.abbreviations[name] = (*self.abbreviations.get(name, ()), cid)
                continue
            for form in nz.variants(name):
                ts = nz.terms(form)
                if not ts or len(ts) > MAX_TERM_TOKENS:
                    continue
                if len(ts) == 1 and (ts[0] in nz.STOP_WORDS or len(ts[0]) < min_chars or ts[0].isdigit()):
                    continue
                if all(t in nz.STOP_WORDS for t in ts):
                    continue
                k = " ".join(ts)
                ids = table.setdefault(k, [])
                if cid not in ids:
                    ids.append(cid)
                for i in range(1, len(ts)):
                    prefixes.add(" ".join(ts[:i]))
        self.table: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in table.items()}
        self.prefixes = frozenset(prefixes)
        for abbr, expansions in (abbreviations or {}).items():
            ids = [cid for e in expansions for cid in self.table.get(nz.key(e), ())]
            ids.extend(self.abbreviations.get(abbr, ()))
            if ids:
                self.abbreviations[abbr] = tuple(dict.fromkeys(ids))

    @classmethod
    def from_graph(cls, kg: KnowledgeGraph, systems: Iterable[str]) -> LexiconMatcher:
        def pairs() -> Iterable[tuple[str, str]]:
            for system in systems:
                for c in kg.concepts(system):
                    if c.kind in _SKIP_KINDS or (c.label == c.code and not c.synonyms):
                        continue
                    for n in (*c.names, *kg.borrowed_synonyms(c.id)):
                        yield c.id, n

        return cls(pairs(), ABBREVIATIONS)

    def __len__(self) -> int:
        return len(self.table)

    def find(self, text: str) -> list[Match]:
        """Longest non-overlapping mentions, left to right; offsets are half-open char offsets."""
        toks = list(nz.tokens(text))
        out: list[Match] = []
        i = 0
        while i < len(toks):
            best: tuple[int, tuple[str, ...], str] | None = None
            key = ""
            for j in range(i, min(i + MAX_TERM_TOKENS, len(toks))):
                key = toks[j][2] if j == i else f"{key} {toks[j][2]}"
                ids = self.table.get(key)
                if ids:
                    best = (j, ids, key)
                if key not in self.prefixes:
                    break
            if best is not None:
                j, ids, key = best
                start, end = toks[i][0], toks[j][1]
                surface = text[start:end]
                score = 1.0 if surface.lower() == key else 0.9
                out.append(Match(start, end, ids, score, surface, key))
                i = j + 1
                continue
            raw = text[toks[i][0] : toks[i][1]]
            ids = self.abbreviations.get(raw)
            if ids:
                out.append(Match(toks[i][0], toks[i][1], ids, 0.8, raw, raw))
            i += 1
        return out


__all__ = ["MAX_TERM_TOKENS", "LexiconMatcher"]
