"""Candidate ICD-10-CM codes of a note, as a coder finds them: where each comes from and the words behind it.

- **Lexicon mentions**: the knowledge graph's matcher over the tabular names *and* the Alphabetic Index
  paths read as phrases ("ankle sprain" <- ``Sprain, ankle -> S93.40-``); clinical abbreviations only where
  their sense in the sentence is clear (:func:`abbreviation_sense`: "RA" after an SpO2 is room air, not
  rheumatoid arthritis).
- **Order-free mentions** (:func:`bag_mentions`): two to five content words of a sentence that are, in any
  order, all the words of a code's name ("pain in the right knee" -> "Pain in right knee").
- **Completions** (:func:`complete`): a category the note names ("S93.40", the index's "S93.40-") is
  completed to the billable code the note supports: laterality from the words around the mention,
  the 7th character (A initial / D subsequent / S sequela) from the encounter, otherwise the unspecified
  child; the other billable children stay as weaker candidates.
- **Contexts** (:func:`context_for`): the sentence a candidate stands on (its mention's sentence, or the
  sentence sharing most words with the code's description and index path), what the reranker reads.

Every code handed out is a knowledge-graph node: a code the graph does not hold is dropped here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medslm.knowledge import normalize as nz
from medslm.text import clause_spans

if TYPE_CHECKING:
    from medslm.knowledge import KnowledgeGraph

SYSTEM = "ICD10CM"
_WORD = re.compile(r"[a-z][a-z0-9'-]+")
_LABEL_STOP = frozenset({"unspecified", "other", "without", "with", "site", "type", "part", "specified", "organism",
                         "complications", "elsewhere", "classified", "behavior", "uncomplicated", "initial",
                         "encounter", "sequela", "subsequent", "disease", "disorder", "and", "the", "for", "not",
                         "due", "from"})


@dataclass(frozen=True)
class Mention:
    """A stretch of the note that names ICD-10-CM codes."""

    start: int
    end: int
    codes: tuple[str, ...]  # best first
    score: float            # 1.0 exact name, 0.9 normalized, 0.85 order-free, 0.8 abbreviation
    source: str             # "lexicon", "abbreviation" or "bag"


# ---------------------------------------------------------------------------------------------- sentences
def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (split at . ; ! ? and line ends, not inside decimals like "37.5"): :func:`medslm.text.clause_spans`."""
    return clause_spans(text)


def sentence_of(spans: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """The sentence span that holds ``[start, end)`` (or the nearest before it)."""
    best = (start, end)
    for s, e in spans:
        if s <= start < e or (s < end <= e):
            return (min(s, start), max(e, end))
        if s > end:
            break
        best = (s, e)
    return best if best[0] <= start else (start, end)


# ---------------------------------------------------------------------------------------------- abbreviations
#: abbreviations whose clinical sense in a note is (nearly always) the disease the graph names
UNAMBIGUOUS = frozenset({
    "AMI", "STEMI", "NSTEMI", "HTN", "SOB", "DOE", "CHF", "CAD", "AFIB", "AFib", "DVT", "CVA", "TIA", "COPD", "T2DM",
    "DM2", "T1DM", "DKA", "CKD", "AKI", "ESRD", "UTI", "URI", "GERD", "OSA", "BPH", "HLD", "PNA", "N/V", "ARDS",
    "SAH", "ICH", "PVD", "MDD", "GAD", "ADHD", "HIV", "SLE", "IBS", "IBD", "BPPV", "SIRS", "DM", "HF", "MI",
})
#: abbreviations with several senses: the disease sense (an expansion the graph names) and the words in
#: the sentence that make it clear; without them the abbreviation is not coded
AMBIGUOUS: dict[str, dict[str, str]] = {
    "RA": {"rheumatoid arthritis": r"rheumat|arthrit|joint|synovi|methotrexate|dmard|\brf\b|anti-ccp|hydroxychloroquine"},
    "CP": {"chest pain": r"chest|substernal|retrosternal|radiat|exertion|pressure|angina|pleuritic|c/o|complain|"
                        r"troponin|ecg|ekg|diaphore|pain",
           "cerebral palsy": r"cerebral|spastic|developmental|quadripleg|dipleg|hemipleg"},
    "PE": {"pulmonary embolism": r"embol|dvt|anticoag|heparin|cta\b|ct angio|d-dimer|wells|v/q|saddle|"
                                 r"r/o|rule out|ruled out|thromb|pleuritic|hypox|tachycard"},
    "MS": {"multiple sclerosis": r"sclerosis|demyelinat|relaps|remitting|optic neuritis|interferon|natalizumab|"
                                 r"ocrelizumab|lesions?\b"},
    "HA": {"headache": r"head|migraine|photophob|phonophob|throbbing|pain"},
    "LOC": {"loss of consciousness": r"syncop|faint|passed out|collaps|head|fall|fell|injur|seizure|struck|hit"},
    "AF": {"atrial fibrillation": r"rate|rhythm|anticoag|warfarin|apixaban|rivaroxaban|ecg|ekg|palpitat|"
                                  r"irregular|amiodarone|diltiazem|metoprolol|cha2ds2|cardiover"},
    "OA": {"osteoarthritis": r"knee|hip|joint|arthr|cartilage|crepit|stiffness"},
    "TB": {"respiratory tuberculosis": r"tubercul|ppd|quantiferon|night sweat|isoniazid|rifampin|sputum|afb|cavit"},
    "PAD": {"peripheral vascular disease": r"claudicat|pulses?\b|abi\b|ankle-brachial|limb|arter|vascular"},
}
#: the words before an "RA" / "PE" / "MS" that give it another sense (room air, physical exam, mental status)
_OTHER_SENSE = {
    "RA": r"(?:spo2|sao2|sat(?:uration)?s?|o2|oxygen|pulse ox\w*|%|on|breathing)\W*(?:\d+\W*%?\W*)?(?:on\W*)?$",
    "PE": r"(?:^|\n)\s*$|(?:on|at|during|per)\s+$",
    "MS": r"(?:mental|morphine)\W*$|\bms\s*(?:changes|intact)",
}


def abbreviation_sense(text: str, start: int, end: int, sentence: tuple[int, int]) -> str | None:
    """The disease sense of the abbreviation ``text[start:end]`` where the sentence makes it clear, else None.

    Uses the NER helper's ``medslm.knowledge.abbreviations.sense_in_context`` when it is installed; else
    these rules: an abbreviation in :data:`UNAMBIGUOUS` reads as its disease; one in :data:`AMBIGUOUS`
    only with a cue word of that sense in its sentence and no cue of another sense just before it ("SpO2
    95% on RA" is room air); any other short upper-case abbreviation is not read at all.
    """
    abbr = text[start:end]
    try:  # the NER agent's resolver, when present
        from medslm.knowledge.abbreviations import sense_in_context
    except ImportError:
        sense_in_context = None
    if sense_in_context is not None:
        sense = sense_in_context(text, start, end)
        # a sense that is not the patient's condition (room air, physical exam) or only the prior's guess
        # (nothing in the sentence decides) is not coded
        if sense is None or not sense.condition or sense.method == "prior":
            return None
        return sense.expansion
    if abbr in UNAMBIGUOUS:
        from medslm.knowledge.abbreviations import ABBREVIATIONS

        return ABBREVIATIONS.get(abbr, ABBREVIATIONS.get(abbr.upper(), ("",)))[0] or abbr
    senses = AMBIGUOUS.get(abbr.upper())
    if senses is None:
        return None
    before = text[max(sentence[0], start - 40) : start].lower()
    other = _OTHER_SENSE.get(abbr.upper())
    if other and re.search(other, before):
        return None
    sent = (text[sentence[0] : start] + " " + text[end : sentence[1]]).lower()
    for sense, cues in senses.items():
        if re.search(cues, sent):
            return sense
    return None


# ---------------------------------------------------------------------------------------------- mentions
def find_mentions(kg: KnowledgeGraph, text: str, spans: Sequence[tuple[int, int]] | None = None) -> list[Mention]:
    """Lexicon and order-free mentions of ICD-10-CM codes in ``text`` (abbreviations guarded)."""
    spans = sentences(text) if spans is None else spans
    out: list[Mention] = []
    for m in kg.matcher((SYSTEM,)).find(text):
        codes = tuple(c.partition(":")[2] for c in m.concept_ids if c.startswith(f"{SYSTEM}:"))
        if not codes:
            continue
        is_abbr = m.score <= 0.8 and m.text == m.matched
        if is_abbr:
            sense = abbreviation_sense(text, m.start, m.end, sentence_of(spans, m.start, m.end))
            if sense is None:
                continue
            wanted = {c.concept.code for c in kg.lookup(sense, systems=(SYSTEM,), k=3, fuzzy=False)}
            codes = tuple(c for c in codes if c in wanted)
            if not codes:
                continue
        out.append(Mention(m.start, m.end, codes, m.score, "abbreviation" if is_abbr else "lexicon"))
    out.extend(bag_mentions(kg, text, spans, [(m.start, m.end) for m in out]))
    out.sort(key=lambda m: (m.start, -m.end))
    return out


def bag_mentions(kg: KnowledgeGraph, text: str, spans: Sequence[tuple[int, int]],
                 covered: Sequence[tuple[int, int]] = (), *, max_words: int = 5, max_chars: int = 60) -> list[Mention]:
    """Windows of 2..``max_words`` content words of one sentence whose word set is a code name's word set
    (order, "of"/"the" and plural free); the longest first, not overlapping each other, and not inside
    a lexicon mention."""
    index = kg.lexical_index(SYSTEM)
    found: list[tuple[int, int, tuple[str, ...]]] = []
    for s0, s1 in spans:
        toks = [(a + s0, b + s0, t) for a, b, t in nz.tokens(text[s0:s1]) if t not in nz.STOP_WORDS]
        for i in range(len(toks)):
            words: list[str] = []
            for j in range(i, min(i + max_words, len(toks))):
                if toks[j][1] - toks[i][0] > max_chars:
                    break
                words.append(toks[j][2])
                if j == i:
                    continue
                ids = _bag_ids(index, words)
                plain = [w for w in words if w not in _SIDES]  # "fracture of the left femur": the side apart,
                if not ids and len(plain) >= 2 and len(plain) < len(words):  # when no name holds it
                    ids = _bag_ids(index, plain)
                if ids:
                    found.append((toks[i][0], toks[j][1], tuple(x.partition(":")[2] for x in ids)))
    found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
    taken: list[tuple[int, int]] = []
    out = []
    for s, e, codes in found:
        # not inside (or across the edge of) a lexicon mention, nor overlapping a longer window; a window
        # that holds a whole lexicon mention is kept ("pain in the right knee" over "pain")
        if any(s < b and a < e and not (s <= a and b <= e) for a, b in covered):
            continue
        if any(s < b and a < e for a, b in taken):
            continue
        taken.append((s, e))
        out.append(Mention(s, e, codes[:3], 0.85, "bag"))
    return out


_SIDES = frozenset({"right", "left", "bilateral"})


def _bag_ids(index: Any, words: list[str]) -> list[str]:
    ids: list[str] = []
    for ws in _forms(words):
        hit = index.bags.get(" ".join(sorted(set(ws))))
        for k in () if hit is None else (hit,) if isinstance(hit, int) else hit:
            ids.extend(x for x in index.ids[k] if x not in ids)
    return ids


def _forms(words: list[str]) -> list[list[str]]:
    """The words, and with participles read as their noun ("sprained" -> "sprain", "fractured" ->
    "fracture"): at most one participle per window is varied."""
    out = [words]
    for k, w in enumerate(words):
        if len(w) > 5 and w.endswith("ed"):
            out.extend([*words[:k], base, *words[k + 1 :]] for base in (w[:-2], w[:-1]))
            break
    return out


# ---------------------------------------------------------------------------------------------- completion
_RIGHT = re.compile(r"\bright\b|\brt\b|\br\.?(?=\s)", re.IGNORECASE)
_LEFT = re.compile(r"\bleft\b|\blt\b|\bl\.?(?=\s)", re.IGNORECASE)
_BILATERAL = re.compile(r"\bbilateral(?:ly)?\b|\bboth\b|\bb/l\b", re.IGNORECASE)
_SUBSEQUENT = re.compile(r"subsequent|follow[- ]?up|healing|recheck|cast (?:check|change)|suture removal", re.IGNORECASE)
_SEQUELA = re.compile(r"sequela|late effect|residual|old (?:injury|fracture)", re.IGNORECASE)
_OPEN = re.compile(r"\bopen (?:fracture|wound)|compound fracture", re.IGNORECASE)


def laterality(window: str) -> str | None:
    """"right", "left", "bilateral" or None from the words around a mention."""
    if _BILATERAL.search(window):
        return "bilateral"
    right, left = _RIGHT.search(window), _LEFT.search(window)
    if right and not left:
        return "right"
    if left and not right:
        return "left"
    return None


def encounter_char(window: str, note_text: str = "") -> str:
    """The 7th character's sense for an injury: "initial", "subsequent" or "sequela"."""
    for where in (window, note_text[:400]):
        if _SEQUELA.search(where):
            return "sequela"
        if _SUBSEQUENT.search(where):
            return "subsequent"
    return "initial"


def _pick(kids: list[tuple[str, str]], side: str | None, enc: str, is_open: bool, words: set[str]) -> str | None:
    """The child (code, label) a note supports best: 7th character, laterality, then overlap, then the
    unspecified child; None when nothing in the note (nor an unspecified child) decides."""
    labels = {c: lab.lower() for c, lab in kids}
    sides = ("right", "left", "bilateral")
    sided = any(x in lab for lab in labels.values() for x in sides)  # do the children differ by side?

    def score(c: str) -> tuple[float, ...]:
        lab = labels[c]
        enc_ok = (enc in lab) if "encounter" in lab or "sequela" in lab else True
        if enc == "initial" and "initial encounter" in lab:
            enc_ok = ("open" in lab) == is_open if "fracture" in lab else True
        side_hit = 0.0
        if sided:
            named = [x for x in sides if x in lab]
            if side and side in named:
                side_hit = 1.0
            elif not side and not named:  # no side in the note: the child without one ("unspecified ...")
                side_hit = 0.5
            elif side and not named:
                side_hit = 0.25
        overlap = len(words & {w[:5] for w in _WORD.findall(lab) if w not in _LABEL_STOP})
        # the default of a category: its unspecified / uncomplicated child ("E11" -> E11.9, not E11.8 "with
        # unspecified complications")
        if "with unspecified complication" in lab:
            unspec = 0.2
        elif "unspecified" in lab or "without complication" in lab or "uncomplicated" in lab:
            unspec = 1.0
        else:
            unspec = 0.5 if c.endswith("9") else 0.0
        return (float(enc_ok), side_hit, overlap, unspec, -len(lab))

    best = max(labels, key=score)
    enc_driven = any("encounter" in lab or "sequela" in lab for lab in labels.values())
    side_driven = sided
    sc = score(best)
    if len(labels) > 1 and not (enc_driven or side_driven or sc[2] > 0 or sc[3] > 0):
        return None
    return best


def complete(kg: KnowledgeGraph, code: str, window: str, note_text: str = "", *, max_depth: int = 4
             ) -> tuple[str | None, list[str]]:
    """``(the billable code the note supports, the other billable descendants)`` of a category ``code``.

    ``window``: the words around the mention (laterality, open/closed, encounter); ``note_text``: the
    note (its first lines say "follow-up visit" etc.). A billable ``code`` is returned as is.
    """
    concept = kg.get(code, SYSTEM)
    if concept is None:
        return None, []
    if concept.billable:
        return concept.code, []
    side = laterality(window)
    enc = encounter_char(window, note_text)
    is_open = bool(_OPEN.search(window))
    words = {w[:5] for w in _WORD.findall(window.lower()) if w not in _LABEL_STOP}
    cur = concept.code
    for _ in range(max_depth):
        kids = [(k.code, k.label) for k in kg.children(cur)]
        if not kids:
            break
        nxt = _pick(kids, side, enc, is_open, words)
        if nxt is None:
            break
        cur = nxt
        c = kg.get(cur, SYSTEM)
        if c is not None and c.billable:
            break
    chosen = cur if kg.is_billable(cur) else None
    others = [d.code for d in kg.descendants(concept.code) if d.billable and d.code != chosen]
    return chosen, others


# ---------------------------------------------------------------------------------------------- contexts
def stems(s: str) -> set[str]:
    return {w[:5] for w in _WORD.findall(s.lower()) if w not in _LABEL_STOP and len(w) > 2}


def best_sentence(text: str, spans: Sequence[tuple[int, int]], words: set[str]) -> tuple[tuple[int, int] | None, int]:
    """The sentence sharing most word stems with ``words`` and how many it shares."""
    best, best_n = None, 0
    for s, e in spans:
        n = len(words & stems(text[s:e]))
        if n > best_n:
            best, best_n = (s, e), n
    return best, best_n


def context_for(text: str, span: tuple[int, int] | None, spans: Sequence[tuple[int, int]], *,
                max_words: int = 40) -> str:
    """The words the reranker reads for a candidate: the sentence holding ``span`` with the mention
    marked ``[[ ]]`` (cut to ``max_words`` words around it), or "" without a span."""
    if span is None:
        return ""
    s, e = sentence_of(spans, *span)
    if span[0] >= span[1]:  # a whole sentence (no mention)
        words = text[s:e].split()
        return " ".join(words[:max_words])
    left = text[s : span[0]].split()
    right = text[span[1] : e].split()
    keep = max(0, max_words - len(text[span[0] : span[1]].split()))
    n_left = min(len(left), keep // 2 + max(0, keep // 2 - len(right)))
    n_right = keep - n_left
    return " ".join([*left[len(left) - n_left :], "[[", text[span[0] : span[1]], "]]", *right[:n_right]])


__all__ = ["AMBIGUOUS", "UNAMBIGUOUS", "Mention", "abbreviation_sense", "bag_mentions", "best_sentence",
           "complete", "context_for", "encounter_char", "find_mentions", "laterality", "sentence_of", "sentences",
           "stems"]
