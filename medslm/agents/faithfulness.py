"""Faithfulness check: is each summary sentence supported by the note it summarizes?

A sentence is flagged when one of its facts is not in the note:

- **numbers**: every number it states (digits or number words) must occur in the note;
- **negations**: a finding it asserts must not be only negated in the note ("no chest pain",
  "denies fever", or a dialogue question answered "no"), and a finding it negates must not be only
  affirmed there;
- **terms**: most of its content words (clinical terms, entities when NER ran) must occur in the note;
- **laterality**: a side it gives ("right arm") must be a side the note gives for that word (a note's
  "left arm" makes "right arm" unsupported).

The check also links each sentence to the note spans that support it (the note units sharing the most
content words and numbers). Pure Python; fast enough to run on every sentence of every summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from medslm.records import Span
from medslm.text import SENTENCE_END, is_negated
from medslm.text import stem as _stem

__all__ = [
    "FaithfulnessVerdict",
    "NoteIndex",
    "Unit",
    "check_sentence",
    "content_terms",
    "numbers_in",
    "segment",
]

STOPWORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "okay", "ok", "yeah", "yes", "um", "uh", "mm", "hmm", "right", "well", "so", "oh", "like", "really", "think", "know", "get", "got", "go", "going", "let", "lets", "see", "sure", "thing", "things", "kind", "sort", "patient", "patients", "doctor", "dr", "mr", "mrs", "ms", "pt", "states", "stated", "reports", "reported", "report", "says", "said", "tells", "told", "today", "also", "been", "currently", "per", "presents", "presented", "present", "noted", "notes", "note", "history"])

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "once": 1, "twice": 2, "single": 1, "double": 2, "half": 0.5, "dozen": 12,
}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:\.\d+)?")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_SPEAKER = re.compile(r"^\s*(?:\[(?:doctor|patient|patient_guest|guest_family|guest_clinician|nurse)[^\]]*\]|"
                      r"(?:doctor|patient|guest_family|guest_clinician|nurse|dr|pt)\s*:)\s*", re.I)
_NO_ANSWER = re.compile(r"^\s*(?:no\b|nope\b|nah\b|not\s+(?:really|at\s+all|that\s+i\s+know)|never\b|none\b|"
                        r"i\s+(?:don't|do\s+not|haven't|have\s+not)\b)", re.I)
_SENT_END = SENTENCE_END


def numbers_in(text: str) -> set[str]:
    """Numbers stated in ``text``: digits, and number words turned into digits ("fifty eight" -> 58)."""
    out = {str(float(d)).rstrip("0").rstrip(".") for d in _DIGITS.findall(text)}
    words = re.findall(r"[a-z]+", text.lower())
    i = 0
    while i < len(words):
        if words[i] in _NUMBER_WORDS and words[i] not in ("once", "twice", "single", "double", "half"):
            total, cur = 0.0, 0.0
            j = i
            while j < len(words) and (words[j] in _NUMBER_WORDS or words[j] == "and"):
                w = words[j]
                if w == "and":
                    j += 1
                    continue
                v = _NUMBER_WORDS[w]
                if v == 100:
                    cur = (cur or 1) * 100
                elif v == 1000:
                    total += (cur or 1) * 1000
                    cur = 0
                else:
                    cur += v
                j += 1
            total += cur
            out.add(str(total).rstrip("0").rstrip("."))
            # each word alone too ("one or two" -> 1, 2)
            for w in words[i:j]:
                if w in _NUMBER_WORDS:
                    out.add(str(float(_NUMBER_WORDS[w])).rstrip("0").rstrip("."))
            i = j
        else:
            i += 1
    return out


def content_terms(text: str) -> list[str]:
    """Stemmed content words of ``text`` (no stopwords, no numbers)."""
    return [_stem(t) for t in _TOKEN.findall(text) if not t[0].isdigit() and t.lower() not in STOPWORDS
            and len(t) > 2]


@dataclass(frozen=True)
class Unit:
    """A sentence (or dialogue turn) of the note with its offsets, speaker and question/answer role."""

    start: int
    end: int
    text: str
    speaker: str | None = None
    body_start: int = 0  # offset of the text after the speaker label
    negated_by_answer: bool = False  # a question the next turn answered "no"


_TURN = re.compile(r"(?:^|(?<=\s))(?:\[(?:doctor|patient|patient_guest|guest_family|guest_clinician|nurse)[^\]]*\]|"
                   r"\b(?:doctor|patient|guest_family|guest_clinician|nurse)\s*:)", re.I)


def _lines(text: str) -> list[tuple[int, int]]:
    """Line ranges, further split where a new speaker turn starts inside a line."""
    out = []
    pos = 0
    for line in text.splitlines(keepends=True):
        starts = [m.start() for m in _TURN.finditer(line) if m.start() > 0]
        cuts = [0, *starts, len(line)]
        for a, b in zip(cuts, cuts[1:], strict=False):
            out.append((pos + a, pos + b))
        pos += len(line)
    return out


def segment(text: str) -> list[Unit]:
    """Sentences of a note, or turns of a dialogue split into sentences; offsets into ``text``."""
    units: list[Unit] = []
    for lstart, lend in _lines(text):
        line = text[lstart:lend]
        if not line.strip():
            continue
        lead_ws = len(line) - len(line.lstrip())
        sm = _SPEAKER.match(line[lead_ws:])
        speaker = None
        body_off = lstart
        if sm:
            label = sm.group(0).strip().strip("[]:").lower()
            speaker = "patient" if "patient" in label or label == "pt" else label.split("_")[0]
            body_off = lstart + lead_ws + sm.end()
        body = text[body_off:lend]
        # split the line body into sentences
        cur = 0
        for m in [*_SENT_END.finditer(body), None]:
            end = m.start() if m else len(body)
            piece = body[cur:end]
            if piece.strip():
                lead = len(piece) - len(piece.lstrip())
                s = body_off + cur + lead
                e = body_off + cur + len(piece.rstrip())
                units.append(Unit(start=s, end=e, text=text[s:e], speaker=speaker, body_start=s))
            if m:
                cur = m.end()
    # dialogue: a "no" answer negates the findings of the questions the other speaker just asked
    neg = [False] * len(units)
    for i, u in enumerate(units):
        if i == 0 or u.speaker is None or not _NO_ANSWER.match(u.text):
            continue
        j = i - 1
        asker = units[j].speaker
        if asker == u.speaker:
            continue
        while j >= 0 and units[j].speaker == asker and units[j].text.rstrip().endswith("?"):
            neg[j] = True
            j -= 1
    return [Unit(u.start, u.end, u.text, u.speaker, u.body_start, True) if n else u
            for u, n in zip(units, neg, strict=True)]


@dataclass
class NoteIndex:
    """What the check needs to know about a note: its units, terms, numbers and negated terms."""

    text: str
    units: list[Unit] = field(default_factory=list)
    unit_terms: list[set[str]] = field(default_factory=list)
    unit_numbers: list[set[str]] = field(default_factory=list)
    terms: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    affirmed: set[str] = field(default_factory=set)
    negated: set[str] = field(default_factory=set)
    sides: set[tuple[str, str]] = field(default_factory=set)  # ("left", stem of the word it qualifies)

    @classmethod
    def build(cls, text: str, negated_spans: Iterable[Span] = ()) -> NoteIndex:
        idx = cls(text=text, units=segment(text))
        idx.sides = _sides(text)
        neg_spans = list(negated_spans)
        for u in idx.units:
            terms = set(content_terms(u.text))
            nums = numbers_in(u.text)
            idx.unit_terms.append(terms)
            idx.unit_numbers.append(nums)
            idx.terms |= terms
            idx.numbers |= nums
            prev: tuple[str, bool] | None = None
            for m in _TOKEN.finditer(u.text):
                tok = m.group(0)
                if tok[0].isdigit() or tok.lower() in STOPWORDS or len(tok) <= 2:
                    prev = None
                    continue
                off = u.start + m.start()
                neg = (u.negated_by_answer or is_negated(text, off)
                       or any(s.start <= off < s.end for s in neg_spans))
                st = _stem(tok)
                (idx.negated if neg else idx.affirmed).add(st)
                if prev is not None:  # adjacent content words: "chest pain", "shortness breath"
                    (idx.negated if neg or prev[1] else idx.affirmed).add(prev[0] + " " + st)
                prev = (st, neg)
        return idx

    def support(self, sentence: str, k: int = 2) -> tuple[Span, ...]:
        """The ``k`` note units that share the most content words and numbers with ``sentence``."""
        terms = set(content_terms(sentence))
        nums = numbers_in(sentence)
        scored = []
        for i, (ut, un) in enumerate(zip(self.unit_terms, self.unit_numbers, strict=True)):
            overlap = len(terms & ut) + 1.5 * len(nums & un)
            if overlap > 0:
                scored.append((overlap / (1 + 0.05 * len(ut)), i))
        scored.sort(reverse=True)
        spans = [Span(start=self.units[i].start, end=self.units[i].end, label="support") for _, i in scored[:k]]
        return tuple(sorted(spans, key=lambda s: s.start))


_SIDE = re.compile(r"\b(left|right|bilateral)(?:[- ]sided)?\b((?:[\s\-]+[A-Za-z][A-Za-z'\-]*){1,3})", re.I)


def _sides(text: str) -> set[tuple[str, str]]:
    """``(side, stem)`` for each word that follows "left" / "right" / "bilateral" within three words."""
    out = set()
    for m in _SIDE.finditer(text):
        side = m.group(1).lower()
        for w in re.findall(r"[A-Za-z][A-Za-z'\-]*", m.group(2)):
            if w.lower() not in STOPWORDS and len(w) > 2:
                out.add((side, _stem(w)))
    return out


@dataclass(frozen=True)
class FaithfulnessVerdict:
    supported: bool
    issues: tuple[str, ...]
    support: tuple[Span, ...]
    term_coverage: float  # fraction of the sentence's content words found in the note


def check_sentence(sentence: str, index: NoteIndex, *, min_term_coverage: float = 0.6) -> FaithfulnessVerdict:
    """Check one summary sentence against the note; ``issues`` say what failed.

    Negated NER entities (passed to :meth:`NoteIndex.build`) count as negated findings of the note.
    """
    issues: list[str] = []
    nums = numbers_in(_DIGITS.sub(lambda m: m.group(0), sentence))
    missing_nums = sorted(n for n in nums if n not in index.numbers)
    if missing_nums:
        issues.append(f"numbers not in note: {', '.join(missing_nums[:5])}")
    terms = content_terms(sentence)
    found = [t for t in terms if t in index.terms]
    coverage = len(found) / len(terms) if terms else 1.0
    if terms and coverage < min_term_coverage:
        issues.append(f"unsupported terms: {len(terms) - len(found)} of {len(terms)}")
    # polarity of each content word in the sentence vs the note
    conflicts = []
    prev: tuple[str, bool] | None = None
    for m in _TOKEN.finditer(sentence):
        tok = m.group(0)
        if tok[0].isdigit() or tok.lower() in STOPWORDS or len(tok) <= 2:
            prev = None
            continue
        st = _stem(tok)
        neg_here = is_negated(sentence, m.start())
        keys = [st] + ([prev[0] + " " + st] if prev is not None else [])
        for key in keys:
            if not neg_here and key in index.negated and key not in index.affirmed:
                conflicts.append(f"asserts a finding the note negates ({key})")
            elif neg_here and key in index.affirmed and key not in index.negated:
                conflicts.append(f"negates a finding the note affirms ({key})")
        prev = (st, neg_here)
    if conflicts:
        issues.append("negation conflict: " + "; ".join(dict.fromkeys(conflicts)))
    wrong_side = sorted({f"{side} {stem}" for side, stem in _sides(sentence) if (side, stem) not in index.sides
                         and any((other, stem) in index.sides for other in ("left", "right", "bilateral"))})
    if wrong_side:
        issues.append(f"laterality not in note: {', '.join(wrong_side[:3])}")
    return FaithfulnessVerdict(supported=not issues, issues=tuple(issues), support=index.support(sentence),
                               term_coverage=coverage)
