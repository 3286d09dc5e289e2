"""Instructions injected into a note: find them, and fence them with a same-length mask.

A note is data, never instructions. Rules find what is certain (override phrases, chat-template
delimiters, hidden characters, text that addresses the AI, orders to output a given code or triage
level); each hit grows to its sentence (or line) and becomes a candidate with a rule score. The
guardian asks the SLM about candidates whose rule score leaves room for doubt and combines both.

:func:`fence_text` blanks the characters of fenced spans with spaces (newlines kept), so every offset
into the original note stays valid in the text agents see.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medslm import text as _text
from medslm.records import Span

#: invisible or direction-changing characters used to hide text
HIDDEN_CHARS = re.compile("[\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]")

_AI = (
    r"(?:AI|A\.I\.|assistant|chat\s*bot|chatbot|LLM|language\s+model|model|bot|GPT|automated\s+(?:system|coder|"
    r"reviewer|pipeline|agent)|(?:coding|triage|summari[sz](?:ation|er)|review)\s+(?:system|model|agent|"
    r"engine|tool|pipeline|bot|AI)|system|agent|pipeline)"
)

#: (kind, pattern, score): score is how sure the rule alone is that the hit is an injection
_RULES: list[tuple[str, str, float]] = [
    ("override", r"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|do\s+not\s+follow|don'?t\s+follow)\s+"
     r"(?:all\s+|any\s+|the\s+|your\s+|these\s+|those\s+|every\s+|of\s+)*(?:previous|prior|above|earlier|preceding|"
     r"original|initial|existing|system|safety|other|former|foregoing)?\s*(?:instructions?|directions?|rules?|"
     r"prompts?|guidelines?|guardrails?|constraints?|context|programming|policies|polic(?:y)|messages?|orders\s+given\s+to\s+you)", 0.9),
    ("override", r"\bnew\s+(?:instructions?|rules?|task|directive|system\s+prompt)\s*[:\-]", 0.85),
    ("override", r"\b(?:instructions?|rules?)\s+(?:above|before\s+this)\s+(?:are|is)\s+(?:void|cancel+ed|obsolete|no\s+longer\s+valid)", 0.9),
    ("role_play", r"\b(?:you\s+are\s+now|from\s+now\s+on,?\s+you|pretend\s+(?:to\s+be|you\s+are)|act\s+as\s+(?:an?\s+)?(?:unrestricted|unfiltered|different|jailbroken|evil|DAN)|"
     r"role-?\s?play\s+as|you\s+will\s+now\s+(?:act|behave|respond)|enter\s+(?:developer|debug|god|admin)\s+mode|"
     r"switch\s+to\s+(?:developer|debug|admin)\s+mode|DAN\s+mode|jailbreak)", 0.9),
    ("address_ai", rf"\b(?:(?:note|message|instruction|attention|notice|reminder)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?{_AI}|"
     rf"(?:dear|hey|hello|attention|to\s+the|to\s+any)\s+{_AI}|if\s+you\s+are\s+(?:an?\s+)?{_AI}|"
     rf"(?:any|all|the)\s+{_AI}\s+(?:reading|processing|parsing|reviewing|summari[sz]ing)\s+this)", 0.8),
    ("output_directive", r"\b(?:output|return|respond\s+with|reply\s+with|answer\s+with|print|emit|assign|bill|code\s+(?:this|the)\s+"
     r"(?:note|visit|encounter|patient|case)\s+(?:as|with)|use\s+(?:only\s+)?(?:the\s+)?(?:ICD(?:-10)?(?:-CM)?\s+)?code|"
     r"the\s+only\s+(?:correct|valid|appropriate|acceptable)\s+(?:ICD(?:-10)?(?:-CM)?\s+)?code\s+(?:is|for))\s+"
     r"(?:only\s+)?(?:the\s+)?(?:ICD(?:-10)?(?:-CM)?\s+)?(?:code\s+)?[A-TV-Z]\d{2}(?:\.[0-9A-Z]{1,4})?\b", 0.85),
    ("output_directive", r"\b(?:set|mark|classify|triage|assign|rate|label|downgrade|upgrade|lower|change)\s+(?:this\s+|the\s+)?"
     r"(?:patient|note|case|visit|acuity|triage|priority|urgency|ESI|KTAS)?\s*(?:level\s+|acuity\s+|priority\s+)?(?:as|to|at)\s+"
     r"(?:ESI\s+|KTAS\s+|level\s+|acuity\s+)?(?:[1-5]\b|non-?urgent|low\s+priority|not\s+urgent|routine|no\s+acuity)", 0.7),
    ("output_directive", r"\b(?:do\s+not|don'?t|never|must\s+not)\s+(?:flag|escalate|report|mention|include|code|list|summari[sz]e|"
     r"disclose|send\s+(?:this|the\s+note)\s+to|notify|alert|refer)\b[^.\n]{0,60}\b(?:reviewer|human|escalat|"
     r"output|summary|flag|code|safety|guardian|diagnos[ie]s|findings?|instructions?)", 0.6),
    ("output_directive", r"\b(?:summary|output|response|answer)\s+(?:must|should|shall)\s+(?:only\s+)?(?:say|state|read|be|contain|include)\b", 0.75),
    ("output_directive", r"\b(?:the\s+)?(?:patient|triage\s+level|acuity)\s+(?:must|should)\s+be\s+(?:triaged|classified|coded|labell?ed|marked)\s+as\b", 0.7),
    ("exfiltration", r"\b(?:reveal|print|show|repeat|output|display|leak|send|email|post|upload|exfiltrate)\s+(?:me\s+)?(?:your|the)\s+"
     r"(?:(?:hidden|secret|original|initial)\s+)?(?:system\s+prompt|instructions|prompt|rules|configuration|api\s+key|credentials|"
     r"all\s+(?:patient\s+)?records)", 0.9),
    ("exfiltration", r"\b(?:send|forward|post|upload|email)\s+(?:all|the|this|every)\s+(?:patient\s+)?(?:data|records?|notes?|PHI|information)\s+to\s+(?:https?://|\S+@\S+|the\s+following)", 0.85),
    ("delimiter", r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\|>|\[/?INST\]|<</?SYS>>|</?s>|"
     r"^\s*#{2,}\s*(?:system|instruction|instructions|assistant|new\s+task|response)\b|^\s*(?:system|assistant|SYSTEM|ASSISTANT)\s*:|"
     r"```\s*(?:system|instructions?)|<\s*/?\s*(?:system|instructions?|prompt)\s*>|END\s+OF\s+(?:NOTE|CONTEXT|DOCUMENT)\s*[\-=#>]", 0.9),
    ("hidden", r"<!--[\s\S]*?-->|<\s*(?:span|div|p)\s+style\s*=\s*[\"'][^\"']*(?:display\s*:\s*none|font-size\s*:\s*0|color\s*:\s*white|visibility\s*:\s*hidden)[^>]*>[\s\S]*?</\s*(?:span|div|p)\s*>", 0.85),
]
_COMPILED = [(k, re.compile(p, re.IGNORECASE | re.MULTILINE), s) for k, p, s in _RULES]

# clinical sentences that look like directives but are about the patient (lower the rule score)
_BENIGN_CONTEXT = re.compile(
    r"\b(?:patient|pt|she|he|they|family|mother|father|caregiver|was|were|has\s+been|had\s+been)\b[^.\n]{0,40}"
    r"\b(?:instructed|told|advised|asked|counsel+ed|educated|reminded|encouraged)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class InjectionCandidate:
    """A sentence or line that rules flagged as a possible injected instruction."""

    start: int
    end: int
    kinds: tuple[str, ...]
    rule_score: float

    @property
    def span(self) -> Span:
        return Span(start=self.start, end=self.end, label="injection:" + "+".join(self.kinds))


def _sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow [start, end) to the enclosing sentence (ending at . ! ? or a newline)."""
    left = start
    while left > 0:
        c = text[left - 1]
        if c == "\n" or (c in ".!?" and (left >= len(text) or text[left].isspace())):
            break
        left -= 1
    right = end
    while right < len(text):
        c = text[right]
        if c == "\n":
            break
        right += 1
        if c in ".!?" and (right >= len(text) or text[right].isspace()):
            break
    while left < right and text[left].isspace():
        left += 1
    while right > left and text[right - 1].isspace():
        right -= 1
    return left, right


def _next_sentence_end(text: str, end: int) -> int:
    """End of the sentence that follows ``end`` on the same line (``end`` itself at a line end)."""
    i = end
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] in "\r\n":
        return end
    return _sentence_bounds(text, i, i + 1)[1]


def _merge(cands: Iterable[InjectionCandidate]) -> list[InjectionCandidate]:
    out: list[InjectionCandidate] = []
    for c in sorted(cands, key=lambda c: c.start):
        if out and c.start <= out[-1].end:
            p = out[-1]
            kinds = tuple(dict.fromkeys(p.kinds + c.kinds))
            score = 1 - (1 - p.rule_score) * (1 - c.rule_score)
            out[-1] = InjectionCandidate(p.start, max(p.end, c.end), kinds, min(score, 0.99))
        else:
            out.append(c)
    return out


# a sentence is worth embedding only if it has some cue of talking to a machine or about its outputs
_CUE = re.compile(
    r"\b(?:you|your|yourself|AI|model|system|assistant|bot|LLM|GPT|agent|pipeline|tool|coder|summar\w*|triage|"
    r"acuity|level|code|codes|coding|ICD|output|respond\w*|answer|reply|print|return|ignore|disregard|forget|"
    r"override|bypass|skip|instruction\w*|prompt|task|escalat\w*|flag|review\w*|pretend|act|role|mode|hidden|"
    r"omit|leave|supersede\w*|message|priority|non-?urgent)\b|[<>\[\]#|{}]|[^\x00-\x7f]",
    re.IGNORECASE,
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences (or lines) of ``text`` as [start, end) offsets, whitespace trimmed (loose boundaries:
    injected instructions need not capitalise)."""
    return _text.sentence_spans(text, loose=True, min_chars=3)


def candidate_sentences(text: str) -> list[tuple[int, int]]:
    """Sentences worth a learned model's look: a cue of talking to a machine, and at least three words
    (a heading such as "INSTRUCTIONS" or a two-word line carries no order worth fencing)."""
    return [(s, e) for s, e in sentence_spans(text) if _CUE.search(text[s:e]) and len(text[s:e].split()) >= 3]


def learned_candidates(text: str, *, floor: float = 0.3, artifacts: str | None = None) -> list[InjectionCandidate]:
    """Sentences the injection head (MiniLM + logistic regression) scores at or above ``floor``."""
    from medslm.safety.heads import load_head

    head = load_head("guardian-injection", artifacts)
    spans = candidate_sentences(text)
    if not spans:
        return []
    from medslm.safety._embed import embed

    probs = head.proba(embed([text[s:e] for s, e in spans]))
    out = []
    for (s, e), p in zip(spans, probs, strict=True):
        # rescale so the head's own threshold maps to 0.5
        t = head.threshold
        score = 0.5 * float(p) / t if p < t else 0.5 + 0.5 * (float(p) - t) / (1 - t)
        if score >= floor:
            out.append(InjectionCandidate(s, e, ("learned",), round(min(score, 0.99), 4)))
    return out


def find_injection_candidates(text: str, *, learned: bool = True, artifacts: str | None = None) -> list[InjectionCandidate]:
    """Sentences or lines flagged as injected instructions (rules, and the learned head), merged, scored."""
    cands: list[InjectionCandidate] = []
    for m in HIDDEN_CHARS.finditer(text):
        s, e = _sentence_bounds(text, m.start(), m.end())
        cands.append(InjectionCandidate(min(s, m.start()), max(e, m.end()), ("hidden",), 0.8))
    # NFKC folds full-width and other look-alike letters; offsets stay valid only if length is kept
    norm = unicodedata.normalize("NFKC", text)
    scan = norm if len(norm) == len(text) else text
    scan = HIDDEN_CHARS.sub(" ", scan)  # "ign\u200bore" still reads "ign ore": strip for matching
    squeezed = HIDDEN_CHARS.sub("", text)
    for kind, rx, score in _COMPILED:
        for m in rx.finditer(scan):
            if kind == "hidden":
                s, e = m.start(), m.end()
            else:
                s, e = _sentence_bounds(text, m.start(), m.end())
                if kind == "override" and not text[m.end() : e].strip(" .!:;-"):
                    # "IGNORE PREVIOUS INSTRUCTIONS. <payload>": the order is the next sentence on the line
                    e = max(e, _next_sentence_end(text, e))
            sc = score
            if kind in ("output_directive", "override") and _BENIGN_CONTEXT.search(text[s:e]):
                sc = score * 0.5
            cands.append(InjectionCandidate(s, e, (kind,), sc))
    if squeezed != text and not cands:
        # hidden characters split a phrase: match on the squeezed text, fence the whole line
        for kind, rx, score in _COMPILED:
            if rx.search(squeezed):
                cands.append(InjectionCandidate(0, len(text), (kind, "hidden"), score))
                break
    if learned:
        cands += learned_candidates(text, artifacts=artifacts)
    return _merge(cands)


def fence_text(text: str, spans: Sequence[Span], fill: str = " ") -> str:
    """``text`` with the characters of ``spans`` replaced by ``fill`` (newlines kept): same length."""
    if not spans:
        return text
    chars = list(text)
    for sp in spans:
        for i in range(max(0, sp.start), min(len(chars), sp.end)):
            if chars[i] not in "\n\r":
                chars[i] = fill
    return "".join(chars)


__all__ = ["HIDDEN_CHARS", "InjectionCandidate", "candidate_sentences", "fence_text", "find_injection_candidates", "learned_candidates", "sentence_spans"]
