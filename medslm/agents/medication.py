"""Medications and allergies of a note: drug, dose, unit, route, frequency, duration and status, each with
its evidence span, the drug normalised through the knowledge graph.

How a note goes through it:

1. **Candidates.** The drug vocabulary of the knowledge graph (:func:`medslm.knowledge.drugs.drug_graph`:
   an open vocabulary from PyPI, RxNorm when you bring it) finds drug names, sentence by sentence; NER's
   medication entities add the ones it does not know. Regular expressions find the dose / unit, route,
   frequency and duration expressions of the sentence, and the status and allergy cues.
2. **The SLM**, under a JSON schema, says for each candidate whether it is a medication, an allergy or
   neither, its status, and which of the sentence's dose, route, frequency and duration expressions are
   its own (by number). Every string of the result is therefore a span of the note: nothing that is not
   in the sentence can come out. The schema is fixed (compiled once per process) and all candidates of a
   note are decoded in one batch; its token log-probabilities give each answer's confidence.
3. **Rules** (the fallback and the baseline): the nearest dose / route / frequency / duration after the
   drug, the status cue of its clause, allergy cues. ``mode="rules"`` uses only them; ``mode="slm"`` only
   the SLM's answers; ``mode="hybrid"`` (default) keeps what the rules saw explicitly (an allergy cue, a
   status cue, an attribute right after the drug) and takes the SLM's answer for the rest. A failed
   model call leaves the rules' answer, recorded in the signals.

The agent is registered in :mod:`medslm.registry` as ``medication`` (state field ``medications``); its
renderers below make it appear in ``print(review)``, the notebook HTML, output rows and the CLI table.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medslm.errors import MedslmError
from medslm.models.base import JsonSchema, prompt_hash
from medslm.records import AgentResult, ConceptRef, Note, Provenance, Span
from medslm.text import sentence_spans

log = logging.getLogger(__name__)

Status = Literal["active", "stopped", "held", "new"]
Route = Literal["oral", "IV", "IM", "SC", "inhaled", "topical", "rectal", "sublingual", "nasal", "transdermal"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Medication(_Frozen):
    """One medication mention. Offsets are character offsets into the note, half-open."""

    drug: str = Field(description="the drug as written in the note")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    concept: ConceptRef | None = Field(default=None, description="the drug in the knowledge graph")
    dose: str | None = Field(default=None, description="amount as written, e.g. '500' or '0.5-1'")
    unit: str | None = Field(default=None, description="unit as written, e.g. 'mg', 'units', 'puffs'")
    route: Route | None = None
    frequency: str | None = Field(default=None, description="as written, e.g. 'BID', 'every 6 hours'")
    duration: str | None = Field(default=None, description="as written, e.g. 'for 7 days'")
    status: Status = "active"
    evidence: tuple[Span, ...] = Field(default=(), description="drug and attribute spans, labelled")
    confidence: float = Field(ge=0.0, le=1.0)
    source: str = Field(default="rules", description="who decided: slm, rules or slm+rules")


class Allergy(_Frozen):
    """A drug (or other substance) the patient is allergic to: kept apart from the medications."""

    substance: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    concept: ConceptRef | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    source: str = "rules"


class Medications(_Frozen):
    """The medication agent's output."""

    medications: tuple[Medication, ...] = ()
    allergies: tuple[Allergy, ...] = ()
    no_known_allergies: bool = Field(default=False, description="the note says NKDA / no known allergies")


# ------------------------------------------------------------------------------------------ rules
_NUM = r"\d+(?:\.\d+)?"
_UNITS = (r"mg|mcg|µg|micrograms?|g|grams?|kg|mL|ml|cc|L|units?|IU|U|mEq|mmol|%|tabs?|tablets?|caps?|capsules?|"
          r"puffs?|drops?|sprays?|patch(?:es)?|amps?|vials?|lozenges?|suppositor(?:y|ies)|mg/kg|mcg/kg|units/kg")
DOSE_RE = re.compile(rf"(?<![\w.])({_NUM}(?:\s*(?:-|to|/)\s*{_NUM})?)\s*({_UNITS})(?![\w])", re.I)
_ROUTES: tuple[tuple[str, str], ...] = (
    ("oral", r"PO|p\.o\.|per os|by mouth|orally|oral"),
    ("IV", r"IV|i\.v\.|intravenous(?:ly)?|IVP|IVPB|drip|infusion"),
    ("IM", r"IM|i\.m\.|intramuscular(?:ly)?"),
    ("SC", r"SC|SQ|s\.c\.|subcut|subcutaneous(?:ly)?|sub-q"),
    ("inhaled", r"inhaled|inhaler|inh|nebuli[sz]ed|nebs?|via nebuli[sz]er|MDI"),
    ("topical", r"topical(?:ly)?|cream|ointment"),
    ("rectal", r"PR|per rectum|rectal(?:ly)?"),
    ("sublingual", r"SL|sublingual(?:ly)?"),
    ("nasal", r"intranasal(?:ly)?|nasal(?:ly)?|nasal spray"),
    ("transdermal", r"transdermal(?:ly)?|patch"),
)
ROUTE_RE = re.compile(r"(?<![\w.])(" + "|".join(f"(?P<r{i}>{p})" for i, (_, p) in enumerate(_ROUTES)) + r")(?![\w])")
_FREQ = (r"q\.d\.|qd|daily|once daily|once a day|twice daily|twice a day|b\.i\.d\.|bid|t\.i\.d\.|tid|q\.i\.d\.|qid|"
         r"three times (?:a|per) day|four times (?:a|per) day|q\s?\d+\s?(?:-\s?\d+\s?)?h(?:rs?|ours?)?|"
         r"every \d+(?:\s?-\s?\d+)? (?:hours?|minutes?)|every (?:morning|evening|night|other day)|nightly|at bedtime|"
         r"q\.h\.s\.|qhs|qam|qpm|weekly|monthly|p\.r\.n\.|prn|as needed|once|stat|x\s?1|in the morning")
FREQ_RE = re.compile(rf"(?<![\w])({_FREQ})(?![\w])", re.I)
_COUNT = r"\d+|one|two|three|four|five|six|seven|eight|nine|ten|fourteen|thirty"
DURATION_RE = re.compile(rf"(?<![\w])((?:for|x|×)\s*(?:another\s+|a\s+total\s+of\s+|the\s+next\s+)?(?:{_COUNT})"
                         rf"(?:\s*(?:-|to)\s*(?:{_COUNT}))?\s*(?:more\s+)?(?:days?|d|weeks?|wks?|months?|doses?))(?![\w])",
                         re.I)
STATUS_CUES: tuple[tuple[Status, re.Pattern[str]], ...] = (
    ("held", re.compile(r"\b(held|hold(?:ing)?|withh[eo]ld(?:ing)?|paused?|on hold)\b", re.I)),
    ("stopped", re.compile(r"\b(stop(?:ped|s)?|discontinu(?:e|ed|ing)|d/c(?:'?d)?|dc'?d|ceased|no longer|"
                           r"quit|came off|taken off|off of)\b", re.I)),
    ("new", re.compile(r"\b(start(?:ed|ing)?|initiat(?:e|ed|ing)|begin|began|begun|commenc(?:e|ed)|new(?:ly)?|"
                       r"add(?:ed)?|prescribed|switched to|load(?:ed|ing)? with|given)\b", re.I)),
)
ALLERGY_RE = re.compile(r"\b(allerg(?:y|ies|ic)|anaphyla\w*|intoleran(?:t|ce))\b", re.I)
NKDA_RE = re.compile(r"\b(NKDA|NKA|no known (?:drug )?allergies|no drug allergies|denies (?:any )?allergies)\b",
                     re.I)
#: substances outside a drug vocabulary that notes name as allergies
ALLERGENS = ("sulfa", "sulfa drugs", "latex", "shellfish", "peanuts", "peanut", "iodine", "contrast", "eggs",
             "bee stings", "codeine", "morphine", "penicillin", "penicillins")
_CLAUSE_RE = re.compile(r";|\.\s|,\s(?:but|and then|then)\s|\bbut\b")


@dataclass
class _Option:
    """An attribute expression found in the sentence: its span and normalised value."""

    start: int
    end: int
    text: str
    value: str = ""
    unit: str | None = None


@dataclass
class _Candidate:
    start: int
    end: int
    text: str
    sentence: tuple[int, int]
    concept_ids: tuple[str, ...] = ()
    match_score: float = 1.0
    options: dict[str, list[_Option]] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)
    slm: dict[str, Any] | None = None
    slm_confidence: float | None = None
    clause: tuple[int, int] = (0, 0)


def _options(text: str, s: int, e: int) -> dict[str, list[_Option]]:
    seg = text[s:e]
    dose = [_Option(s + m.start(), s + m.end(), m.group(0), m.group(1), m.group(2)) for m in DOSE_RE.finditer(seg)]
    route = []
    for m in ROUTE_RE.finditer(seg):
        name = next(_ROUTES[i][0] for i in range(len(_ROUTES)) if m.group(f"r{i}"))
        if m.group(0).isupper() or m.group(0).islower() or len(m.group(0)) > 3:  # not "Po", "Iv"
            route.append(_Option(s + m.start(), s + m.end(), m.group(0), name))
    freq = [_Option(s + m.start(), s + m.end(), m.group(0), m.group(0)) for m in FREQ_RE.finditer(seg)]
    dur = [_Option(s + m.start(), s + m.end(), m.group(0), m.group(0)) for m in DURATION_RE.finditer(seg)]
    return {"dose": dose, "route": route, "freq": freq, "dur": dur}


def _clause(text: str, sent: tuple[int, int], start: int, end: int) -> tuple[int, int]:
    """The clause of the sentence holding ``[start, end)`` (split at ';', '. ', ', but', 'but')."""
    s, e = sent
    cuts = [s] + [s + m.end() for m in _CLAUSE_RE.finditer(text[s:e])] + [e]
    for a, b in itertools.pairwise(cuts):
        if a <= start < b:
            return a, b
    return s, e


def rules_for(text: str, cand: _Candidate, next_start: int) -> dict[str, Any]:
    """The rule answer for one candidate: kind, status, and the attribute options right after the drug."""
    cs, ce = _clause(text, cand.sentence, cand.start, cand.end)
    clause = text[cs:ce]
    allergy = bool(ALLERGY_RE.search(clause)) or bool(
        re.search(r"\b(allergies|allergic|allergy)\s*(?:to|:)\s*$", text[cand.sentence[0]:cand.start], re.I))
    status: Status = "active"
    explicit = False
    best = None
    for st, rx in STATUS_CUES:
        for m in rx.finditer(clause):
            d = abs(cs + m.start() - cand.start)
            if best is None or d < best[0]:
                best = (d, st)
    if best is not None:
        status, explicit = best[1], True
    window_end = min(next_start, cand.sentence[1], cand.end + 60)
    chosen: dict[str, int] = {}
    for key, opts in cand.options.items():
        after = [i for i, o in enumerate(opts) if cand.end <= o.start < window_end]
        if after:
            chosen[key] = after[0]
    return {"kind": "allergy" if allergy else "medication", "status": status, "status_explicit": explicit,
            **{k: chosen.get(k, -1) for k in ("dose", "route", "freq", "dur")}}


# ------------------------------------------------------------------------------------------ the SLM
MAX_OPTIONS = 6
_IDX = list(range(-1, MAX_OPTIONS))
#: The fixed JSON schema the SLM decodes under (bounded: enums only, so it compiles once per process).
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["medication", "allergy", "other"]},
        "status": {"enum": ["active", "new", "stopped", "held"]},
        "dose": {"enum": _IDX}, "route": {"enum": _IDX}, "freq": {"enum": _IDX}, "dur": {"enum": _IDX},
    },
    "required": ["kind", "status", "dose", "route", "freq", "dur"],
    "additionalProperties": False,
}
SYSTEM = (
    "You read one sentence of a clinical note and one drug named in it. Answer in JSON: kind (medication "
    "if the patient takes or is given it, allergy if the patient is allergic to it, other otherwise), "
    "status (new if started now, stopped if discontinued, held if held or paused, else active), and the "
    "number of the drug's own dose, route, frequency (freq) and duration (dur) among the numbered "
    "options, or -1 when none is the drug's."
)


def _prompt(text: str, cand: _Candidate) -> str:
    def opts(key: str) -> str:
        return ", ".join(f"{i}={o.text}" for i, o in enumerate(cand.options[key][:MAX_OPTIONS])) or "none"

    sent = " ".join(text[cand.sentence[0] : cand.sentence[1]].split())
    return (f"Sentence: {sent}\nDrug: {cand.text}\nOptions: dose: {opts('dose')}; route: {opts('route')}; "
            f"freq: {opts('freq')}; dur: {opts('dur')}")


PROMPT_HASH = prompt_hash(SYSTEM, "Sentence: {sentence}\nDrug: {drug}\nOptions: …", str(ANSWER_SCHEMA))


# ------------------------------------------------------------------------------------------ the agent
class MedicationAgent:
    """Medications and allergies: ``MedicationAgent().run(note, state) -> AgentResult[Medications]``.

    ``model``: a model spec or a LanguageModel (None: rules only). ``mode``: ``hybrid`` (default),
    ``slm`` or ``rules`` (see the module docstring). ``kg``: the graph to normalise drugs with (default:
    :func:`~medslm.knowledge.drugs.drug_graph`; pass ``drug_graph(RxNormRrfSource(...))`` for RxNorm).
    ``batch``: candidates decoded together.
    """

    name = "medication"

    def __init__(self, model: Any = "embedded", *, mode: Literal["hybrid", "slm", "rules"] = "hybrid",
                 kg: Any = None, batch: int = 8, max_candidates: int = 40) -> None:
        if mode not in ("hybrid", "slm", "rules"):
            from medslm.errors import UnknownNameError

            raise UnknownNameError("medication mode", mode, ["hybrid", "slm", "rules"])
        self.model_spec = model
        self.mode = mode if model is not None else "rules"
        self._kg = kg
        self._lm: Any = None
        self.batch = batch
        self.max_candidates = max_candidates
        self.prompt_hash = PROMPT_HASH

    def with_model(self, lm: Any) -> MedicationAgent:
        return MedicationAgent(lm, mode=self.mode if self.mode != "rules" else "hybrid", kg=self._kg,
                               batch=self.batch, max_candidates=self.max_candidates)

    @property
    def kg(self) -> Any:
        if self._kg is None:
            from medslm.knowledge.drugs import drug_graph

            self._kg = drug_graph()
        return self._kg

    def _model(self) -> Any:
        if self._lm is None:
            from medslm.models.catalog import load_model

            self._lm = load_model(self.model_spec)
        return self._lm

    # ------------------------------------------------------------------ candidates
    def candidates(self, text: str, state: Mapping[str, Any] | None = None) -> list[_Candidate]:
        """Drug names of ``text`` (vocabulary matches, NER medication entities, allergens), with the
        attribute options of their sentences and the rules' answers."""
        from medslm.knowledge.drugs import DRUG_SYSTEMS

        systems = [s for s in DRUG_SYSTEMS if self.kg.count(s)]
        matcher = self.kg.matcher(systems)
        found: list[tuple[int, int, tuple[str, ...], float]] = [
            (m.start, m.end, m.concept_ids, m.score) for m in matcher.find(text)]
        ents = getattr((state or {}).get("entities"), "output", None) or []
        for e in ents:
            if getattr(e.type, "value", e.type) == "medication" and not any(s < e.end and e.start < t for s, t, _, _ in found):
                found.append((e.start, e.end, (), 0.7))
        low = text.lower()
        for a in ALLERGENS:
            for m in re.finditer(rf"\b{re.escape(a)}\b", low):
                if not any(s < m.end() and m.start() < t for s, t, _, _ in found) and ALLERGY_RE.search(
                        text[max(0, m.start() - 40): m.end() + 40]):
                    found.append((m.start(), m.end(), (), 0.6))
        found.sort()
        sents = sentence_spans(text)
        out: list[_Candidate] = []
        options_cache: dict[tuple[int, int], dict[str, list[_Option]]] = {}
        for s, e, ids, score in found[: self.max_candidates]:
            sent = next(((a, b) for a, b in sents if a <= s < b), (s, e))
            if sent not in options_cache:
                options_cache[sent] = _options(text, *sent)
            out.append(_Candidate(s, e, text[s:e], sent, ids, score, options_cache[sent],
                                  clause=_clause(text, sent, s, e)))
        for i, c in enumerate(out):
            nxt = next((o.start for o in out[i + 1:] if o.sentence == c.sentence), c.sentence[1])
            c.rules = rules_for(text, c, nxt)
        return out

    # ------------------------------------------------------------------ the SLM's answers
    def _ask(self, text: str, cands: Sequence[_Candidate]) -> tuple[int, int, str | None]:
        """Fill ``slm`` / ``slm_confidence`` of each candidate; returns tokens in/out and a failure."""
        lm = self._model()
        tin = tout = 0
        for k in range(0, len(cands), self.batch):
            chunk = cands[k : k + self.batch]
            msgs = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": _prompt(text, c)}]
                    for c in chunk]
            try:
                gens = (lm.generate_batch(msgs, JsonSchema(ANSWER_SCHEMA), max_tokens=48)
                        if hasattr(lm, "generate_batch") else
                        [lm.generate(m, JsonSchema(ANSWER_SCHEMA), max_tokens=48) for m in msgs])
            except MedslmError as exc:  # the rules answer stands; the failure is recorded
                log.warning("medication: SLM failed (%s); rules answer kept", type(exc).__name__)
                return tin, tout, type(exc).__name__
            for c, g in zip(chunk, gens, strict=True):
                c.slm, c.slm_confidence = dict(g.value), g.confidence
                tin += g.tokens_in
                tout += g.tokens_out
        return tin, tout, None

    @staticmethod
    def _open_slots(c: _Candidate, claimed: Mapping[str, set[int]]) -> list[str]:
        """Attributes the rules left empty although the drug's clause has an unclaimed expression for them."""
        return [key for key in ("dose", "route", "freq", "dur") if c.rules[key] < 0 and any(
            c.clause[0] <= o.start < c.clause[1] and i not in claimed.get(key, ()) and i < MAX_OPTIONS
            for i, o in enumerate(c.options[key]))]

    # ------------------------------------------------------------------ deciding
    def _decide(self, c: _Candidate, claimed: Mapping[str, set[int]]) -> dict[str, Any]:
        rules, slm = c.rules, c.slm
        if self.mode == "rules" or slm is None:
            return {**rules, "source": "rules", "confidence": c.match_score * (0.9 if rules["status_explicit"] else 0.8)}
        if self.mode == "slm":
            return {**slm, "source": "slm", "confidence": c.slm_confidence or 0.0}
        # hybrid: what the rules saw explicitly stands; the SLM fills the attributes they did not find,
        # with an expression of the drug's own clause that no other drug's rules claimed
        out = dict(rules)
        agree = slm["kind"] == rules["kind"]
        for key in ("dose", "route", "freq", "dur"):
            i = slm.get(key, -1)
            if rules[key] < 0 and isinstance(i, int) and 0 <= i < len(c.options[key]) and i not in claimed.get(key, ()):
                o = c.options[key][i]
                if c.clause[0] <= o.start < c.clause[1]:
                    out[key] = i
        conf = (c.slm_confidence or 0.0) * (1.0 if agree else 0.75)
        return {**out, "source": "slm+rules", "confidence": conf}

    def _build(self, text: str, c: _Candidate, d: dict[str, Any]) -> Medication | Allergy | None:
        concept = self._concept(c)
        conf = max(0.0, min(1.0, float(d["confidence"])))
        if d["kind"] == "allergy":
            return Allergy(substance=c.text, start=c.start, end=c.end, concept=concept, confidence=conf,
                           source=d["source"])
        if d["kind"] != "medication":
            return None

        def pick(key: str) -> _Option | None:
            i = d.get(key, -1)
            opts = c.options.get(key, [])
            return opts[i] if isinstance(i, int) and 0 <= i < min(len(opts), MAX_OPTIONS) else None

        dose, route, freq, dur = pick("dose"), pick("route"), pick("freq"), pick("dur")
        evidence = [Span(start=c.start, end=c.end, label="drug")]
        for label, o in (("dose", dose), ("route", route), ("frequency", freq), ("duration", dur)):
            if o is not None:
                evidence.append(Span(start=o.start, end=o.end, label=label))
        return Medication(
            drug=c.text, start=c.start, end=c.end, concept=concept,
            dose=dose.value if dose else None, unit=dose.unit if dose else None,
            route=route.value if route else None,  # type: ignore[arg-type]
            frequency=freq.value if freq else None, duration=dur.value if dur else None,
            status=d["status"], evidence=tuple(evidence), confidence=conf, source=d["source"])

    def _concept(self, c: _Candidate) -> ConceptRef | None:
        from medslm.knowledge.drugs import DRUG_SYSTEMS

        kg = self.kg
        for system in DRUG_SYSTEMS:  # the preferred system that holds one of the matched concepts
            for cid in c.concept_ids:
                if cid.startswith(system + ":"):
                    concept = kg.get(cid)
                    if concept is not None:
                        return concept.ref(c.match_score)
        systems = [s for s in DRUG_SYSTEMS if kg.count(s)]
        found = kg.lookup(c.text, systems=systems, k=1, fuzzy=False)
        return found[0].concept.ref(found[0].score) if found else None

    # ------------------------------------------------------------------ the contract
    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[Medications]:
        t0 = time.perf_counter()
        text = (state or {}).get("text") or note.text
        cands = self.candidates(text, state)
        signals: dict[str, float] = {"candidates": float(len(cands))}
        claimed: dict[tuple[int, int], dict[str, set[int]]] = {}
        for c in cands:  # attribute expressions that the rules gave to a drug belong to it
            for key in ("dose", "route", "freq", "dur"):
                if c.rules[key] >= 0:
                    claimed.setdefault(c.sentence, {}).setdefault(key, set()).add(c.rules[key])
        others = {id(c): {k: v - {c.rules[k]} for k, v in claimed.get(c.sentence, {}).items()} for c in cands}
        # slm: every candidate; hybrid: those whose clause holds an expression the rules could not place
        ask = [c for c in cands if self.mode == "slm" or (self.mode == "hybrid" and self._open_slots(c, others[id(c)]))]
        signals["slm_calls"] = float(len(ask))
        prov = Provenance(prompt_hash=self.prompt_hash)
        if ask:
            tin, tout, failed = self._ask(text, ask)
            info = self._model().info
            prov = Provenance(model_id=info.id, model_revision=info.revision, backend=info.backend,
                              prompt_hash=self.prompt_hash, tokens_in=tin, tokens_out=tout)
            if failed:
                signals["slm_failed"] = 1.0
        meds: list[Medication] = []
        allergies: list[Allergy] = []
        for c in cands:
            item = self._build(text, c, self._decide(c, others[id(c)]))
            if isinstance(item, Medication):
                meds.append(item)
            elif isinstance(item, Allergy):
                allergies.append(item)
        answered = [c.slm_confidence for c in cands if c.slm_confidence is not None]
        if answered:
            signals["slm_mean_prob"] = sum(answered) / len(answered)
            signals["slm_rules_kind_agreement"] = sum(
                c.slm is not None and c.slm["kind"] == c.rules["kind"] for c in cands) / len(answered)
        items = [*meds, *allergies]
        # no candidate: nothing the vocabulary could see, so nothing to doubt; else the least sure item
        confidence = min((i.confidence for i in items), default=1.0)
        out = Medications(medications=tuple(meds), allergies=tuple(allergies),
                          no_known_allergies=bool(NKDA_RE.search(text)))
        evidence = tuple(s for m in meds for s in m.evidence) + tuple(
            Span(start=a.start, end=a.end, label="allergy") for a in allergies)
        prov = prov.model_copy(update={"latency_ms": round((time.perf_counter() - t0) * 1000, 1)})
        return AgentResult[Medications](agent=self.name, output=out, confidence=confidence, evidence=evidence,
                                        provenance=prov, signals=signals)


# ------------------------------------------------------------------------------------------ checks
def check_medications(result: AgentResult[Medications], text: str, context: Any) -> list[str]:
    """``verify``: every drug and allergy span holds the text the result names there."""
    out = result.output
    return [f"medication: {kind} at [{s}, {e}) does not match the note text there"
            for kind, s, e, name in ([("drug", m.start, m.end, m.drug) for m in out.medications]
                                     + [("allergy", a.start, a.end, a.substance) for a in out.allergies])
            if text[s:e] != name]


# ------------------------------------------------------------------------------------------ renderers
def _med_line(m: Medication) -> str:
    parts = [m.drug]
    if m.dose:
        parts.append(f"{m.dose} {m.unit or ''}".strip())
    parts.extend(x for x in (m.route, m.frequency, m.duration) if x)
    concept = f" -> {m.concept.id} {m.concept.label}" if m.concept else ""
    return f"{' '.join(parts)} [{m.status}]{concept}"


def _dose(m: Medication) -> str:
    return f"{m.dose or ''} {m.unit or ''}".strip()


def _concept_text(m: Medication) -> str:
    return f"{m.concept.id} {m.concept.label}" if m.concept else ""


def medication_text(result: AgentResult[Medications], text: str | None) -> list[str]:
    out = result.output
    lines = [f"Medications ({len(out.medications)}, confidence {result.confidence:.2f}):"]
    lines.extend(f"  {_med_line(m)}  conf {m.confidence:.2f} ({m.source})" for m in out.medications)
    if out.allergies or out.no_known_allergies:
        names = ", ".join(a.substance for a in out.allergies) or "none known (NKDA)"
        lines.append(f"  Allergies: {names}")
    return lines


def medication_html(result: AgentResult[Medications], text: str | None) -> str:
    out = result.output
    rows = "".join(
        f"<tr><td>{html.escape(m.drug)}</td><td>{html.escape(_dose(m))}</td>"
        f"<td>{html.escape(m.route or '')}</td><td>{html.escape(m.frequency or '')}</td>"
        f"<td>{html.escape(m.duration or '')}</td><td>{m.status}</td>"
        f"<td>{html.escape(_concept_text(m))}</td>"
        f"<td>{m.confidence:.2f}</td></tr>" for m in out.medications)
    allergies = ", ".join(html.escape(a.substance) for a in out.allergies) or (
        "none known (NKDA)" if out.no_known_allergies else "none found")
    return (f"<h4>Medications ({len(out.medications)}, confidence {result.confidence:.2f})</h4>"
            + (f"<table class='medslm-meds'><tr><th>drug</th><th>dose</th><th>route</th><th>frequency</th>"
               f"<th>duration</th><th>status</th><th>concept</th><th>conf</th></tr>{rows}</table>" if rows else "")
            + f"<div class='medslm-allergies'>allergies: {allergies}</div>")


def medication_row(result: AgentResult[Medications]) -> dict[str, Any]:
    out = result.output
    return {"medications": "; ".join(_med_line(m) for m in out.medications),
            "allergies": ", ".join(a.substance for a in out.allergies) or ("NKDA" if out.no_known_allergies else "")}


def medication_cell(result: AgentResult[Medications]) -> str:
    row = medication_row(result)
    return row["medications"] + (f"; allergies: {row['allergies']}" if row["allergies"] else "")


__all__ = [
    "ANSWER_SCHEMA",
    "Allergy",
    "Medication",
    "MedicationAgent",
    "Medications",
    "check_medications",
    "medication_cell",
    "medication_html",
    "medication_row",
    "medication_text",
    "rules_for",
]
