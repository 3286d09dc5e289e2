"""The summarization agent: a structured summary whose every sentence links to the note spans behind it.

How a summary is made, per configured section (chief complaint, HPI, findings, assessment, plan, …):

1. **Select** (extractive, rules): the note is split into units (sentences, dialogue turns); each unit is
   scored for each section by section headers in the note, section cue words, its centrality in the
   note and its speaker (in a dialogue). Long notes are processed in chunks of ``chunk_chars`` whose
   candidates are merged and re-ranked, so nothing beyond a model's context is silently dropped.
2. **Write** (abstractive, the SLM): each selected sentence is rewritten by the SLM as one summary
   sentence in the third person (a patient's answer goes with the doctor's question it answers); the
   rewrites are generated in batches of ``batch_size``, and the input is one excerpt, so it always fits
   the model's context. The output is constrained by :data:`SENTENCE_REGEX` to one sentence on one
   line that ends with a full stop, so the model stops there instead of wandering.
3. **Check** (:mod:`medslm.agents.faithfulness`): a generated sentence whose numbers, negations or
   terms are not in the note, or that has under :data:`MIN_CONTENT_WORDS` content words, is rejected
   and its extractive sentence is kept (the extractive fallback, sentence by sentence).

Every final sentence carries its support spans and the verdict of the check.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medslm.agents.faithfulness import NoteIndex, Unit, check_sentence, content_terms
from medslm.errors import ConfigurationError, MedslmError, UnknownNameError
from medslm.models.base import LanguageModel, Regex, prompt_hash
from medslm.records import (
    AgentResult,
    Note,
    Provenance,
    Span,
    Summary,
    SummarySection,
    SummarySentence,
)
from medslm.routers.confidence import CHOICE_PROB, RULE_AGREEMENT
from medslm.routers.confidence import combine as fuse

__all__ = ["DEFAULT_SECTIONS", "MIN_CONTENT_WORDS", "SECTIONS", "SENTENCE_REGEX", "SummarizeAgent", "select_units"]

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

SYSTEM_PROMPT = ("You rewrite excerpts of clinical notes and doctor-patient conversations as sentences of a "
                 "clinical summary. Use only facts from the excerpt. Do not add anything that is not in it.")
CONTEXT_TEMPLATE = "The doctor asked: {question}\n"
USER_TEMPLATE = ("{context}Excerpt: {excerpt}\n\nRewrite the excerpt as one sentence for the \"{title}\" "
                 "section of the summary, in the third person.")

#: One sentence: starts with a capital or a digit, no line break, ends at a full stop (a decimal point
#: between digits or a title such as "Mr." may go on). Regex constraints need the transformers or vLLM
#: backend; elsewhere generation fails and the section keeps its extractive sentences.
SENTENCE_REGEX = r"(?:(?:Mr|Mrs|Ms|Dr)\. )?[A-Z0-9](?:[^\n.!?]|[0-9]\.[0-9]|(?:Mr|Mrs|Ms|Dr|St|vs)\. )*\."
#: A generated sentence with fewer content words than this says nothing ("Mr.", "The patient.").
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
_PARTICIPLE = frozenset("taken been seen used tried done gone had given eaten".split())


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


def select_units(text: str, units: Sequence[Unit], sections: Sequence[str], chunk_chars: int = 4000,
                 k: Mapping[str, int] | None = None) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Indices of the units chosen for each section (in note order) and selection signals.

    Units are scored in chunks of at most ``chunk_chars`` characters; each chunk proposes candidates for
    every section and the candidates of all chunks are merged and re-ranked.
    """
    if not units:
        return {s: [] for s in sections}, {"chunks": 0.0, "units": 0.0}
    specs = {s: _section_spec(s) for s in sections}
    heads, is_header = _headers(text, units)
    # identification lines (name, MRN, phone, address…) are never summary material
    from medslm.safety.phi import find_phi, is_identification_line

    phi = find_phi(text, use_ner=False)  # once per note; each unit and line looks at its own spans

    def _ident(a: int, b: int) -> bool:
        inside = [p.model_copy(update={"start": p.start - a, "end": p.end - a}) for p in phi
                  if a <= p.start and p.end <= b]
        return is_identification_line(text[a:b], inside)

    def _line(u: Unit) -> tuple[int, int]:
        end = text.find("\n", u.end)
        return text.rfind("\n", 0, u.start) + 1, len(text) if end < 0 else end

    is_header = [h or _ident(u.start, u.end) or _ident(*_line(u)) for h, u in zip(is_header, units, strict=True)]
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
        if is_header[i] or not (t or any(c.isdigit() for c in u.text)):
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
    signals = {"chunks": float(len(chunks)), "units": float(n), "dialogue": float(dialogue),
               "selection_strength": (sum(margins) / len(margins) / 5.0) if margins else 0.0}
    return chosen, signals


class SummarizeAgent:
    """Structured, grounded summary: extractive selection, SLM rewriting, faithfulness check and fallback.

    ``model`` is a catalog spec or a :class:`LanguageModel` (loaded on first use); ``abstractive=False``
    skips the SLM (extractive summary only). ``sentences`` overrides how many units a section selects.
    """

    name = "summarize"

    def __init__(
        self,
        model: str | LanguageModel = "embedded",
        sections: Sequence[str] = DEFAULT_SECTIONS,
        *,
        abstractive: bool = True,
        sentences: Mapping[str, int] | None = None,
        chunk_chars: int = 4000,
        max_new_tokens: int = 48,
        min_term_coverage: float = 0.6,
        batch_size: int = 8,
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
        self.sentences = dict(sentences or {})
        self.chunk_chars = chunk_chars
        self.max_new_tokens = max_new_tokens
        self.min_term_coverage = min_term_coverage
        self.batch_size = max(1, batch_size)
        self._lm: LanguageModel | None = model if not isinstance(model, str) else None

    @property
    def lm(self) -> LanguageModel:
        if self._lm is None:
            from medslm.models.catalog import load_model

            self._lm = load_model(str(self.model_spec))
        return self._lm

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(SYSTEM_PROMPT, CONTEXT_TEMPLATE, USER_TEMPLATE)

    def _generate(self, prompts: list[list[dict[str, str]]]) -> list[Any]:
        lm = self.lm
        batch = getattr(lm, "generate_batch", None)
        constraint = Regex(SENTENCE_REGEX)
        if callable(batch) and len(prompts) > 1:
            return list(batch(prompts, constraint, max_tokens=self.max_new_tokens))
        return [lm.generate(p, constraint, max_tokens=self.max_new_tokens) for p in prompts]

    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[Summary]:
        t0 = time.perf_counter()
        text = note.text
        negated_spans = _negated_entities(state)
        index = NoteIndex.build(text, negated_spans)
        units = index.units
        chosen, signals = select_units(text, units, self.sections, self.chunk_chars, self.sentences)
        extractive: dict[str, list[SummarySentence]] = {}
        context: dict[str, list[Unit | None]] = {}  # the question a patient's answer replies to
        for name in self.sections:
            sents, ctx = [], []
            for i in chosen[name]:
                u = units[i]
                sentence = _rewrite(u)
                if not sentence:
                    continue
                v = check_sentence(sentence, index, min_term_coverage=self.min_term_coverage)
                sents.append(SummarySentence(text=sentence, support=(Span(start=u.start, end=u.end, label=name),),
                                             supported=v.supported, issues=v.issues))
                prev = units[i - 1] if i > 0 else None
                ctx.append(prev if prev is not None and u.speaker is not None and prev.speaker != u.speaker
                           and prev.text.rstrip().endswith("?") and not u.negated_by_answer else None)
            extractive[name] = sents
            context[name] = ctx

        final: dict[str, list[SummarySentence]] = {name: list(v) for name, v in extractive.items()}
        prov = Provenance(prompt_hash=self.prompt_hash)
        n_generated = n_rejected = 0
        gen_conf: list[float] = []
        todo = [(name, j) for name in self.sections for j in range(len(extractive[name]))]
        if self.abstractive and todo:
            # one rewrite per extractive sentence: a rejected one falls back to its own extractive sentence
            prompts = [self._prompt(name, extractive[name][j].text, context[name][j]) for name, j in todo]
            gens: list[Any] = []
            try:
                for b in range(0, len(prompts), self.batch_size):
                    gens.extend(self._generate(prompts[b : b + self.batch_size]))
            except MedslmError as exc:
                log.warning("summarize: generation failed for note %s (%s); extractive sentences kept", note.id,
                            type(exc).__name__)
                signals["slm_failed"] = 1.0
            tok_in = tok_out = 0
            for (name, j), g in zip(todo, gens, strict=False):
                tok_in += g.tokens_in
                tok_out += g.tokens_out
                sentence = _clean_generation(str(g.value if isinstance(g.value, str) else g.text))
                n_generated += 1
                if _degenerate(sentence):
                    n_rejected += 1
                    continue
                v = check_sentence(sentence, index, min_term_coverage=self.min_term_coverage)
                if v.supported:
                    src = extractive[name][j].support
                    ctx = context[name][j]
                    if ctx is not None:
                        src = (Span(start=ctx.start, end=ctx.end, label=name), *src)
                    final[name][j] = SummarySentence(text=sentence, support=src, supported=True)
                    gen_conf.append(g.confidence)
                else:
                    n_rejected += 1
                    log.debug("summarize note=%s section=%s: generated sentence rejected (%d issues)", note.id,
                              name, len(v.issues))
            if gens:
                info = gens[0].model
                prov = Provenance(model_id=info.id, model_revision=info.revision, backend=info.backend,
                                  prompt_hash=self.prompt_hash, tokens_in=tok_in, tokens_out=tok_out)
        sections = tuple(SummarySection(name=name, sentences=tuple(final[name])) for name in self.sections)
        all_sents = [s for sec in sections for s in sec.sentences]
        supported_frac = sum(s.supported for s in all_sents) / len(all_sents) if all_sents else 0.0
        filled = sum(bool(sec.sentences) for sec in sections) / len(sections)
        signals.update({
            "sentences": float(len(all_sents)),
            "supported_fraction": supported_frac,
            "sections_filled": filled,
            "generated": float(n_generated),
            "generated_rejected": float(n_rejected),
            "slm_mean_token_prob": sum(gen_conf) / len(gen_conf) if gen_conf else 0.0,
        })
        quality = (sum(gen_conf) / len(gen_conf)) if gen_conf else min(1.0, signals["selection_strength"])
        # the model's token probability (or the selection strength) and the faithfulness check's agreement
        signals[CHOICE_PROB] = quality
        signals[RULE_AGREEMENT] = supported_frac
        confidence = fuse(signals) if all_sents else 0.0
        used_fallback = (not self.abstractive) or n_rejected > 0 or n_generated == 0
        summary = Summary(sections=sections, extractive=used_fallback)
        evidence = tuple(sorted({(s.start, s.end): s for x in all_sents for s in x.support}.values(),
                                key=lambda s: s.start))
        prov = prov.model_copy(update={"latency_ms": (time.perf_counter() - t0) * 1000})
        log.debug("summarize note=%s sentences=%d supported=%.2f chunks=%d", note.id, len(all_sents),
                  supported_frac, int(signals["chunks"]))
        return AgentResult[Summary](agent=self.name, output=summary, confidence=confidence, evidence=evidence,
                                    provenance=prov, signals=signals)

    def _prompt(self, name: str, sentence: str, context: Unit | None = None) -> list[dict[str, str]]:
        ctx = CONTEXT_TEMPLATE.format(question=context.text[:500]) if context is not None else ""
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(context=ctx, excerpt=sentence[:1500],
                                                             title=SECTIONS[name].title)},
        ]


_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself)\b", re.I)


def _degenerate(sentence: str) -> bool:
    """A generated sentence that is no summary sentence: too few content words, a repeated phrase (a
    small model looping) or still addressed to the patient ("you", "your")."""
    terms = content_terms(sentence)
    if len(terms) < MIN_CONTENT_WORDS or _SECOND_PERSON.search(sentence):
        return True
    words = re.findall(r"[a-z0-9']+", sentence.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(grams) != len(set(grams))


def _clean_generation(text: str) -> str:
    t = text.strip().split("\n")[0].strip()
    t = re.sub(r"^(?:\*\*)?[A-Za-z ]{2,40}:(?:\*\*)?\s*", "", t)  # "Chief complaint: ..." -> "..."
    m = re.match(r"(.+?[.!?])(?:\s|$)", t)
    if m:
        t = m.group(1)
    elif t:
        t = t.rstrip(",;: ") + "."  # cut at max_tokens: keep what was written, closed
    return t.strip().strip('"').strip()


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
