"""Rules for output screening (``guard_out``): PHI leaks, unsupported statements, unsafe advice, bad codes.

Each check returns :class:`medslm.records.SafetyFinding` objects whose messages name categories,
counts, offsets and drug or code names - never the note text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from medslm.records import PhiSpan, SafetyFinding, Severity, Span
from medslm.text import sentence_spans, stem


@dataclass(frozen=True)
class DoseLimit:
    """Largest plausible single adult dose of a drug, in ``unit``."""

    drug: str
    max_single: float
    unit: str  # mg, mcg, g, units


#: largest plausible single adult oral/parenteral dose (conservative upper bounds from labelling)
DOSE_LIMITS: dict[str, DoseLimit] = {
    d.drug: d
    for d in [
        DoseLimit("acetaminophen", 1000, "mg"), DoseLimit("paracetamol", 1000, "mg"),
        DoseLimit("tylenol", 1000, "mg"), DoseLimit("ibuprofen", 800, "mg"), DoseLimit("motrin", 800, "mg"),
        DoseLimit("advil", 800, "mg"), DoseLimit("naproxen", 1000, "mg"), DoseLimit("aspirin", 1000, "mg"),
        DoseLimit("metformin", 1000, "mg"), DoseLimit("lisinopril", 80, "mg"), DoseLimit("losartan", 100, "mg"),
        DoseLimit("amlodipine", 10, "mg"), DoseLimit("metoprolol", 200, "mg"), DoseLimit("atenolol", 100, "mg"),
        DoseLimit("carvedilol", 50, "mg"), DoseLimit("atorvastatin", 80, "mg"), DoseLimit("simvastatin", 80, "mg"),
        DoseLimit("rosuvastatin", 40, "mg"), DoseLimit("warfarin", 15, "mg"), DoseLimit("apixaban", 10, "mg"),
        DoseLimit("rivaroxaban", 20, "mg"), DoseLimit("clopidogrel", 600, "mg"), DoseLimit("digoxin", 0.5, "mg"),
        DoseLimit("furosemide", 200, "mg"), DoseLimit("hydrochlorothiazide", 50, "mg"),
        DoseLimit("spironolactone", 200, "mg"), DoseLimit("levothyroxine", 300, "mcg"),
        DoseLimit("prednisone", 100, "mg"), DoseLimit("methylprednisolone", 1000, "mg"),
        DoseLimit("amoxicillin", 1000, "mg"), DoseLimit("azithromycin", 2000, "mg"),
        DoseLimit("ciprofloxacin", 750, "mg"), DoseLimit("doxycycline", 200, "mg"),
        DoseLimit("cephalexin", 1000, "mg"), DoseLimit("gabapentin", 1200, "mg"), DoseLimit("sertraline", 200, "mg"),
        DoseLimit("fluoxetine", 80, "mg"), DoseLimit("citalopram", 40, "mg"), DoseLimit("escitalopram", 20, "mg"),
        DoseLimit("oxycodone", 80, "mg"), DoseLimit("hydrocodone", 20, "mg"), DoseLimit("morphine", 100, "mg"),
        DoseLimit("tramadol", 100, "mg"), DoseLimit("fentanyl", 200, "mcg"), DoseLimit("hydromorphone", 8, "mg"),
        DoseLimit("lorazepam", 4, "mg"), DoseLimit("alprazolam", 2, "mg"), DoseLimit("diazepam", 20, "mg"),
        DoseLimit("zolpidem", 10, "mg"), DoseLimit("omeprazole", 80, "mg"), DoseLimit("pantoprazole", 80, "mg"),
        DoseLimit("albuterol", 5, "mg"), DoseLimit("methotrexate", 25, "mg"), DoseLimit("lithium", 1800, "mg"),
        DoseLimit("colchicine", 1.2, "mg"), DoseLimit("allopurinol", 800, "mg"), DoseLimit("potassium chloride", 40, "meq"),
        DoseLimit("insulin", 100, "units"), DoseLimit("heparin", 10000, "units"), DoseLimit("enoxaparin", 150, "mg"),
        DoseLimit("nitroglycerin", 0.6, "mg"), DoseLimit("amiodarone", 400, "mg"), DoseLimit("diltiazem", 360, "mg"),
        DoseLimit("lasix", 200, "mg"), DoseLimit("coumadin", 15, "mg"), DoseLimit("eliquis", 10, "mg"),
        DoseLimit("xarelto", 20, "mg"), DoseLimit("lipitor", 80, "mg"), DoseLimit("synthroid", 300, "mcg"),
        DoseLimit("zoloft", 200, "mg"), DoseLimit("xanax", 2, "mg"), DoseLimit("ativan", 4, "mg"),
        DoseLimit("norco", 10, "mg"), DoseLimit("percocet", 10, "mg"), DoseLimit("aleve", 550, "mg"),
    ]
}  # fmt: skip

_UNIT_FACTORS = {("g", "mg"): 1000.0, ("mg", "mcg"): 1000.0, ("g", "mcg"): 1e6, ("mcg", "mg"): 1e-3, ("mg", "g"): 1e-3}
_DOSE_RE = re.compile(
    r"\b(?P<drug>" + "|".join(sorted((re.escape(d) for d in DOSE_LIMITS), key=len, reverse=True)) + r")\b"
    r"[^.\n\d]{0,30}?(?P<num>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*(?P<unit>mg|mcg|µg|ug|g|grams?|units?|u|meq|mEq)\b",
    re.IGNORECASE,
)

#: treatments whose abrupt stop is dangerous without supervision
ESSENTIAL_TREATMENTS = (
    r"insulin|anticoagulants?|blood\s+thinners?|warfarin|coumadin|apixaban|eliquis|rivaroxaban|xarelto|"
    r"clopidogrel|plavix|anti-?epileptics?|anti-?seizure\s+(?:medications?|meds|drugs)|seizure\s+(?:medications?|meds)|"
    r"levetiracetam|keppra|phenytoin|valproate|lamotrigine|antiretrovirals?|HIV\s+(?:medications?|meds|treatment)|ART|"
    r"dialysis|chemotherapy|immunosuppressants?|tacrolimus|transplant\s+(?:medications?|meds)|steroids|prednisone|"
    r"hydrocortisone|beta[\s\-]?blockers?|metoprolol|antipsychotics?|lithium|levothyroxine|thyroid\s+(?:medication|hormone)|"
    r"inhalers?|TB\s+(?:medications?|treatment)|tuberculosis\s+treatment|antibiotics?|oxygen|"
    r"blood\s+pressure\s+(?:medications?|meds|pills)|heart\s+(?:medications?|meds)|antidepressants?|medications?|meds"
)
_STOP_RE = re.compile(
    r"\b(?:stop|discontinue|quit|cease|come\s+off|get\s+off|skip|abandon|throw\s+away|no\s+(?:longer\s+)?need\s+(?:to\s+take|for|your))\s+"
    r"(?:taking\s+|using\s+|your\s+|all\s+(?:of\s+)?(?:your\s+)?|the\s+|any\s+|his\s+|her\s+|their\s+)*"
    rf"(?P<what>{ESSENTIAL_TREATMENTS})\b",
    re.IGNORECASE,
)
_NEGATED_STOP = re.compile(
    r"\b(?:do\s+not|don'?t|never|should\s+not|must\s+not|not\s+to|avoid)\s+(?:\w+\s+){0,2}$|"
    r"\b(?:unless|until|without)\s+(?:\w+\s+){0,6}$",
    re.IGNORECASE,
)
_SUPERVISED = re.compile(
    r"\b(?:as\s+directed|under\s+(?:medical\s+)?supervision|per\s+(?:your\s+)?(?:doctor|physician|cardiologist|nephrologist|"
    r"neurologist|oncologist|endocrinologist|provider|team)|(?:talk|speak|consult)\s+(?:to|with)\s+(?:your\s+)?"
    r"(?:doctor|physician|provider|pharmacist|care\s+team)|prior\s+to\s+(?:the\s+)?(?:surgery|procedure|colonoscopy|operation)|"
    r"before\s+(?:the\s+)?(?:surgery|procedure|colonoscopy|operation)|hold\s+(?:for|on)|bridg)",
    re.IGNORECASE,
)

_STOPWORDS = frozenset(
    "a an the and or but of to in on at for with by from as is are was were be been being has have had this that "
    "these those it its he she they his her their him them patient pt who which what when where not no yes also "
    "will would should can could may might there here than then so very more most some any all each both per "
    "today currently now noted reports report reported states stated denies denied presents presented".split()
)


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z][a-z0-9\-]+|\d+(?:\.\d+)?", text.lower()) if w not in _STOPWORDS]


def _sentences(text: str) -> list[tuple[int, int]]:
    return sentence_spans(text, loose=True, min_chars=3)


@dataclass(frozen=True)
class SupportScore:
    """How well one output sentence is supported by the source text."""

    start: int
    end: int
    coverage: float  # fraction of its content words found in the source
    unsupported_numbers: tuple[str, ...]


def support_scores(output: str, source: str) -> list[SupportScore]:
    """For each sentence of ``output``: content-word coverage by ``source`` and numbers absent from it."""
    src_words = {stem(w) for w in _content_words(source)}
    src_numbers = set(re.findall(r"\d+(?:\.\d+)?", source))
    scores = []
    for s, e in _sentences(output):
        words = _content_words(output[s:e])
        if not words:
            continue
        cov = sum(1 for w in words if stem(w) in src_words) / len(words)
        nums = tuple(n for n in re.findall(r"\d+(?:\.\d+)?", output[s:e]) if n not in src_numbers)
        scores.append(SupportScore(s, e, cov, nums))
    return scores


def check_doses(text: str, *, field: str = "advice") -> list[SafetyFinding]:
    """Doses above the largest plausible single adult dose of a known drug (blocking)."""
    out: list[SafetyFinding] = []
    for m in _DOSE_RE.finditer(text):
        drug = m.group("drug").lower()
        lim = DOSE_LIMITS[drug]
        value = float(m.group("num").replace(",", ""))
        unit = m.group("unit").lower()
        unit = {"µg": "mcg", "ug": "mcg", "grams": "g", "gram": "g", "unit": "units", "u": "units"}.get(unit, unit)
        if unit != lim.unit:
            factor = _UNIT_FACTORS.get((unit, lim.unit))
            if factor is None:
                continue
            value *= factor
        if value > lim.max_single:
            ratio = value / lim.max_single
            out.append(
                SafetyFinding(
                    category="unsafe_dose",
                    severity=Severity.BLOCKING,
                    message=f"{field}: {drug} dose {value:g} {lim.unit} is {ratio:.1f}x the largest plausible "
                    f"single adult dose ({lim.max_single:g} {lim.unit}); a clinician must confirm it",
                    span=Span(start=m.start(), end=m.end(), label=field),
                    # further above the limit: surer it is an error (1.01x: 0.55, 2x: 0.8, 10x: 0.98)
                    confidence=round(min(0.99, 1 - 0.45 / ratio**0.8), 3),
                )
            )
    return out


def check_stop_treatment(text: str, *, field: str = "advice") -> list[SafetyFinding]:
    """Advice to stop an essential treatment, not negated and not under supervision (blocking)."""
    out: list[SafetyFinding] = []
    for m in _STOP_RE.finditer(text):
        before = text[max(0, m.start() - 60) : m.start()]
        if _NEGATED_STOP.search(before):
            continue
        sent_start = max(text.rfind(".", 0, m.start()), text.rfind("\n", 0, m.start())) + 1
        sent_end_dot = text.find(".", m.end())
        sent_end = len(text) if sent_end_dot < 0 else sent_end_dot
        sentence = text[sent_start:sent_end]
        supervised = bool(_SUPERVISED.search(sentence))
        what = re.sub(r"\s+", " ", m.group("what").lower())
        generic = what in ("medications", "medication", "meds", "antibiotics", "antibiotic")
        if supervised:
            continue
        out.append(
            SafetyFinding(
                category="unsafe_advice",
                severity=Severity.WARNING if generic else Severity.BLOCKING,
                message=f"{field}: advice to stop {what} without supervision",
                span=Span(start=m.start(), end=m.end(), label=field),
                confidence=0.7 if generic else 0.9,
            )
        )
    return out


@lru_cache(maxsize=1)
def _default_code_validator() -> Callable[[str], bool]:
    """Membership in the shared embedded knowledge graph (the one the ICD agent codes from)."""
    from medslm.knowledge import KnowledgeGraph

    kg = KnowledgeGraph.default()
    return lambda code: kg.get(code, "ICD10CM") is not None


def check_codes(codes: Iterable[str], validator: Callable[[str], bool] | None = None) -> list[SafetyFinding]:
    """Codes that are not ICD-10-CM concepts of the knowledge graph (blocking)."""
    valid = validator or _default_code_validator()
    out = []
    for code in codes:
        c = code.strip().upper()
        if not c or not valid(c):
            out.append(
                SafetyFinding(
                    category="invalid_code",
                    severity=Severity.BLOCKING,
                    message=f"code {code!r} is not an ICD-10-CM code of the knowledge graph; verify or recode it",
                    confidence=1.0,
                )
            )
    return out


def check_phi_leak(
    output: str, output_phi: Sequence[PhiSpan], note_phi_strings: Iterable[str], *, field: str, blocking: bool
) -> list[SafetyFinding]:
    """PHI in an output: detected spans plus exact reuse of PHI strings found in the note."""
    spans = {(p.start, p.end): p.type for p in output_phi}
    for s in note_phi_strings:
        if len(s) < 3:
            continue
        for m in re.finditer(rf"(?<!\w){re.escape(s)}(?!\w)", output):
            if not any(a <= m.start() < b for a, b in spans):
                spans[(m.start(), m.end())] = "NOTE_PHI"
    out = []
    for (s, e), typ in sorted(spans.items()):
        out.append(
            SafetyFinding(
                category="phi_leak",
                severity=Severity.BLOCKING if blocking else Severity.WARNING,
                message=f"{field}: {typ} at [{s}, {e})"
                + (" after de-identification was requested" if blocking else "; redacted in the output"),
                span=Span(start=s, end=e, label=field),
                confidence=0.95 if typ == "NOTE_PHI" else 0.85,
            )
        )
    return out


def phi_spans_in_output(output: str, note_phi_strings: Iterable[str], *, use_ner: bool = False) -> list[PhiSpan]:
    """PHI in an output text: detected spans plus exact reuse of PHI strings of the note."""
    from medslm.safety.phi import find_phi, resolve_spans

    found = list(find_phi(output, use_ner=use_ner))
    for s in note_phi_strings:
        if len(s) >= 3:
            found += [PhiSpan(start=m.start(), end=m.end(), type="NAME", confidence=0.95)
                      for m in re.finditer(rf"(?<!\w){re.escape(s)}(?!\w)", output)]
    return resolve_spans(found)


def redact_output_text(output: str, note_phi_strings: Iterable[str], *, use_ner: bool = False) -> tuple[str, int]:
    """``output`` with each PHI span replaced by ``[TYPE]``, and how many were replaced."""
    spans = phi_spans_in_output(output, list(note_phi_strings), use_ner=use_ner)
    for sp in reversed(spans):
        output = output[: sp.start] + f"[{sp.type}]" + output[sp.end :]
    return output, len(spans)


def redact_summary(summary: Any, note_phi_strings: Iterable[str], *, use_ner: bool = False) -> tuple[Any, int]:
    """A :class:`medslm.records.Summary` whose sentences carry no PHI (``[NAME]``, ``[MRN]``…), and the count
    of spans redacted. Support spans still point at the note."""
    strings = list(note_phi_strings)
    total = 0
    sections = []
    for sec in summary.sections:
        sents = []
        for sent in sec.sentences:
            text, n = redact_output_text(sent.text, strings, use_ner=use_ner)
            total += n
            sents.append(sent.model_copy(update={"text": text}) if n else sent)
        sections.append(sec.model_copy(update={"sentences": tuple(sents)}))
    return (summary.model_copy(update={"sections": tuple(sections)}) if total else summary), total


__all__ = [
    "DOSE_LIMITS",
    "ESSENTIAL_TREATMENTS",
    "DoseLimit",
    "SupportScore",
    "check_codes",
    "check_doses",
    "check_phi_leak",
    "check_stop_treatment",
    "phi_spans_in_output",
    "redact_output_text",
    "redact_summary",
    "support_scores",
]
