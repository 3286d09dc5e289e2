"""Common clinical abbreviations, the concept names they stand for, and their sense in context.

Lookup expands them whatever their case ("mi" as a query means myocardial infarction); the lexicon
matcher only takes them in a note when written as listed (upper case), so "so" or "pe" in prose stay
words. Each expansion must be a name (label, synonym or inclusion term) of a concept in the embedded
graph; a test checks that every entry resolves.

Many abbreviations have several senses, and the sentence decides: "SpO2 94% on RA" is room air, "RA on
methotrexate" rheumatoid arthritis; "c/o substernal CP" is chest pain, "spastic CP" cerebral palsy;
"PE: lungs clear" is the physical exam, "r/o PE" a suspected pulmonary embolism. :func:`sense_in_context`
(used by the NER and ICD agents) reads the sense of one abbreviation in a text:

    >>> s = sense_in_context("SpO2 94% on RA, RR 18.", 12, 14)
    >>> s.expansion, s.condition, s.method
    ('room air', False, 'rule')

1. **rules**: cue patterns of each sense in the words just before, just after and around the
   abbreviation (:data:`SENSES`);
2. where no rule decides, **the SLM**: the sentence's MiniLM embedding (the embedded all-MiniLM-L6-v2)
   against prototypes of each sense (the mean embedding of example sentences written for each sense),
   a softmax over cosine similarities;
3. otherwise the sense a clinical note most often means (``prior``), with a low confidence.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medslm.records import Assertion

ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "MI": ("myocardial infarction",),
    "AMI": ("acute myocardial infarction",),
    "STEMI": ("ST elevation (STEMI) myocardial infarction of unspecified site",),
    "NSTEMI": ("Non-ST elevation (NSTEMI) myocardial infarction",),
    "HTN": ("essential hypertension", "hypertension"),
    "SOB": ("shortness of breath",),
    "DOE": ("exertional dyspnea",),
    "CP": ("chest pain",),
    "CHF": ("congestive heart failure",),
    "HF": ("heart failure",),
    "CAD": ("coronary artery disease",),
    "AF": ("atrial fibrillation",),
    "AFIB": ("atrial fibrillation",),
    "AFib": ("atrial fibrillation",),
    "DVT": ("deep vein thrombosis",),
    "PE": ("pulmonary embolism",),
    "CVA": ("stroke",),
    "TIA": ("transient ischemic attack",),
    "COPD": ("chronic obstructive pulmonary disease",),
    "DM": ("diabetes mellitus",),
    "T2DM": ("type 2 diabetes mellitus",),
    "DM2": ("type 2 diabetes mellitus",),
    "T1DM": ("type 1 diabetes mellitus",),
    "DKA": ("diabetic ketoacidosis",),
    "CKD": ("chronic kidney disease",),
    "AKI": ("acute kidney injury",),
    "ESRD": ("end stage renal disease",),
    "UTI": ("urinary tract infection",),
    "URI": ("upper respiratory infection",),
    "GERD": ("gastro-esophageal reflux disease",),
    "OSA": ("obstructive sleep apnea",),
    "RA": ("rheumatoid arthritis",),
    "OA": ("osteoarthritis",),
    "BPH": ("benign prostatic hyperplasia",),
    "HLD": ("hyperlipidemia",),
    "PNA": ("pneumonia",),
    "N/V": ("nausea and vomiting",),
    "HA": ("headache",),
    "LOC": ("loss of consciousness",),
    "ARDS": ("acute respiratory distress syndrome",),
    "SAH": ("subarachnoid hemorrhage",),
    "ICH": ("intracerebral hemorrhage",),
    "PAD": ("peripheral vascular disease",),
    "PVD": ("peripheral vascular disease",),
    "MDD": ("major depressive disorder, single episode",),
    "GAD": ("generalized anxiety disorder",),
    "ADHD": ("attention-deficit hyperactivity disorder",),
    "HIV": ("human immunodeficiency virus disease",),
    "TB": ("respiratory tuberculosis",),
    "SLE": ("systemic lupus erythematosus",),
    "MS": ("multiple sclerosis",),
    "IBS": ("irritable bowel syndrome",),
    "IBD": ("inflammatory bowel disease",),
    "BPPV": ("benign paroxysmal vertigo",),
    "SIRS": ("systemic inflammatory response syndrome",),
    # short names notes use (not English words, so taken whatever their case)
    "COVID": ("COVID-19",),
    "Covid": ("COVID-19",),
    "covid": ("COVID-19",),
    "flu": ("influenza",),
}



_PAREN = re.compile(r"\(([^()]{1,12})\)")
_WORD = re.compile(r"\S+")


def _best_long_form(short: str, long: str) -> str | None:
    """Schwartz & Hearst (2003): the shortest suffix of ``long`` whose letters spell ``short`` in order."""
    s, i = len(short) - 1, len(long) - 1
    while s >= 0:
        ch = short[s].lower()
        if not ch.isalnum():
            s -= 1
            continue
        while i >= 0 and (long[i].lower() != ch or (s == 0 and i > 0 and long[i - 1].isalnum())):
            i -= 1
        if i < 0:
            return None
        i -= 1
        s -= 1
    start = long.rfind(" ", 0, i + 1) + 1
    return long[start:].strip()


def find_abbreviations(text: str) -> dict[str, str]:
    """Abbreviations a document defines, ``"long form (SF)"`` -> ``{"SF": "long form"}`` (Schwartz-Hearst).

    >>> find_abbreviations("Ataxia-telangiectasia (A-T) is rare. A-T patients ...")
    {'A-T': 'Ataxia-telangiectasia'}
    """
    found: dict[str, str] = {}
    for m in _PAREN.finditer(text):
        short = m.group(1).strip()
        if not (2 <= len(short) <= 10) or len(short.split()) > 2 or not short[0].isalnum():
            continue
        if not any(c.isalpha() for c in short) or short in found:
            continue
        before = text[: m.start()].rstrip()
        # the window: min(|SF| + 5, 2 |SF|) words before the parenthesis, within the sentence
        cut = max(before.rfind(". "), before.rfind("; "), before.rfind("\n"))
        words = _WORD.findall(before[cut + 1 :])
        n = min(len(short) + 5, 2 * len(short))
        window = " ".join(words[-n:])
        long = _best_long_form(short, window)
        if (long and len(long) > len(short) and " " in long) or (long and "-" in long):
            found[short] = long.strip(" ,;:")
    return found


def expand(mention: str, defined: dict[str, str]) -> str:
    """Replace abbreviations a document defined inside a mention ("congenital DM" -> "congenital myotonic…")."""
    if mention in defined:
        return defined[mention]
    words = mention.split()
    if any(w in defined for w in words):
        return " ".join(defined.get(w, w) for w in words)
    return mention


# ---------------------------------------------------------------------------------------------- senses
@dataclass(frozen=True)
class Sense:
    """One sense of an abbreviation and the cues that select it (regular expressions, lower case)."""

    expansion: str  # the long form; for a condition, a name of a concept of the embedded graph
    type: str  # an EntityType value ("problem", "test", "procedure", "anatomy", "medication") or "other"
    condition: bool  # a clinical finding or condition an agent may code for the patient
    before: str = ""  # matched against the (up to 40) characters before the abbreviation, in its sentence
    after: str = ""  # matched against the (up to 40) characters after it
    around: str = ""  # matched against the rest of its sentence (the abbreviation cut out)
    examples: tuple[str, ...] = field(default=())  # sentences with this sense, for the context model


_VITALS = r"(?:spo2|sao2|sp02|o2\s*sat\w*|sats?\b|saturation|satting|pulse\s*ox\w*|oxygen\s+sat\w*|\d\s*%)"

#: Abbreviations with several senses. The first sense is the prior (what a clinical note most often means).
SENSES: dict[str, tuple[Sense, ...]] = {
    "RA": (
        Sense("rheumatoid arthritis", "problem", True,
              around=r"rheumat|arthrit|joint|synovi|methotrexate|dmard|\brf\b|anti-?ccp|hydroxychloroquine|plaquenil|"
                     r"seropositive|seronegative|biologic|humira|etanercept|flare|deformit",
              examples=("History of RA on methotrexate.", "Her RA has flared with swollen hand joints.",
                        "PMH: HTN, RA, hypothyroidism.", "Seropositive RA followed by rheumatology.")),
        Sense("room air", "other", False,
              before=_VITALS + r"[^.;\n]{0,25}$|\b(?:on|at|breathing|saturating|satting)\s*$",
              after=r"^\s*(?:,\s*)?(?:rr|hr|bp|t\b|temp|afebrile|with|and\s+(?:rr|hr))",
              examples=("SpO2 96% on RA.", "Sats 91% on RA, placed on 2 L nasal cannula.",
                        "Oxygen saturation 98% RA.", "Breathing comfortably on RA.")),
        Sense("right atrium", "anatomy", False,
              around=r"dilat|enlarg|\brv\b|\bla\b|\blv\b|atri|tricuspid|echo|pressure|ventric|thrombus in",
              before=r"(?:dilated|enlarged|mean|normal)\s*$",
              examples=("Echo: dilated RA and RV.", "Mean RA pressure 12 mmHg.", "Mildly enlarged RA.")),
    ),
    "CP": (
        Sense("chest pain", "problem", True,
              around=r"chest|substernal|retrosternal|radiat|exertion|pressure|angina|pleuritic|c/o|complain|troponin|"
                     r"\becg|\bekg|diaphore|atypical|typical|sharp|dull|nitro|\bacs\b|sob\b|shortness of breath",
              before=r"(?:c/o|w/|with|for|of|no|denies|reports|intermittent|\bhad)\s*$",
              examples=("Presents with substernal CP radiating to the left arm.", "c/o CP x 2 hours.",
                        "Denies CP or SOB.", "CP started while shoveling snow.")),
        Sense("cerebral palsy", "problem", True,
              around=r"cerebral|spastic|developmental|quadripleg|dipleg|hemipleg|wheelchair|g-?tube|since birth|"
                     r"congenital|contracture|nonverbal|baclofen|botox|prematur",
              examples=("Spastic quadriplegic CP, wheelchair bound.", "History of CP and seizure disorder.",
                        "Child with CP and G-tube dependence.")),
    ),
    "PE": (
        Sense("pulmonary embolism", "problem", True,
              around=r"embol|dvt|anticoag|heparin|\bcta\b|ct\s*angio|ctpa|d-?dimer|wells|v/q|saddle|massive|"
                     r"r/o|rule out|ruled out|thromb|pleuritic|hypox|tachycard|eliquis|apixaban|xarelto|rivaroxaban|"
                     r"warfarin|lovenox|enoxaparin|\bivc\b",
              before=r"(?:r/o|rule\s+out|eval\w*\s+for|concern\s+for|h/o|hx\s+of|history\s+of|no|with|for|"
                     r"bilateral|saddle|massive|submassive|acute|recurrent|provoked|unprovoked)\s*$",
              examples=("CTA chest to rule out PE.", "Acute PE on heparin drip.", "History of DVT/PE on apixaban.",
                        "Low Wells score, d-dimer sent for PE.")),
        Sense("physical examination", "other", False,
              before=r"(?:^|\n|[.;]\s)\s*$|\b(?:on|per|during|at|repeat|focused|the|his|her|brief)\s*$",
              after=r"^\s*(?::|-|was\b|is\b|reveal|show|notable|unremarkable|significant|remarkable|otherwise|"
                    r"findings|benign|normal|wnl|without|with\s+no)",
              examples=("PE: HEENT normal, lungs clear.", "On PE, abdomen soft and nontender.",
                        "PE unremarkable except for a murmur.")),
        Sense("pressure equalization tubes", "procedure", False, after=r"^\s*tubes?",
              examples=("Bilateral PE tubes placed at age 2.",)),
    ),
    "MS": (
        Sense("multiple sclerosis", "problem", True,
              around=r"sclerosis|demyelinat|relaps|remitting|optic neuritis|interferon|natalizumab|ocrelizumab|"
                     r"neurolog|lesion|flare|mri brain|progressive",
              examples=("Relapsing-remitting MS on ocrelizumab.", "MS flare with optic neuritis.",
                        "History of MS, ambulates with a cane.")),
        Sense("mental status", "other", False,
              before=r"(?:altered|change[sd]?\s+in|baseline|depressed|decreased|improved|improving|worsening|"
                     r"normal|abnormal)\s*$",
              after=r"^\s*(?:changes?|intact|at\s+baseline|:|is\b|was\b|improv|altered|exam|wnl)",
              examples=("Altered MS since this morning.", "MS at baseline per family.", "MS changes noted overnight.")),
        Sense("mitral stenosis", "problem", True,
              around=r"mitral|valv|murmur|echo|rheumatic heart|\bmva\b|gradient|\bcm2|balloon",
              before=r"(?:severe|moderate|mild|rheumatic)\s*$",
              examples=("Severe MS with a mean gradient of 12 mmHg.", "Rheumatic MS on echo.")),
        Sense("morphine sulfate", "medication", False,
              after=r"^\s*(?:contin|ir\b|er\b|\d)", before=r"(?:give|gave|given|administered|dose\s+of|mg)\s*$",
              examples=("MS Contin 15 mg twice daily.", "MS 4 mg IV given for pain.")),
    ),
    "AF": (
        Sense("atrial fibrillation", "problem", True,
              around=r"rate|rhythm|\brvr\b|anticoag|warfarin|coumadin|apixaban|eliquis|rivaroxaban|\becg|\bekg|"
                     r"palpitat|irregular|amiodarone|diltiazem|metoprolol|cha2?ds2|cardiover|paroxysmal|persistent",
              examples=("New-onset AF with RVR.", "Paroxysmal AF on apixaban.", "ECG shows AF at 130.")),
        Sense("afebrile", "other", False,
              around=r"\bvss\b|vitals?|\btmax|\bt\s*max|\btemp\b",
              after=r"^\s*(?:,\s*)?(?:vss|vital|hemodynamically|hds)",
              examples=("AF, VSS.", "Overnight: AF, vitals stable.")),
    ),
    "LOC": (
        Sense("loss of consciousness", "problem", True,
              around=r"syncop|faint|passed out|collaps|head|fall|fell|injur|seizure|struck|hit|brief|minute",
              before=r"(?:no|without|denies|\+|with|brief|positive|negative\s+for)\s*$",
              examples=("Fell and hit her head with brief LOC.", "No LOC after the fall.", "Syncopal episode with LOC.")),
        Sense("level of consciousness", "other", False,
              before=r"(?:decreased|depressed|altered|diminished|fluctuating|reduced|normal|impaired)\s*$",
              after=r"^\s*(?::|is\b|was\b|alert|gcs|improv)",
              examples=("Decreased LOC, GCS 9.", "LOC: alert and oriented.")),
    ),
    "OA": (
        Sense("osteoarthritis", "problem", True,
              around=r"knee|hip|joint|arthr|cartilage|crepit|stiff|degenerat|replacement|nsaid|injection",
              examples=("Bilateral knee OA.", "OA of the hands, on acetaminophen.")),
        Sense("on arrival", "other", False,
              before=r"\b(?:bp|hr|vitals?|gcs|sats?|temp|glucose|fsbg)\b[^.;]{0,25}$",
              after=r"^\s*(?:to|at|in)\b",
              examples=("BP 88/50 OA.", "GCS 14 OA to the ED.")),
    ),
    "TB": (
        Sense("respiratory tuberculosis", "problem", True,
              around=r"tubercul|\bppd|quantiferon|igra|night sweats|isoniazid|rifampin|sputum|\bafb|cavit|latent|exposure",
              examples=("Latent TB treated with isoniazid.", "Sputum AFB sent to rule out TB.")),
        Sense("total bilirubin", "test", False, after=r"^\s*(?:[:=]\s*)?\d", around=r"bili|\bast\b|\balt\b|alk\s*phos|\blft",
              examples=("TB 2.4, AST 80, ALT 95.",)),
    ),
}

_POSSIBLE_BEFORE = re.compile(r"(?:r/o|rule\s+out|ruling\s+out|eval\w*\s+for|concern\s+for|suspect\w*|possible|"
                              r"probable|likely|\?)\s*$", re.IGNORECASE)
_NEGATED_BEFORE = re.compile(r"(?:\bno|denies|without|negative\s+for|neg\s+for)\s*$", re.IGNORECASE)
_HISTORY_BEFORE = re.compile(r"(?:h/o|hx\s+of|history\s+of|pmh:?|s/p|prior|previous)\s*$", re.IGNORECASE)
_SENT_END = re.compile(r"[.!?;]\s|\n")


class AbbreviationSense(BaseModel):
    """The sense of one abbreviation in its sentence (:func:`sense_in_context`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    abbreviation: str = Field(description="as written in the text")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    expansion: str = Field(description="the long form; for a condition, a concept name of the knowledge graph")
    condition: bool = Field(description="a finding or condition of the patient that an agent may code")
    type: str = Field(description="an EntityType value, or 'other' when the sense is not a clinical entity")
    assertion: Assertion | None = Field(default=None, description="what the words just before say (r/o: possible, "
                                                                    "no: negated, h/o: historical), else None")
    confidence: float = Field(ge=0.0, le=1.0)
    method: str = Field(description="'rule', 'context-model' (MiniLM sense prototypes), 'prior' or 'only-sense'")
    alternatives: tuple[str, ...] = Field(default=(), description="the abbreviation's other senses")


def _sentence(text: str, start: int, end: int) -> tuple[int, int]:
    a = max((m.end() for m in _SENT_END.finditer(text, 0, start)), default=0)
    m = _SENT_END.search(text, end)
    return a, (m.start() + 1 if m else len(text))


class _SenseModel:
    """MiniLM sense prototypes: the mean embedding of each sense's example sentences."""

    def __init__(self) -> None:
        self._protos: dict[str, Any] = {}
        self._lock = threading.Lock()

    def probs(self, abbr: str, context: str) -> list[float]:
        import numpy as np

        from medslm.knowledge.embedding import encoder

        senses = SENSES[abbr]
        with self._lock:
            if abbr not in self._protos:
                rows = []
                for s in senses:
                    v = encoder().encode(list(s.examples or (s.expansion,))).mean(0)
                    rows.append(v / max(1e-9, float(np.linalg.norm(v))))
                self._protos[abbr] = np.stack(rows)
        q = encoder().encode([context])[0]
        sims = self._protos[abbr] @ q
        e = np.exp((sims - sims.max()) / 0.05)
        return [float(x) for x in e / e.sum()]


_MODEL = _SenseModel()
#: the context model's lowest probability of its choice for it to be used (below: the prior)
MODEL_MIN_PROB = 0.6


def _hint(before: str) -> Assertion | None:
    if _POSSIBLE_BEFORE.search(before):
        return Assertion.POSSIBLE
    if _NEGATED_BEFORE.search(before):
        return Assertion.NEGATED
    if _HISTORY_BEFORE.search(before):
        return Assertion.HISTORICAL
    return None


def sense_in_context(text: str, start: int, end: int, *, use_model: bool = True) -> AbbreviationSense | None:
    """The sense of the abbreviation ``text[start:end]`` in its sentence, or ``None`` when it is not one
    of :data:`SENSES` or :data:`ABBREVIATIONS` (matched as written, then upper-cased).

    Stable API (the NER and ICD agents call it): ``sense.expansion`` is the long form (a concept name of
    the knowledge graph when ``sense.condition``); a sense that is not a condition of the patient (room
    air, physical exam, mental status, afebrile, on arrival…) has ``condition=False`` and must not be
    coded. ``use_model=False`` skips the MiniLM context model (rules and the prior only).
    """
    abbr = text[start:end]
    key = abbr if abbr in SENSES or abbr in ABBREVIATIONS else abbr.upper()
    a, b = _sentence(text, start, end)
    before = text[max(a, start - 40) : start]
    after = text[end : min(b, end + 40)]
    hint = _hint(before)
    if key not in SENSES:
        if key not in ABBREVIATIONS:
            return None
        return AbbreviationSense(abbreviation=abbr, start=start, end=end, expansion=ABBREVIATIONS[key][0],
                                 condition=True, type="problem", assertion=hint, confidence=0.9, method="only-sense")
    senses = SENSES[key]
    rest = (text[a:start] + " " + text[end:b]).lower()
    low_before, low_after = before.lower(), after.lower()

    def make(s: Sense, conf: float, method: str) -> AbbreviationSense:
        return AbbreviationSense(abbreviation=abbr, start=start, end=end, expansion=s.expansion, condition=s.condition,
                                 type=s.type, assertion=hint if s.condition else None, confidence=round(conf, 4),
                                 method=method, alternatives=tuple(o.expansion for o in senses if o is not s))

    # 1. rules: cues right next to the abbreviation first (before/after), then anywhere in the sentence
    for field_ in ("after", "before"):
        hits = [s for s in senses if getattr(s, field_) and re.search(getattr(s, field_), low_after if field_ == "after" else low_before)]
        if len(hits) == 1:
            return make(hits[0], 0.95, "rule")
    hits = [s for s in senses if s.around and re.search(s.around, rest)]
    if len(hits) == 1:
        return make(hits[0], 0.9, "rule")
    # 2. the context model
    if use_model:
        probs = _MODEL.probs(key, text[a:b].strip())
        k = max(range(len(probs)), key=probs.__getitem__)
        if probs[k] >= MODEL_MIN_PROB:
            return make(senses[k], probs[k], "context-model")
    # 3. the prior
    return make(senses[0], 0.5, "prior")


__all__ = ["ABBREVIATIONS", "SENSES", "AbbreviationSense", "Sense", "expand", "find_abbreviations", "sense_in_context"]
