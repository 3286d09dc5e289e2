"""Red-flag rules: findings that must never be under-triaged, each with the least urgent level it allows.

The levels follow ESI's danger-zone vitals and KTAS first-order modifiers (1 most urgent … 5 least).
Every flag carries the note spans that fired it, so a reviewer (and the verifier) can check it against
the vitals. Text cues are skipped when a negation precedes them in the same clause ("denies chest
pain", "no facial droop").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medslm.agents.vitals import Vitals, extract_vitals
from medslm.records import RedFlag, Span
from medslm.text import is_negated  # re-exported: the rules' negation check

__all__ = ["TEXT_RULES", "TextRule", "find_red_flags", "is_negated"]

@dataclass(frozen=True)
class TextRule:
    """A red flag fired by a phrase in the note (not negated), optionally only with a companion cue."""

    name: str
    max_level: int
    pattern: re.Pattern[str]
    requires: re.Pattern[str] | None = None  # a second cue that must also be present (not negated)
    detail: str = ""
    #: whether a negation before the companion cue cancels it ("no troponin"); a work-up cue such as
    #: "rule out ACS" or "r/o MI" is the clinician's suspicion, so it counts although it reads as a negation
    requires_negatable: bool = True
    #: whether "history of" / "h/o" / "prior" before the phrase cancels it (a past episode, not today's)
    historical_cancels: bool = False


def _p(s: str) -> re.Pattern[str]:
    return re.compile(s, re.I)


_CHEST = _p(r"\b(?:chest\s+(?:pain|discomfort|pressure|tightness|heaviness)|(?:pain|discomfort),?\s+chest|angina)\b")

TEXT_RULES: tuple[TextRule, ...] = (
    TextRule("cardiac_arrest", 1, _p(r"\b(?:cardiac\s+arrest|pulseless|CPR\s+in\s+progress|not\s+breathing|apn(?:o|e)ic|asystole|"
                                       r"ventricular\s+fibrillation|v-?fib|arrest(?:ed)?\b)")),
    TextRule("active_seizure", 1, _p(r"\b(?:status\s+epilepticus|actively\s+seizing|seizing|ongoing\s+seizure)\b")),
    TextRule("airway_compromise", 1, _p(r"\b(?:stridor|airway\s+(?:compromise|obstruction)|anaphyla(?:xis|ctic)|"
                                          r"throat\s+(?:swelling|closing)|angioedema)\b")),
    TextRule("severe_respiratory_distress", 2, _p(r"\b(?:severe\s+(?:respiratory\s+distress|shortness\s+of\s+breath|dyspn(?:o|e)a)|"
                                                    r"cyanos(?:is|ed)|cyanotic|cannot\s+speak\s+in\s+(?:full\s+)?sentences|"
                                                    r"accessory\s+muscle)\b")),
    TextRule("stroke_signs", 2, _p(r"\b(?:facial\s+droop|face\s+droop|slurred\s+speech|dysarthria|aphasia|hemipare(?:sis|tic)|"
                                     r"hemiplegi(?:a|c)|(?:left|right|one)[- ]sided?\s+(?:weakness|numbness)|"
                                     r"weakness\s+(?:of|on)\s+(?:the\s+)?(?:left|right|one)\s+side|stroke\s+symptoms|"
                                     r"sudden\s+(?:onset\s+)?(?:weakness|numbness|vision\s+loss)|"
                                     r"(?:rt|lt|right|left)\.?\s+(?:side\s+)?(?:weakness|hemiparesis))\b"),
             detail="focal neurological deficit"),
    TextRule("chest_pain_ischaemic", 2, _CHEST,
             requires=_p(r"\b(?:radiat\w*\s+(?:to\s+)?(?:the\s+)?(?:left\s+)?(?:arm|jaw|neck|back|shoulder)|diaphore\w*|sweat\w*|"
                         r"crushing|(?<!blood )pressure|squeezing|exertion(?:al)?|ST[- ]elevation|STEMI|troponin|"
                         r"history\s+of\s+(?:MI|CAD|coronary)|nause\w*)\b"),
             detail="chest pain with ischaemic features"),
    TextRule("chest_pain_acs_workup", 2, _CHEST,
             requires=_p(r"\b(?:ECG|EKG|troponins?|trop|cardiac\s+(?:enzymes|markers|work-?up|monitor(?:ing)?)|ACS|"
                         r"acute\s+coronary|(?:rule\s+out|r/o|rule-out)\s+(?:MI|ACS|acute\s+coronary)|N?STEMI|"
                         r"aspirin\s+(?:325|81|chewed|given)|(?:sublingual\s+)?nitro(?:glycerin)?|cath(?:eterization)?\s+lab|"
                         r"heparin)\b"),
             detail="chest pain with an acute coronary syndrome work-up", requires_negatable=False),
    TextRule("suicidal", 2, _p(r"\b(?:suicidal|suicide|overdose|self[- ]harm|intentional\s+ingestion|(?-i:SI)(?!\s+joint)|"
                                 r"homicidal(?:\s+ideation)?|(?:thoughts?|ideas?)\s+of\s+(?:killing|harming|hurting|ending)\s+"
                                 r"(?:him|her|my|them|one|your)sel(?:f|ves)|(?:wants?|wanting|wish(?:es|ing)?)\s+to\s+die|"
                                 r"(?:kill|killing|harm|harming|hurt|hurting|shoot|shooting|hang|hanging)\s+(?:him|her|my|them|your)sel(?:f|ves)|"
                                 r"end(?:ing)?\s+(?:his|her|my|their)\s+(?:own\s+)?life|"
                                 r"plan\s+to\s+(?:overdose|hang|shoot|jump|cut)|cutting\s+(?:him|her)self)\b"),
             detail="suicidal or homicidal ideation, self-harm or overdose"),
    TextRule("dka", 2, _p(r"\b(?:DKA|(?:diabetic\s+)?ketoacidosis|HHS|hyperosmolar\s+hyperglyc\w*|hyperglyc\w*\s+"
                            r"(?:crisis|emergency)|kussmaul(?:\s+(?:respirations?|breathing))?)\b"),
             detail="diabetic ketoacidosis / hyperglycaemic crisis", historical_cancels=True),
    TextRule("hyperglycemia_ketosis", 2, _p(r"\b(?:glucose|BG|blood\s+sugars?|FSBG|CBG|POC\s+glucose|finger\s*stick|accu-?chek)"
                                              r"\s*(?:of|is|was|at|reads?|reading|shows?|showed|:|=)?\s*(?:[4-9]\d\d|[1-9]\d{3}|HI|high|>\s*[4-6]\d\d)\b"),
             requires=_p(r"\b(?:ketones?|ketonuria|ketonemia|beta-?hydroxybutyrate|BHB|anion\s+gap|AG\s+\d{2}|bicarb(?:onate)?\s+(?:of\s+)?\d\b|"
                         r"fruity|vomiting|abdominal\s+pain|tachypn\w+|deep\s+(?:rapid\s+)?breathing)\b"),
             detail="glucose >= 400 with ketosis, vomiting or abdominal pain"),
    TextRule("sepsis_suspected", 2, _p(r"\b(?:septic\s+shock|sepsis|septic|code\s+sepsis)\b"), detail="suspected sepsis"),
    TextRule("time_critical_diagnosis", 2, _p(r"\b(?:ectopic\s+pregnancy|(?:testicular|ovarian)\s+torsion|aortic\s+dissection|"
                                                r"thunderclap\s+headache|worst\s+headache\s+of\s+(?:his|her|my|their)\s+life|"
                                                r"pulmonary\s+embol\w+|cauda\s+equina)\b"),
             detail="a time-critical diagnosis is suspected"),
    TextRule("gi_bleeding", 3, _p(r"\b(?:hematemesis|haematemesis|melena|melaena|hematochezia|haematochezia|"
                                    r"vomiting\s+blood|coffee[- ]ground)\b")),
    TextRule("syncope", 3, _p(r"\b(?:syncope|syncopal|passed\s+out|fainted|loss\s+of\s+consciousness|LOC)\b")),
)


def _vital_flags(v: Vitals) -> list[RedFlag]:
    flags: list[RedFlag] = []

    def add(name: str, level: int, spans: Sequence[Span | None], detail: str) -> None:
        flags.append(RedFlag(name=name, max_level=level, evidence=tuple(s for s in spans if s), detail=detail))

    def span(name: str) -> Span | None:
        m = getattr(v, name)
        return None if m is None else m.span

    spo2, sbp, hr, rr = v.value("spo2"), v.value("sbp"), v.value("hr"), v.value("rr")
    gcs, mental, temp = v.value("gcs"), v.value("mental"), v.value("temp_c")
    if spo2 is not None and spo2 < 92:
        add("hypoxia", 1 if spo2 < 80 else 2, [span("spo2")], f"SpO2 {spo2:.0f}% (< 92 %)")
    if sbp is not None and (sbp < 90 or sbp >= 220):
        lvl = 1 if sbp < 70 else 2
        add("hypotension" if sbp < 90 else "severe_hypertension", lvl, [span("sbp")], f"SBP {sbp:.0f} mmHg")
    if hr is not None and (hr > 130 or hr < 40):
        add("tachycardia" if hr > 130 else "bradycardia", 2, [span("hr")], f"HR {hr:.0f}/min")
    if rr is not None and (rr > 30 or rr < 10):
        add("tachypnoea" if rr > 30 else "bradypnoea", 1 if rr >= 40 or rr < 6 else 2, [span("rr")], f"RR {rr:.0f}/min")
    if gcs is not None and gcs <= 13:
        add("low_gcs", 1 if gcs <= 8 else 2, [span("gcs")], f"GCS {gcs:.0f}")
    if mental is not None and mental >= 3:
        add("unresponsive" if mental == 4 else "responds_to_pain_only", 1 if mental == 4 else 2, [span("mental")],
            "AVPU " + ("U" if mental == 4 else "P"))
    elif mental == 2:
        add("altered_mental_status", 3, [span("mental")], "AVPU V / confusion")
    # SIRS criteria (temperature, heart rate, respiratory rate): 3 -> septic-looking (2), 2 with fever -> 3
    sirs = [
        ("temp_c", temp is not None and (temp >= 38.0 or temp < 36.0)),
        ("hr", hr is not None and hr > 90),
        ("rr", rr is not None and rr > 20),
    ]
    n = sum(ok for _, ok in sirs)
    fever = temp is not None and temp >= 38.0
    if n >= 3 or (n >= 2 and fever):
        add("sepsis_criteria", 2 if n >= 3 else 3, [span(k) for k, ok in sirs if ok], f"{n} SIRS criteria")
    pain = v.value("pain")
    if pain is not None and pain >= 8:
        add("severe_pain", 3, [span("pain")], f"pain {pain:.0f}/10")
    return flags


_HISTORICAL = re.compile(r"\b(?:history\s+of|hx\s+of|h/o|prior|previous|past|remote)\b(?:\s+\w+){0,3}\s*$", re.I)


def _unnegated(pattern: re.Pattern[str], text: str, *, historical: bool = False) -> list[Span]:
    out = []
    for m in pattern.finditer(text):
        if is_negated(text, m.start()):
            continue
        if historical and _HISTORICAL.search(text[max(0, m.start() - 40) : m.start()]):
            continue
        out.append(Span(start=m.start(), end=m.end()))
    return out


def find_red_flags(text: str, vitals: Vitals | None = None) -> list[RedFlag]:
    """All red flags in ``text``, most urgent first; ``vitals`` is read from the text when not given."""
    v = vitals if vitals is not None else extract_vitals(text)
    flags = _vital_flags(v)
    for rule in TEXT_RULES:
        spans = _unnegated(rule.pattern, text, historical=rule.historical_cancels)
        if not spans:
            continue
        if rule.requires is not None:
            extra = (_unnegated(rule.requires, text) if rule.requires_negatable else
                     [Span(start=m.start(), end=m.end()) for m in rule.requires.finditer(text)])
            if not extra:
                continue
            spans = spans[:1] + extra[:1]
        labelled = tuple(s.model_copy(update={"label": rule.name}) for s in spans[:3])
        flags.append(RedFlag(name=rule.name, max_level=rule.max_level, evidence=labelled, detail=rule.detail))
    flags.sort(key=lambda f: (f.max_level, f.name))
    return flags
