"""Lexical concept search: exact, normalized (case, punctuation, plural, word order) and fuzzy.

One :class:`LexicalIndex` per system. Names are indexed by their normalized key and their bag-of-words
key; fuzzy search gathers names sharing rare terms through an inverted index (numpy, IDF-weighted),
corrects misspelled terms against the vocabulary (rapidfuzz), and re-scores a short list with
rapidfuzz. A lookup takes about a millisecond.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from medslm.knowledge import normalize as nz

#: scores given by each method (fuzzy scores stay below normalized ones)
EXACT, NORMALIZED, BAG, FUZZY_MAX = 1.0, 0.97, 0.93, 0.9


@dataclass
class Hit:
    concept_id: str
    score: float
    method: str
    matched: str


class LexicalIndex:
    """Names of one system's concepts, indexed for exact, normalized and fuzzy lookup."""

    def __init__(self, names: Iterable[tuple[str, str]]) -> None:
        """``names``: ``(concept id, name)`` pairs (labels, synonyms, inclusion terms)."""
        self.surface: list[str] = []
        self.keys: list[str] = []
        self.ids: list[tuple[str, ...]] = []
        self.by_key: dict[str, int] = {}
        self._add(names)
        self._freeze()

    def extend(self, names: Iterable[tuple[str, str]]) -> None:
        """Add names (e.g. synonyms borrowed from another terminology) and re-index."""
        self._add(names)
        self._freeze()

    def _add(self, names: Iterable[tuple[str, str]]) -> None:
        surface, keys, ids, by_key = self.surface, self.keys, self.ids, self.by_key
        for cid, name in names:
            for form in nz.variants(name):
                k = nz.key(form)
                if not k:
                    continue
                i = by_key.get(k)
                if i is None:
                    i = by_key[k] = len(keys)
                    keys.append(k)
                    surface.append(form)
                    ids.append((cid,))
                elif cid not in ids[i]:
                    ids[i] = (*ids[i], cid)

    def _freeze(self) -> None:
        keys = self.keys
        bags: dict[str, list[int]] = defaultdict(list)
        postings: dict[str, list[int]] = defaultdict(list)
        lengths = np.zeros(len(keys), dtype=np.float32)
        for i, k in enumerate(keys):
            ts = [t for t in k.split() if t not in nz.STOP_WORDS] or k.split()
            b = " ".join(sorted(set(ts)))
            if b:
                bags[b].append(i)
            for t in set(ts):
                postings[t].append(i)
        n = max(len(keys), 1)
        self.bags = {b: v[0] if len(v) == 1 else tuple(v) for b, v in bags.items()}
        self.vocab = sorted(postings)
        self.idf = {t: math.log(1 + n / len(v)) for t, v in postings.items()}
        # postings in CSR form (one array + offsets): fast to pickle and load
        self.offsets: dict[str, tuple[int, int]] = {}
        flat: list[int] = []
        for t, v in postings.items():
            self.offsets[t] = (len(flat), len(flat) + len(v))
            flat.extend(v)
            lengths[v] += self.idf[t]
        self.flat = np.asarray(flat, dtype=np.int32)
        self.weight = lengths  # sum of idf of each name's terms

    def __len__(self) -> int:
        return len(self.keys)

    def _correct(self, term: str) -> list[tuple[str, float]]:
        """Vocabulary terms close to a term the index does not know (typos)."""
        if len(term) < 4:
            return []
        from rapidfuzz import fuzz, process

        found = process.extract(term, self.vocab, scorer=fuzz.ratio, limit=3, score_cutoff=80)
        return [(t, s / 100.0) for t, s, _ in found]

    def lookup(self, text: str, k: int = 10, *, fuzzy: bool = True, shortlist: int = 200) -> list[Hit]:
        """Best concepts for ``text``: one :class:`Hit` per concept, best first."""
        q = nz.key(text)
        if not q:
            return []
        best: dict[str, Hit] = {}

        def offer(i: int, score: float, method: str) -> None:
            for cid in self.ids[i]:
                h = best.get(cid)
                if h is None or score > h.score:
                    best[cid] = Hit(cid, score, method, self.surface[i])

        i = self.by_key.get(q)
        if i is not None:
            exact = self.surface[i].strip().lower() == text.strip().lower()
            offer(i, EXACT if exact else NORMALIZED, "exact" if exact else "normalized")
        qterms = [t for t in q.split() if t not in nz.STOP_WORDS] or q.split()
        bag = " ".join(sorted(set(qterms)))
        same = self.bags.get(bag, ())
        for j in (same,) if isinstance(same, int) else same:
            offer(j, BAG, "normalized")
        if fuzzy and len(best) < k:
            self._fuzzy(q, qterms, offer, shortlist)
        hits = sorted(best.values(), key=lambda h: (-h.score, len(h.matched), h.concept_id))
        return hits[:k]

    def _fuzzy(self, q: str, qterms: Sequence[str], offer, shortlist: int) -> None:  # type: ignore[no-untyped-def]
        from rapidfuzz import fuzz

        weighted: list[tuple[str, float]] = []
        for t in dict.fromkeys(qterms):
            if t in self.offsets:
                weighted.append((t, 1.0))
            else:
                weighted.extend(self._correct(t))
        if not weighted:
            return
        scores = np.zeros(len(self.keys), dtype=np.float32)
        qweight = 0.0
        for t, w in weighted:
            idf = self.idf[t] * w
            lo, hi = self.offsets[t]
            scores[self.flat[lo:hi]] += idf
            qweight += self.idf[t]
        nonzero = np.flatnonzero(scores)
        if nonzero.size == 0:
            return
        # Dice overlap of IDF mass: rewards names that cover the query and are not much longer
        dice = 2 * scores[nonzero] / (qweight + self.weight[nonzero])
        if nonzero.size > shortlist:
            top = np.argpartition(-dice, shortlist)[:shortlist]
            nonzero, dice = nonzero[top], dice[top]
        for i, d in zip(nonzero.tolist(), dice.tolist(), strict=True):
            key = self.keys[i]
            r = max(fuzz.token_sort_ratio(q, key), fuzz.ratio(q, key)) / 100.0
            score = FUZZY_MAX * (0.6 * min(d, 1.0) + 0.4 * r)
            if key.startswith("other ") and not q.startswith("other "):
                score *= 0.95  # "Other X" is the residual category, not X itself
            offer(i, score, "fuzzy")


__all__ = ["LexicalIndex"]
