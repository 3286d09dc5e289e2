"""Text primitives every part of medslm shares: sentence spans, word stems, negation cues (stdlib only).

- :func:`sentence_spans`: sentences as half-open ``[start, end)`` offsets, whitespace trimmed. The
  clinical boundary (default) is sentence punctuation followed by white space and a capital, a digit,
  a bracket or a quote, except after a title (``Dr.``, ``Mr.``…), or a lone punctuation mark, or a line
  break; ``loose=True`` splits after sentence punctuation followed by white space whatever comes next
  (model outputs, injected instructions and free text that do not capitalise).
- :func:`clause_spans`: finer clause windows (``;`` and line ends too); :func:`written_sentences`: the
  sentences of one line of generated prose.
- :func:`stem`: a light suffix stripper for word overlap (``infections`` / ``infected`` -> ``infect``);
  :func:`singular`: English plurals to singular, for lexicon keys (``fractures`` -> ``fracture``).
- :func:`is_negated`: NegEx-style negation cue before a mention, within its clause.

The context-aware assertion of entities (negated, possible, historical, family, hypothetical) is
medspaCy's ConText in :mod:`medslm.agents.assertion`; :func:`is_negated` is the cheap check that rules
(red flags, triage features, summary faithfulness) use.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: clinical sentence boundary: ". " + capital / digit / bracket / quote (not after a title), " . ", or newlines
SENTENCE_END = re.compile(
    r"(?<!\bMr\.)(?<!\bDr\.)(?<!Mrs\.)(?<!\bMs\.)(?<!\bSt\.)(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])|(?<=\s[.!?])\s+|\n+"
)
#: loose boundary: sentence punctuation + white space, or newlines
LOOSE_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentence_spans(text: str, *, loose: bool = False, min_chars: int = 1) -> list[tuple[int, int]]:
    """Sentences of ``text`` as ``[start, end)`` offsets, trimmed; shorter than ``min_chars`` left out."""
    out: list[tuple[int, int]] = []
    start = 0
    for m in [*(LOOSE_SENTENCE_END if loose else SENTENCE_END).finditer(text), None]:
        end = m.start() if m is not None else len(text)
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= max(1, min_chars):
            out.append((s, e))
        if m is not None:
            start = m.end()
    return out


def sentences(text: str, *, loose: bool = False, min_chars: int = 1) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[s:e] for s, e in sentence_spans(text, loose=loose, min_chars=min_chars)]


#: a clause: up to . ; ! ? or a line end, a decimal point ("37.5") not ending it (ICD candidate windows)
_CLAUSE = re.compile(r"[^\n.;!?]+(?:[.;!?](?=\d)[^\n.;!?]*)*[.;!?]?")
#: a sentence of generated prose (one line, constrained): ". " + capital / digit / quote / bracket, not after a title
_WRITTEN_END = re.compile(r"(?<!\bMr\.)(?<!\bDr\.)(?<!Mrs\.)(?<!\bMs\.)(?<=\.) (?=[A-Z0-9\"'(\[])")


def clause_spans(text: str) -> list[tuple[int, int]]:
    """Clauses of ``text`` as ``[start, end)`` offsets, split at ``. ; ! ?`` and line ends but not inside
    decimals like ``37.5``; leading white space trimmed, the closing mark kept (the ICD coder's windows)."""
    out = []
    for m in _CLAUSE.finditer(text):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        if e > s:
            out.append((s, e))
    return out


def written_sentences(text: str) -> list[str]:
    """The sentences of one line of generated prose (a summary section written under its regex): split
    after a period followed by one space and a capital, digit, quote or bracket, not after a title."""
    return [s for s in (p.strip() for p in _WRITTEN_END.split(text.strip())) if s]


_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s")


def stem(word: str) -> str:
    """Strip one common suffix, keeping a stem of at least 4 letters (``ies``/``ied`` -> ``y``)."""
    w = word.lower().strip("'-")
    for suf in _SUFFIXES:
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[: -len(suf)] + ("y" if suf in ("ies", "ied") else "")
    return w


_NO_PLURAL = ("ss", "us", "is", "ous", "sis", "ys", "as", "os")


@lru_cache(maxsize=65536)
def singular(token: str) -> str:
    """An English plural to its singular (lower-case input): ``fractures`` -> ``fracture``."""
    if len(token) <= 3 or not token.endswith("s") or token.isdigit():
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(("sses", "xes", "ches", "shes")):
        return token[:-2]
    if token.endswith(_NO_PLURAL):
        return token
    return token[:-1]


#: negation cues (NegEx's common pre-negation triggers)
NEGATION_CUES = re.compile(
    r"\b(?:no|not|denies|denied|denying|deny|without|negative\s+for|free\s+of|absence\s+of|absent|"
    r"ruled?\s+out|r/o|never|nor|none)\b",
    re.I,
)
#: what ends a negation's scope (a new assertion too: "denies HI, endorses SI")
CLAUSE_BREAK = re.compile(
    r"[.;:?!\n]|\bbut\b|\bhowever\b|\bexcept\b|\balthough\b|\bthough\b|"
    r"\b(?:endorses|endorsing|endorsed|admits|admitting|admitted|reports|reporting|positive\s+for|states|stating|"
    r"now\s+with|presents\s+with|complains\s+of|c/o)\b",
    re.I,
)


def is_negated(text: str, start: int, window: int = 60, max_words: int = 6) -> bool:
    """Whether a negation cue precedes ``text[start:]`` within the same clause and ``max_words`` words.

    NegEx-style: "denies fever, chills or chest pain" negates "chest pain"; "no fever. Chest pain" does
    not.
    """
    left = text[max(0, start - window) : start]
    parts = CLAUSE_BREAK.split(left)
    clause = parts[-1] if parts else left
    cues = list(NEGATION_CUES.finditer(clause))
    if not cues:
        return False
    between = clause[cues[-1].end() :]
    return len(between.split()) <= max_words


__all__ = ["CLAUSE_BREAK", "LOOSE_SENTENCE_END", "NEGATION_CUES", "SENTENCE_END", "is_negated", "sentence_spans",
           "sentences", "singular", "stem"]
