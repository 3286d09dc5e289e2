"""The summarization agent: a structured summary whose every sentence links to the note spans behind it.

How a summary is made, per configured section (chief complaint, HPI, findings, assessment, plan, …):

1. **Source**: identification lines (name, MRN, date of birth, phone, address…) are taken out of the
   note; they never reach the model nor the summary. The rest of the note is the source of every
   section (one shared prompt prefix) when it fits the adapter's ``max_source_tokens``; a longer note
   gives each section its own source: the units the extractive selection ranks highest for it.
2. **Write** (abstractive, the SLM: SmolLM2-135M-Instruct with the ``summarize-lora`` adapter that
   ``medslm train summarize-lora`` fits on MTS-Dialog and ACI-Bench train): each section in **one
   constrained pass** (:mod:`medslm.agents.section_writer`: sentences ending with a full stop, at most
   :data:`~medslm.agents.section_writer.MAX_SENTENCES`, a token budget per section), all sections of a
   note in one batch that shares the note's tokens.
3. **Check** (:mod:`medslm.agents.faithfulness`): each written sentence must have its numbers,
   negations and terms in the note and support spans into it. A sentence that fails is replaced by the
   extractive sentence of the note unit that best supports it when that one passes, else dropped; a
   section left empty gets its extractive sentences (the rules' selection) that pass. All counted in
   ``signals``. Every final sentence passes the check and carries its support spans.
4. **Select** (extractive, rules; the fallback and the classical baseline, ``abstractive=False``): note
   units (sentences, dialogue turns) scored per section by section headers, cue words, centrality and
   speaker.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.agents.faithfulness import NoteIndex, Unit, check_sentence, content_terms, segment
from medslm.agents.section_writer import (
    PROMPT_VERSION,
    SECTION_REGEX,
    SYSTEM_PROMPT,
    USER_TEMPLATE,
    max_tokens_for,
    section_messages,
    split_sentences,
)
from medslm.errors import ConfigurationError, MedslmError, ModelError, UnknownNameError
from medslm.models.base import Generation, LanguageModel, Regex, prompt_hash
from medslm.records import (
    AgentResult,
    Note,
    Provenance,
    Span,
    Summary,
    SummarySection,
    SummarySentence,
)

__all__ = [
    "DEFAULT_SECTIONS",
    "MIN_CONTENT_WORDS",
    "SECTIONS",
    "SECTION_REGEX",
    "SectionSources",
    "SummarizeAgent",
    "is_identification_line",
    "section_sources",
    "select_units",
]

log = logging.getLogger(__name__)

DEFAULT_SECTIONS = ("chief_complaint", "hpi", "findings", "assessment", "plan")


@dataclass(frozen=True)
class SectionSpec:
    title: str
    headers: re.Pattern[str]  # note section headers that belong here
    cues: re.Pattern[str]  # words that suggest a unit belongs here
    k: int  # sentences to select
    speaker: str | None = None  # in a dialogue, the speaker whose turns fit best


def _p(s: str) -> re.Pattern[str]:
    return re.compile(s, re.I)


_SYMPTOMS = (r"pain|ache|aching|fever|cough|nausea|vomit\w*|diarrh\w*|dizz\w*|headache|rash|swelling|swollen|"
             r"short(?:ness)? of breath|breath\w*|bleed\w*|fatigue|tired|weak\w*|numb\w*|tingling|itch\w*|sore|"
             r"cramp\w*|discomfort|palpitation\w*|anxiety|depress\w*|confus\w*|injur\w*|fell|fall")

SECTIONS: dict[str, SectionSpec] = {
    "chief_complaint": SectionSpec(
        "Chief complaint", _p(r"chief complaint|reason for (?:visit|consult\w*)|^cc\b"),
        _p(r"\b(?:brings? you in|here (?:for|today|with)|presents? (?:with|for|today)|complain\w*|c/o|"
           r"reason for|follow[- ]?up|came in|concern\w*|" + _SYMPTOMS + r")\b"), 1, "patient"),
    "hpi": SectionSpec(
        "History of present illness", _p(r"history of present illness|^hpi\b|^history\b|^subjective\b|interval history"),
        _p(r"\b(?:started|began|since|ago|days?|weeks?|months?|years?|worse|better|onset|gradual\w*|sudden\w*|"
           r"episode\w*|year[- ]old|" + _SYMPTOMS + r")\b"), 3, "patient"),
    "findings": SectionSpec(
        "Findings", _p(r"physical exam\w*|^exam\w*|^vital|^results?\b|^labs?\b|^imaging|objective|^findings"),
        _p(r"\b(?:exam\w*|blood pressure|bp|heart rate|pulse|temperature|oxygen|saturation|tender\w*|lungs?|"
           r"heart|murmur|auscultation|x-?ray|ct|mri|ultrasound|ekg|ecg|echo\w*|labs?|blood work|results?|"
           r"revealed|showed|shows|normal|abnormal|elevated|level|count|a1c|hemoglobin|swelling|edema|"
           r"range of motion|reflexes|palpation)\b"), 3, "doctor"),
    "assessment": SectionSpec(
        "Assessment", _p(r"^assessment|^impression|^diagnos\w*|assessment and plan|^a/p\b"),
        _p(r"\b(?:assessment|impression|diagnos\w*|likely|consistent with|suspect\w*|probabl\w*|think (?:it|this|you)|"
           r"looks like|due to|secondary to|differential|rule out|condition|syndrome|disease|disorder|"
           r"infection|chronic|acute)\b"), 2, "doctor"),
    "plan": SectionSpec(
        "Plan", _p(r"^plan\b|assessment and plan|^recommendation\w*|^disposition|^follow[- ]?up|^instructions"),
        _p(r"\b(?:plan|will|we'll|i'll|going to|start\w*|prescrib\w*|continue|increase|decrease|refer\w*|order\w*|"
           r"recommend\w*|schedul\w*|follow[- ]?up|come back|return|mg|medication|therapy|physical therapy|"
           r"surgery|appointment|tests?|labs?|x-?ray|mri|stop|avoid|advised?)\b"), 3, "doctor"),
    "assessment_plan": SectionSpec(
        "Assessment and plan", _p(r"^assessment|^impression|^diagnos\w*|^a/p\b|^plan\b|^recommendation\w*|"
                                  r"^instructions"),
        _p(r"\b(?:assessment|impression|diagnos\w*|likely|consistent with|suspect\w*|plan|will|we'll|going to|"
           r"start\w*|prescrib\w*|continue|increase|decrease|refer\w*|order\w*|recommend\w*|schedul\w*|"
           r"follow[- ]?up|come back|return|mg|medication|therapy|surgery|appointment)\b"), 5, "doctor"),
    "review_of_systems": SectionSpec(
        "Review of systems", _p(r"^review of systems|^ros\b"),
        _p(r"\b(?:any|denies|deny|no|" + _SYMPTOMS + r"|chills|sweats|weight|appetite|urinat\w*|bowel|vision|"
           r"chest|wheez\w*)\b"), 4, None),
    "past_medical_history": SectionSpec(
        "Past medical history", _p(r"^past medical history|^pmh\b|^medical history|^other history|^gyn"),
        _p(r"\b(?:history|diagnosed|had|have|diabetes|hypertension|high blood pressure|asthma|copd|cancer|"
           r"heart|stroke|thyroid|cholesterol|depression|kidney|liver|condition\w*|years? ago|since|"
           r"pregnan\w*|period\w*|menstrua\w*)\b"), 2, "patient"),
    "past_surgical_history": SectionSpec(
        "Past surgical history", _p(r"^past surgical history|^psh\b|^surgical history|^procedures?"),
        _p(r"\b(?:surger\w*|operation\w*|operated|removed|removal|ectomy|\w+ectomy|\w+otomy|\w+plasty|"
           r"replacement|repair|biopsy|procedure\w*|scope|c-?section)\b"), 2, "patient"),
    "medications": SectionSpec(
        "Medications", _p(r"^medications?|^current medications|^meds\b|^immunizations?"),
        _p(r"\b(?:taking|take|takes|medications?|medicines?|meds|pills?|mg|milligrams?|tablets?|daily|"
           r"twice|prescri\w*|dose|inhaler|insulin|vaccin\w*|shots?|\w+pril|\w+olol|\w+statin|\w+azole|"
           r"\w+cillin|\w+mycin|\w+prazole|\w+sartan|\w+formin)\b"), 2, "patient"),
    "allergies": SectionSpec(
        "Allergies", _p(r"^allerg\w*"),
        _p(r"\b(?:allerg\w*|reaction\w*|hives|anaphyla\w*|nkda|intoleran\w*)\b"), 1, "patient"),
    "family_social_history": SectionSpec(
        "Family and social history", _p(r"^family history|^social history|^fh\b|^sh\b|^fam"),
        _p(r"\b(?:family|mother|father|mom|dad|brother|sister|sibling\w*|parents?|son|daughter|children|kids|"
           r"wife|husband|married|divorced|single|lives?|living|work\w*|job|retired|smok\w*|cigarettes?|"
           r"tobacco|alcohol|drink\w*|beer|wine|drugs?|marijuana|exercise|diet|runs?|hobb\w*)\b"), 3, "patient"),
}

#: A section never repeats this many tokens (greedy decoding of a small model loops: "She denies X. She
#: denies X. …"); shorter repeats ("The patient reports") stay allowed.
NO_REPEAT_NGRAM = 6
#: A written sentence with fewer content words than this says nothing ("Mr.", "The patient.").
MIN_CONTENT_WORDS = 2

_HEADER_LINE = re.compile(r"^\s*([A-Z][A-Za-z /&\-]{2,60}?)\s*:?\s*$|^\s*([A-Z][A-Za-z /&\-]{2,40}):\s+\S")
_FIRST_PERSON = [
    (re.compile(r"\bI'm\b", re.I), "the patient is"), (re.compile(r"\bI've\b", re.I), "the patient has"),
    (re.compile(r"\bI am\b", re.I), "the patient is"), (re.compile(r"\bI have\b", re.I), "the patient has"),
    (re.compile(r"\bI was\b", re.I), "the patient was"), (re.compile(r"\bI'd\b", re.I), "the patient had"),
    (re.compile(r"\bI\b"), "the patient"), (re.compile(r"\bmy\b", re.I), "their"),
    (re.compile(r"\bme\b", re.I), "them"), (re.compile(r"\bmyself\b", re.I), "themself"),
]
# leading fillers; never "no" (it carries a negation)
_FILLER = re.compile(r"^(?:(?:yes|yeah|yep|okay|ok|um+|uh+|well|so|oh|hmm+|mm-?hmm|right|sure|alright)\b[,.!]?\s+)+", re.I)
_QUESTION_LEAD = re.compile(
    r"^(?:(?:and|or|also|so|okay|ok|now|um|uh),?\s+)*"
    r"(?:(?:do|did|have|has|are|were|is|was)\s+(?:you|they|she|he)\s+(?:ever\s+)?(?:been\s+)?"
    r"(?:had|have|having|noticed|noticing|experienced|experiencing|gotten|get|getting|felt|feel|feeling)?\s*"
    r"|how about\s+|what about\s+|(?:is|are|were|was)\s+there\s+)?(?:any\b\s*)?", re.I)
_PARTICIPLE = frozenset(["taken", "been", "seen", "used", "tried", "done", "gone", "had", "given", "eaten"])


def _section_spec(name: str) -> SectionSpec:
    try:
        return SECTIONS[name]
    except KeyError:
        raise UnknownNameError("summary section", name, list(SECTIONS)) from None


def _headers(text: str, units: Sequence[Unit]) -> tuple[list[frozenset[str] | None], list[bool]]:
    """For each unit, the summary sections of the note header it sits under (None: no header), and
    whether the unit is itself a header line."""
    heads: list[tuple[int, frozenset[str]]] = []
    header_lines: list[tuple[int, int]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        m = _HEADER_LINE.match(line)
        if m:
            h = (m.group(1) or m.group(2) or "").strip().lower()
            names = frozenset(name for name, spec in SECTIONS.items() if spec.headers.search(h))
            if names or (m.group(1) and line.strip().isupper()):
                heads.append((pos, names))  # an unknown header (empty set) ends the previous section
            if m.group(1):
                header_lines.append((pos, pos + len(line)))
        pos += len(line)
    out: list[frozenset[str] | None] = []
    is_header: list[bool] = []
    j = -1
    for u in units:
        while j + 1 < len(heads) and heads[j + 1][0] <= u.start:
            j += 1
        out.append(heads[j][1] if j >= 0 else None)
        is_header.append(any(a <= u.start < b for a, b in header_lines))
    return out, is_header


def _rewrite(u: Unit) -> str:
    """A unit as a summary sentence: fillers dropped, first person turned to third, questions answered."""
    t = u.text.strip()
    if u.negated_by_answer and t.endswith("?"):
        body = _QUESTION_LEAD.sub("", t.rstrip("?").strip(), count=1).strip(" ,")
        if not body:
            return ""
        first = body.split()[0].lower()
        if first == "no":
            body = body[2:].lstrip()
        body = re.sub(r"\byour\b", "their", re.sub(r"\byou\b", "the patient", body, flags=re.I), flags=re.I)
        if first.endswith("ed") or first in _PARTICIPLE:  # "have you applied anything" -> "has not applied"
            t = f"Has not {body}."
        else:
            t = f"No {body}."
    elif u.speaker == "patient":
        t = _FILLER.sub("", t)
        for pat, rep in _FIRST_PERSON:
            t = pat.sub(rep, t)
    else:
        t = _FILLER.sub("", t)
    t = re.sub(r"\s+([,.?!])", r"\1", t).strip()
    return t[:1].upper() + t[1:] if t else t


def _candidates(text: str, units: Sequence[Unit], sections: Sequence[str], chunk_chars: int,
                k: Mapping[str, int] | None, exclude: frozenset[int]) -> tuple[dict[str, list[tuple[float, int]]],
                                                                      dict[str, float]]:
    """Scored candidate units per section (``(score, index)``, each chunk's best) and selection signals."""
    specs = {s: _section_spec(s) for s in sections}
    heads, is_header = _headers(text, units)
    terms = [set(content_terms(u.text)) for u in units]
    df: Counter[str] = Counter()
    for t in terms:
        df.update(t)
    n = len(units)
    idf = {w: math.log(1 + n / c) for w, c in df.items()}
    dialogue = sum(u.speaker is not None for u in units) > n / 2
    # chunks of consecutive units
    chunks: list[list[int]] = [[]]
    size = 0
    for i, u in enumerate(units):
        if chunks[-1] and size + len(u.text) > chunk_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(i)
        size += len(u.text) + 1

    def score(i: int, name: str, centroid: Mapping[str, float]) -> float:
        u, spec = units[i], specs[name]
        t = terms[i]
        if i in exclude or is_header[i] or not (t or any(c.isdigit() for c in u.text)):
            return -1.0
        s = 0.0
        if heads[i] is not None:
            s += 3.0 if name in heads[i] else (-1.5 if heads[i] else 0.0)
        cue_hits = len(spec.cues.findall(u.text))
        s += min(cue_hits, 3) * 0.8
        s += 1.5 * sum(centroid.get(w, 0.0) for w in t) / (1 + math.sqrt(len(t)))
        s += min(len(t), 12) / 12.0
        if dialogue:
            if u.negated_by_answer:
                s += 0.5 if name == "review_of_systems" else -0.3
            elif u.text.rstrip().endswith("?"):
                s -= 1.0
            if spec.speaker and u.speaker == spec.speaker:
                s += 0.5
        if len(t) < 2 and not any(c.isdigit() for c in u.text):
            s -= 0.7
        return s

    candidates: dict[str, list[tuple[float, int]]] = {s: [] for s in sections}
    for chunk in chunks:
        tf: Counter[str] = Counter()
        for i in chunk:
            tf.update(terms[i])
        norm = max(tf.values(), default=1)
        centroid = {w: (c / norm) * idf.get(w, 0.0) / (1 + math.log(1 + n)) for w, c in tf.items()}
        for name in sections:
            want = (k or {}).get(name, specs[name].k)
            local = sorted(((score(i, name, centroid), i) for i in chunk), reverse=True)[: want * 2]
            candidates[name].extend(local)
    return candidates, {"chunks": float(len(chunks)), "units": float(n), "dialogue": float(dialogue)}


def select_units(text: str, units: Sequence[Unit], sections: Sequence[str], chunk_chars: int = 4000,
                 k: Mapping[str, int] | None = None, exclude: Iterable[int] = ()
                 ) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Indices of the units chosen for each section (in note order) and selection signals.

    Units are scored in chunks of at most ``chunk_chars`` characters; each chunk proposes candidates for
    every section and the candidates of all chunks are merged and re-ranked. Units in ``exclude``
    (identification lines) are never chosen.
    """
    if not units:
        return {s: [] for s in sections}, {"chunks": 0.0, "units": 0.0}
    specs = {s: _section_spec(s) for s in sections}
    candidates, signals = _candidates(text, units, sections, chunk_chars, k, frozenset(exclude))
    # merge: each unit goes to the section where it scores best; each section keeps its top k
    best_for: dict[int, tuple[float, str]] = {}
    for name, cands in candidates.items():
        for s, i in cands:
            if s > best_for.get(i, (-math.inf, ""))[0]:
                best_for[i] = (s, name)
    chosen: dict[str, list[int]] = {}
    margins = []
    for name in sections:
        want = (k or {}).get(name, specs[name].k)
        mine = sorted(((s, i) for s, i in candidates[name] if best_for[i][1] == name and s > 0.5), reverse=True)
        picked = mine[:want]
        chosen[name] = sorted(i for _, i in picked)
        if picked:
            margins.append(picked[0][0])
    signals["selection_strength"] = (sum(margins) / len(margins) / 5.0) if margins else 0.0
    return chosen, signals


# ------------------------------------------------------------------------------------ identification lines
def is_identification_line(line: str) -> bool:
    """True when ``line`` identifies the patient (:func:`medslm.safety.phi.is_identification_line`)."""
    from medslm.safety.phi import is_identification_line as check

    return check(line)


def identification_units(text: str, units: Sequence[Unit]) -> frozenset[int]:
    """Indices of units that are, or sit on a line that is, an identification line (name, MRN, date of
    birth, phone, address… :func:`medslm.safety.phi.is_identification_line`); the PHI detector runs once
    per note and each unit and line looks at its own spans."""
    from medslm.safety.phi import find_phi, is_identification_line

    phi = find_phi(text, use_ner=False)

    def ident(a: int, b: int) -> bool:
        inside = [p.model_copy(update={"start": p.start - a, "end": p.end - a}) for p in phi
                  if a <= p.start and p.end <= b]
        return is_identification_line(text[a:b], inside)

    out = set()
    for i, u in enumerate(units):
        a = text.rfind("\n", 0, u.start) + 1
        end = text.find("\n", u.end)
        if ident(u.start, u.end) or ident(a, len(text) if end < 0 else end):
            out.add(i)
    return frozenset(out)


# ------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class SectionSources:
    """What each section is written from."""

    text: dict[str, str]  # section -> source text (identification lines removed)
    dialogue: bool  # the note is a conversation (speaker turns)
    shared: bool  # one source for every section (the whole note): the prompts share it
    excluded: int  # identification units taken out


def _render(units: Sequence[Unit], idx: Iterable[int], dialogue: bool) -> str:
    lines = []
    for i in sorted(idx):
        u = units[i]
        lines.append(f"[{u.speaker}] {u.text}" if dialogue and u.speaker else u.text)
    return "\n".join(lines)


def section_sources(text: str, sections: Sequence[str], *, count: Callable[[str], int] | None = None,
                    fits: Callable[[str], bool] | None = None, max_source_tokens: int = 1536,
                    units: Sequence[Unit] | None = None, exclude: Iterable[int] | None = None,
                    chunk_chars: int = 4000) -> SectionSources:
    """The source of each section: the note less its identification lines when it fits
    ``max_source_tokens`` (``count`` tokens, or ``fits``), else, per section, the units the extractive
    selection ranks highest for it, in note order, up to that budget. Used alike by the agent and by
    the training recipe, so the adapter learns from the sources it will see."""
    units = list(units) if units is not None else segment(text)
    ident = frozenset(exclude) if exclude is not None else identification_units(text, units)
    dialogue = bool(units) and sum(u.speaker is not None for u in units) > len(units) / 2
    if ident:
        # the note with identification units cut out (line breaks kept)
        keep, pos = [], 0
        for i in sorted(ident):
            keep.append(text[pos : units[i].start])
            pos = units[i].end
        keep.append(text[pos:])
        whole = re.sub(r"\n[ \t]*(?:\n[ \t]*)+", "\n\n", "".join(keep)).strip()
    else:
        whole = text.strip()
    n_tok = count(whole) if count is not None else None
    ok = fits(whole) if fits is not None else (n_tok if n_tok is not None else len(whole) // 4) <= max_source_tokens
    if ok or not units:
        return SectionSources({s: whole for s in sections}, dialogue, True, len(ident))
    chars_per_token = len(whole) / max(1, n_tok if n_tok is not None else len(whole) // 4)
    if fits is not None and count is None:
        chars_per_token = 3.6
    budget = int(max_source_tokens * chars_per_token)
    big = {s: len(units) for s in sections}
    candidates, _ = _candidates(text, units, sections, chunk_chars, big, ident)
    out = {}
    for name in sections:
        ranked = sorted(((sc, i) for sc, i in candidates[name] if sc > 0.5), reverse=True)
        ranked += sorted(((sc, i) for sc, i in candidates[name] if sc <= 0.5 and i not in ident), reverse=True)
        picked: list[int] = []
        size = 0
        for _, i in ranked:
            n = len(units[i].text) + 12
            if size + n > budget:
                continue
            picked.append(i)
            size += n
        out[name] = _render(units, picked, dialogue)
    return SectionSources(out, dialogue, False, len(ident))


class SummarizeAgent:
    """Structured, grounded summary: each section written by the SLM in one constrained pass, every sentence
    checked against the note, the extractive selection as fallback (see the module doc).

    ``model`` is a catalog spec or a :class:`LanguageModel` (loaded on first use). With the default
    ``"embedded"`` the ``adapter`` artifact (``summarize-lora``; from ``artifacts`` or the package) is
    merged into the model; ``adapter=None`` uses the plain instruct model. ``abstractive=False`` skips the
    SLM (extractive summary only: the classical system). ``sentences`` overrides how many units a section
    selects for the extractive path. ``max_source_tokens`` overrides the adapter's source budget.
    """

    name = "summarize"

    def __init__(
        self,
        model: str | LanguageModel = "embedded",
        sections: Sequence[str] = DEFAULT_SECTIONS,
        *,
        abstractive: bool = True,
        adapter: str | None = "summarize-lora",
        artifacts: str | Path | None = None,
        sentences: Mapping[str, int] | None = None,
        chunk_chars: int = 4000,
        max_new_tokens: int | None = None,
        max_source_tokens: int | None = None,
        min_term_coverage: float = 0.6,
    ) -> None:
        if not sections:
            raise ConfigurationError("SummarizeAgent needs at least one section, e.g. ('hpi', 'plan')")
        for s in sections:
            _section_spec(s)
        if chunk_chars < 200:
            raise ConfigurationError(f"chunk_chars={chunk_chars} is too small; use >= 200 (default 4000)")
        self.model_spec = model
        self.sections = tuple(sections)
        self.abstractive = abstractive
        self.adapter = adapter
        self.artifacts = artifacts
        self.sentences = dict(sentences or {})
        self.chunk_chars = chunk_chars
        self.max_new_tokens = max_new_tokens
        self.max_source_tokens = max_source_tokens
        self.min_term_coverage = min_term_coverage
        self._lm: LanguageModel | None = model if not isinstance(model, str) else None

    @property
    def lm(self) -> LanguageModel:
        if self._lm is None:
            from medslm.models.catalog import load_model

            spec = str(self.model_spec)
            if spec == "embedded" and self.adapter:
                from medslm.artifacts import ArtifactError, artifact_dir

                try:
                    lm = load_model(f"embedded?adapter={artifact_dir(self.adapter, self.artifacts)}")
                    load = getattr(lm, "load", None)
                    if callable(load):
                        load()
                    self._lm = lm
                except (ArtifactError, ModelError) as exc:
                    log.warning("summarize: adapter %r not used (%s); writing with the plain instruct model",
                                self.adapter, exc)
            if self._lm is None:
                self._lm = load_model(spec)
        return self._lm

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(SYSTEM_PROMPT, USER_TEMPLATE, SECTION_REGEX, PROMPT_VERSION)

    def _source_budget(self, lm: LanguageModel) -> int:
        if self.max_source_tokens is not None:
            return self.max_source_tokens
        cfg = getattr(lm, "adapter_config", None) or {}
        return int(cfg.get("max_source_tokens", 1536))

    def write(self, note: Note, units: Sequence[Unit] | None = None,
              exclude: Iterable[int] | None = None) -> tuple[dict[str, Generation], SectionSources]:
        """The SLM's raw section texts for ``note`` (no check, no fallback): one constrained generation per
        section, batched with the note shared where the backend can (``generate_many``)."""
        return self.write_many([(note, self.sections)], units=[units], exclude=[exclude])[0]

    def write_many(self, jobs: Sequence[tuple[Note, Sequence[str]]], *, rows_per_call: int = 8,
                   units: Sequence[Sequence[Unit] | None] | None = None,
                   exclude: Sequence[Iterable[int] | None] | None = None,
                   ) -> list[tuple[dict[str, Generation], SectionSources]]:
        """:meth:`write` for several ``(note, sections)`` jobs, their sections generated together in calls of
        up to ``rows_per_call`` rows (an evaluation's throughput; a note's own sections stay together)."""
        lm = self.lm
        load = getattr(lm, "load", None)
        if callable(load):
            load()  # an adapter's max_source_tokens is known once loaded
        count = getattr(lm, "count_tokens", None)
        budget = self._source_budget(lm)
        rows: list[tuple[int, str, list[dict[str, str]], int]] = []
        sources = []
        for j, (note, sections) in enumerate(jobs):
            src = section_sources(note.text, sections, count=count if callable(count) else None,
                                  max_source_tokens=budget, units=units[j] if units else None,
                                  exclude=exclude[j] if exclude else None, chunk_chars=self.chunk_chars)
            sources.append(src)
            for s in sections:
                # a section is no longer than half its source (plus a sentence): bounds a looping model
                n_src = count(src.text[s]) if callable(count) else len(src.text[s]) // 4
                limit = min(max_tokens_for(s), self.max_new_tokens or 10**6, 24 + n_src // 2)
                rows.append((j, s, section_messages(src.text[s], _section_spec(s).title, dialogue=src.dialogue),
                             limit))
        constraint = Regex(SECTION_REGEX)
        many = getattr(lm, "generate_many", None)
        gens: list[Generation] = []
        if callable(many):
            calls: list[list[int]] = [[]]  # row indices per call; a note's rows stay in one call
            for j in range(len(jobs)):
                mine = [k for k, r in enumerate(rows) if r[0] == j]
                if calls[-1] and len(calls[-1]) + len(mine) > rows_per_call:
                    calls.append([])
                calls[-1].extend(mine)
            for call in calls:
                if call:
                    gens.extend(many([rows[k][2] for k in call], constraint, max_tokens=[rows[k][3] for k in call],
                                     no_repeat_ngram=NO_REPEAT_NGRAM))
        else:
            gens = [lm.generate(r[2], constraint, max_tokens=r[3]) for r in rows]
        out: list[tuple[dict[str, Generation], SectionSources]] = [({}, src) for src in sources]
        for (j, s, _, _), g in zip(rows, gens, strict=True):
            out[j][0][s] = g
        return out

    def run(self, note: Note, state: Mapping[str, Any] | None = None, *,
            written: Mapping[str, Generation] | None = None) -> AgentResult[Summary]:
        """The summary of ``note``; ``written``: sections the SLM already wrote for it (:meth:`write`), reused."""
        t0 = time.perf_counter()
        text = note.text
        index = NoteIndex.build(text, _negated_entities(state))
        units = index.units
        ident = identification_units(text, units)
        chosen, signals = select_units(text, units, self.sections, self.chunk_chars, self.sentences, exclude=ident)
        signals["identification_units"] = float(len(ident))
        extractive: dict[str, list[SummarySentence]] = {}
        for name in self.sections:
            sents = []
            for i in chosen[name]:
                u = units[i]
                sentence = _rewrite(u)
                if not sentence:
                    continue
                v = check_sentence(sentence, index, min_term_coverage=self.min_term_coverage)
                sents.append(SummarySentence(text=sentence, support=(Span(start=u.start, end=u.end, label=name),),
                                             supported=v.supported, issues=v.issues))
            extractive[name] = sents

        final: dict[str, list[SummarySentence]] = {name: list(v) for name, v in extractive.items()}
        prov = Provenance(prompt_hash=self.prompt_hash)
        counts = Counter[str]()
        gen_conf: list[float] = []
        used_fallback = not self.abstractive
        if self.abstractive:
            gens: dict[str, Generation] = {}
            try:
                if written is not None:
                    gens = dict(written)
                else:
                    gens, src = self.write(note, units, ident)
                    signals["source_shared"] = float(src.shared)
            except MedslmError as exc:
                log.warning("summarize: generation failed for note %s (%s); extractive sentences kept", note.id,
                            type(exc).__name__)
                signals["slm_failed"] = 1.0
                used_fallback = True
                final = {name: [s for s in v if s.supported] for name, v in extractive.items()}
            if gens:
                final = {}
                seen_gists: list[frozenset[str]] = []  # a fact goes in one section only
                used_units: set[int] = set()
                # the narrow sections claim their facts first; the narrative (HPI) keeps what is left
                for name in sorted(self.sections, key=lambda n: _CLAIM_ORDER.index(n) if n in _CLAIM_ORDER else 0):
                    final[name] = self._checked(name, gens[name], index, units, ident, counts, seen_gists,
                                                used_units)
                    if not final[name]:
                        for x in extractive[name]:
                            g = _gist(x.text)
                            if x.supported and g and not any(g <= other for other in seen_gists):
                                seen_gists.append(g)
                                final[name].append(x)
                        counts["sections_fallback"] += bool(final[name])
                    gen_conf.append(gens[name].confidence) if gens[name].tokens_out else None
                used_fallback = bool(counts["sentences_replaced"] or counts["sections_fallback"])
                info = next(iter(gens.values())).model
                prov = Provenance(model_id=info.id, model_revision=info.revision, backend=info.backend,
                                  prompt_hash=self.prompt_hash,
                                  tokens_in=sum(g.tokens_in for g in gens.values()),
                                  tokens_out=sum(g.tokens_out for g in gens.values()))
        sections = tuple(SummarySection(name=name, sentences=tuple(final[name])) for name in self.sections)
        all_sents = [s for sec in sections for s in sec.sentences]
        supported_frac = sum(s.supported for s in all_sents) / len(all_sents) if all_sents else 0.0
        filled = sum(bool(sec.sentences) for sec in sections) / len(sections)
        written = counts["sentences_written"]
        accepted = counts["sentences_accepted"]
        signals.update({
            "sentences": float(len(all_sents)),
            "supported_fraction": supported_frac,
            "sections_filled": filled,
            "generated": float(written),
            "generated_rejected": float(written - accepted),
            "slm_unsupported": float(counts["sentences_unsupported"]),
            "slm_replaced": float(counts["sentences_replaced"]),
            "slm_dropped": float(counts["sentences_dropped"]),
            "slm_identification_dropped": float(counts["identification_dropped"]),
            "sections_fallback": float(counts["sections_fallback"]),
            "slm_mean_token_prob": sum(gen_conf) / len(gen_conf) if gen_conf else 0.0,
        })
        if gen_conf and written:
            quality = 0.5 * (sum(gen_conf) / len(gen_conf)) + 0.5 * accepted / written
        else:
            quality = min(1.0, signals["selection_strength"])
        confidence = max(0.0, min(1.0, 0.5 * supported_frac + 0.25 * filled + 0.25 * quality)) if all_sents else 0.0
        summary = Summary(sections=sections, extractive=used_fallback)
        evidence = tuple(sorted({(s.start, s.end): s for x in all_sents for s in x.support}.values(),
                                key=lambda s: s.start))
        prov = prov.model_copy(update={"latency_ms": (time.perf_counter() - t0) * 1000})
        log.debug("summarize note=%s sentences=%d written=%d accepted=%d chunks=%d", note.id, len(all_sents),
                  written, accepted, int(signals["chunks"]))
        return AgentResult[Summary](agent=self.name, output=summary, confidence=confidence, evidence=evidence,
                                    provenance=prov, signals=signals)

    def _checked(self, name: str, gen: Generation, index: NoteIndex, units: Sequence[Unit], ident: frozenset[int],
                 counts: Counter[str], seen_gists: list[frozenset[str]], used_units: set[int]
                 ) -> list[SummarySentence]:
        """The section's written sentences that pass the check (with their support spans); a failing one is
        replaced by the extractive sentence of its best supporting unit when that passes, else dropped.
        ``seen_gists`` / ``used_units``: what the summary already says and the note units it already quotes."""
        out: list[SummarySentence] = []
        raw = str(gen.value if isinstance(gen.value, str) else gen.text)
        for sentence in split_sentences(raw):
            if not sentence.endswith("."):
                continue  # cut by the token budget mid-sentence
            counts["sentences_written"] += 1
            if is_identification_line(sentence):
                counts["identification_dropped"] += 1
                continue
            key = _gist(sentence)
            if not key or any(key <= other for other in seen_gists):
                counts["sentences_dropped"] += 1  # says nothing new (a repeat, or a part of an earlier sentence)
                continue
            v = check_sentence(sentence, index, min_term_coverage=self.min_term_coverage)
            # support never points at an identification line (a shared number is no support)
            ident_starts = {units[i].start for i in ident}
            support = tuple(Span(start=sp.start, end=sp.end, label=name) for sp in v.support
                            if sp.start not in ident_starts)
            if v.supported and support and not _degenerate(sentence):
                seen_gists.append(key)
                counts["sentences_accepted"] += 1
                out.append(SummarySentence(text=sentence, support=support, supported=True))
                continue
            counts["sentences_unsupported"] += 1
            replacement = self._replacement(support or v.support, index, units, ident, used_units, name)
            rkey = _gist(replacement.text) if replacement is not None else frozenset()
            if replacement is not None and rkey and not any(rkey <= other for other in seen_gists):
                seen_gists.append(rkey)
                counts["sentences_replaced"] += 1
                out.append(replacement)
            else:
                counts["sentences_dropped"] += 1
        return out

    def _replacement(self, support: Sequence[Span], index: NoteIndex, units: Sequence[Unit], ident: frozenset[int],
                     used: set[int], name: str) -> SummarySentence | None:
        starts = {u.start: i for i, u in enumerate(units)}
        for sp in support:
            i = starts.get(sp.start)
            if i is None or i in ident or i in used:
                continue
            sentence = _rewrite(units[i])
            if not sentence or _degenerate(sentence):
                continue
            v = check_sentence(sentence, index, min_term_coverage=self.min_term_coverage)
            if v.supported:
                used.add(i)
                u = units[i]
                return SummarySentence(text=sentence, support=(Span(start=u.start, end=u.end, label=name),),
                                       supported=True)
        return None


_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself)\b", re.I)


#: Order in which sections claim the facts they state (a fact goes in one section only).
_CLAIM_ORDER = ("chief_complaint", "allergies", "medications", "assessment", "plan", "assessment_plan", "findings",
                "review_of_systems", "past_surgical_history", "past_medical_history", "family_social_history", "hpi")


def _gist(sentence: str) -> frozenset[str]:
    """What a sentence states, for spotting repeats: its content words and numbers (a sentence whose gist
    is inside an earlier one's adds nothing)."""
    from medslm.agents.faithfulness import numbers_in

    return frozenset(content_terms(sentence)) | frozenset(f"#{n}" for n in numbers_in(sentence))


def _degenerate(sentence: str) -> bool:
    """A generated sentence that is no summary sentence: too few content words, a repeated phrase (a
    small model looping) or still addressed to the patient ("you", "your")."""
    terms = content_terms(sentence)
    if len(terms) < MIN_CONTENT_WORDS or _SECOND_PERSON.search(sentence):
        return True
    words = re.findall(r"[a-z0-9']+", sentence.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(grams) != len(set(grams))


def _negated_entities(state: Mapping[str, Any] | None) -> list[Span]:
    """Spans of entities an earlier NER node marked negated (they count as negated findings)."""
    if not state:
        return []
    ents = getattr(state.get("entities"), "output", None) or []
    out = []
    for e in ents:
        try:
            if str(e.assertion) == "negated":
                out.append(Span(start=e.start, end=e.end))
        except AttributeError:
            continue
    return out
