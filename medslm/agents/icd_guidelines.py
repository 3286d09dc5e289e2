"""ICD-10-CM Official Guidelines for Coding and Reporting, the parts the ICD agent applies to a note.

- **Encounter setting** (:func:`encounter_setting`): ``note.metadata["encounter"]`` (or ``setting`` /
  ``note_type``) when given, else read from the note ("Discharge summary", "Hospital course" -> inpatient;
  "ED", "Emergency department" -> emergency; "clinic", "office visit" -> outpatient).
- **Uncertain diagnoses** (Section II.H / III.C vs IV.H): "possible", "probable", "likely", "suspected",
  "r/o", "vs" diagnoses are coded as if established at an *inpatient* discharge only; in outpatient and
  emergency notes (and when the setting is unknown) the condition is not coded, the symptoms are (they
  are coded from their own mentions).
- **Whose finding, and is it there** (:func:`refine_assertion`): "HIV negative", "COVID (-)" are negated;
  "pneumonia vs bronchitis" is uncertain; "wife reports cough" is the patient's cough; "wife has covid"
  is another person's (never the patient's, and not family history: a spouse is not a blood relative).
- **Family history** -> Z80-Z84 (:func:`family_history_code`), **personal history** -> Z85-Z87 (the
  agent looks them up in the graph), **long-term (current) drug therapy** -> Z79.x when the note says the
  patient is on the drug (:func:`long_term_drug_codes`), **status** Z codes (pacemaker, dialysis, transplant,
  former smoker, allergy to penicillin, DNR…) when stated and not negated (:func:`status_codes`).

Every code in the tables below is checked against the knowledge graph by the tests (and again when
emitted): none can be outside ICD-10-CM.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medslm.records import Assertion

INPATIENT, OUTPATIENT, EMERGENCY, UNKNOWN = "inpatient", "outpatient", "emergency", "unknown"
#: settings where an uncertain diagnosis is coded as if established (guideline II.H, inpatient only)
UNCERTAIN_AS_ESTABLISHED = frozenset({INPATIENT})

_SETTING_WORDS = {
    INPATIENT: ("inpatient", "discharge", "admission", "admit", "hospital", "ip"),
    EMERGENCY: ("ed", "er", "emergency", "urgent"),
    OUTPATIENT: ("outpatient", "clinic", "office", "ambulatory", "op", "telehealth", "primary care"),
}
_INPATIENT_TEXT = re.compile(r"discharge summary|hospital course|discharge diagnos[ie]s|date of discharge|"
                             r"admission date|admitted (?:to|for|on)\b|inpatient|discharged (?:home|to)", re.I)
_EMERGENCY_TEXT = re.compile(r"\bED\b|\bER\b|emergency (?:department|room)|triage|presents? to the (?:ED|ER)\b", re.I)
_OUTPATIENT_TEXT = re.compile(r"\bclinic\b|office visit|outpatient|follow[- ]up visit|telehealth|primary care|"
                              r"annual (?:exam|physical)|well visit", re.I)


def encounter_setting(text: str, metadata: Mapping[str, Any] | None = None) -> str:
    """``"inpatient"``, ``"emergency"``, ``"outpatient"`` or ``"unknown"`` for a note."""
    for key in ("encounter", "setting", "note_type", "encounter_type"):
        value = str((metadata or {}).get(key, "")).strip().lower()
        if not value:
            continue
        words = set(re.findall(r"[a-z]+", value))
        for setting, cues in _SETTING_WORDS.items():
            if words & set(cues) or any(c in value for c in cues if " " in c):
                return setting
    head = text[:600]
    if _INPATIENT_TEXT.search(text):
        return INPATIENT
    if _EMERGENCY_TEXT.search(head):
        return EMERGENCY
    if _OUTPATIENT_TEXT.search(head):
        return OUTPATIENT
    return UNKNOWN


# ------------------------------------------------------------------------------------------------ assertions
_NEG_AFTER = re.compile(r"^\W{0,3}(?:test(?:ing)?\s+|screen\s+|antibod(?:y|ies)\s+|ag\s+|pcr\s+|serology\s+)?"
                        r"(?:was\s+|is\s+|were\s+)?(?:negative|neg\b|\(-\)|-ve\b|non-?reactive|not detected)", re.I)
_NEG_BEFORE = re.compile(r"(?:negative|non-?reactive)\s+(?:\w+\s+){0,1}$", re.I)
_VERSUS = re.compile(r"\b(?:vs\.?|versus)\s+", re.I)
_REPORTER = re.compile(r"\b(?:wife|husband|spouse|partner|mother|father|son|daughter|parents?|caregiver|family|"
                       r"friend|roommate|boyfriend|girlfriend|mom|dad)\b[^.;\n]{0,20}\b(?:reports?|reported|states?|"
                       r"stated|says|said|notes?|noted|noticed|brought|called|describes?|endorses?)\b", re.I)
#: people whose conditions are never the patient's and not a blood relative's (no Z80-Z84 code)
_OTHER_PERSON = re.compile(r"\b(?:wife|husband|spouse|partner|boyfriend|girlfriend|friend|roommate|coworker|"
                           r"co-worker|classmate|neighbou?r|caregiver|contact|teacher)s?\b", re.I)
_BLOOD = re.compile(r"\b(?:mother|father|brother|sister|son|daughter|aunt|uncle|cousin|grand\w+|parents?|"
                    r"siblings?|mom|dad|family history|fhx|fh)\b", re.I)


@dataclass(frozen=True)
class Finding:
    """A mention's assertion refined for coding, and whose finding it is."""

    assertion: Assertion
    other_person: bool = False  # another person's (not a blood relative): never coded, no family Z code


def refine_assertion(text: str, start: int, end: int, sentence: tuple[int, int], assertion: Assertion) -> Finding:
    """Coding-specific corrections of a ConText assertion (see the module doc)."""
    after = text[end : min(sentence[1], end + 40)]
    before = text[max(sentence[0], start - 60) : start]
    if _NEG_AFTER.match(after) or _NEG_BEFORE.search(before):
        return Finding(Assertion.NEGATED)
    clause_before = re.split(r"[,;:(]", before)[-1]
    if assertion is Assertion.FAMILY or _OTHER_PERSON.search(clause_before):
        if _REPORTER.search(before):  # "wife reports cough": the patient's cough
            return Finding(Assertion.PRESENT)
        if _OTHER_PERSON.search(clause_before) and not _BLOOD.search(clause_before):
            return Finding(Assertion.FAMILY, other_person=True)
    if assertion is Assertion.PRESENT and (_VERSUS.match(after.lstrip()) or re.search(r"\b(?:vs\.?|versus)\s+(?:\w+\s+){0,2}$",
                                                                                       before, re.I)):
        return Finding(Assertion.POSSIBLE)
    return Finding(assertion)


def codable_as_present(finding: Finding, setting: str) -> bool:
    """Whether a mention may support coding its condition as the patient's (guidelines II.H, IV.H)."""
    if finding.other_person or finding.assertion in (Assertion.NEGATED, Assertion.FAMILY, Assertion.HYPOTHETICAL):
        return False
    if finding.assertion is Assertion.POSSIBLE:
        return setting in UNCERTAIN_AS_ESTABLISHED
    return True


# ------------------------------------------------------------------------------------------------ family history
#: a family member's disease (ICD-10-CM code range, inclusive, on the first three characters) -> the
#: family-history code; the first range that holds the disease's code wins
FAMILY_HISTORY: tuple[tuple[str, str, str], ...] = (
    ("C15", "C26", "Z80.0"), ("C33", "C34", "Z80.1"), ("C30", "C39", "Z80.2"), ("C50", "C50", "Z80.3"),
    ("C56", "C56", "Z80.41"), ("C61", "C61", "Z80.42"), ("C62", "C62", "Z80.43"), ("C51", "C63", "Z80.49"),
    ("C64", "C64", "Z80.51"), ("C67", "C67", "Z80.52"), ("C65", "C68", "Z80.59"), ("C91", "C95", "Z80.6"),
    ("C81", "C96", "Z80.7"), ("C80", "C80", "Z80.9"), ("C00", "C79", "Z80.8"),
    ("E10", "E13", "Z83.3"), ("E00", "E89", "Z83.49"), ("F10", "F10", "Z81.1"), ("F11", "F19", "Z81.3"),
    ("F70", "F79", "Z81.0"), ("F01", "F99", "Z81.8"), ("G40", "G40", "Z82.0"), ("G00", "G99", "Z82.0"),
    ("I60", "I69", "Z82.3"), ("I20", "I25", "Z82.49"), ("I00", "I99", "Z82.49"), ("J45", "J45", "Z82.5"),
    ("J40", "J47", "Z82.5"), ("M05", "M19", "Z82.61"), ("M00", "M99", "Z82.69"), ("N00", "N29", "Z84.19"),
    ("K00", "K95", "Z83.79"), ("Q00", "Q99", "Z82.79"), ("D50", "D89", "Z83.2"), ("L00", "L99", "Z84.0"),
    ("B20", "B20", "Z83.0"), ("A00", "B99", "Z83.1"), ("H00", "H59", "Z83.518"), ("H60", "H95", "Z83.52"),
)


def family_history_code(code: str) -> str | None:
    """The Z80-Z84 code for a family member's disease coded ``code`` (``"C18.9"`` -> ``"Z80.0"``)."""
    head = code[:3].upper()
    return next((z for lo, hi, z in FAMILY_HISTORY if lo <= head <= hi), None)


# ------------------------------------------------------------------------------------------------ long-term drugs
#: drug names (lower-case, word-bounded) -> the Z79 code of their class (the Alphabetic Index's
#: "Long-term (current) drug therapy (use of)" subterms: anticoagulants, antiplatelet, aspirin, insulin…)
LONG_TERM_DRUGS: dict[str, tuple[str, ...]] = {
    "Z79.01": ("warfarin", "coumadin", "jantoven", "apixaban", "eliquis", "rivaroxaban", "xarelto", "dabigatran",
               "pradaxa", "edoxaban", "savaysa", "enoxaparin", "lovenox", "fondaparinux", "anticoagulation",
               "anticoagulant", "anticoagulants", "doac"),
    "Z79.02": ("clopidogrel", "plavix", "prasugrel", "effient", "ticagrelor", "brilinta", "cilostazol",
               "dipyridamole", "antiplatelet"),
    "Z79.82": ("aspirin", "asa", "baby aspirin"),
    "Z79.4": ("insulin", "lantus", "glargine", "humalog", "lispro", "novolog", "aspart", "levemir", "detemir",
              "tresiba", "degludec", "nph"),
    "Z79.84": ("metformin", "glucophage", "glipizide", "glyburide", "glimepiride", "sitagliptin", "januvia",
               "linagliptin", "pioglitazone", "empagliflozin", "jardiance", "dapagliflozin", "farxiga",
               "canagliflozin", "invokana"),
    "Z79.85": ("liraglutide", "victoza", "semaglutide", "ozempic", "dulaglutide", "trulicity", "exenatide",
               "tirzepatide", "mounjaro"),
    "Z79.1": ("ibuprofen", "naproxen", "meloxicam", "celecoxib", "diclofenac", "indomethacin", "nsaid", "nsaids"),
    "Z79.52": ("prednisone", "prednisolone", "methylprednisolone", "dexamethasone"),
    "Z79.51": ("fluticasone inhaler", "budesonide inhaler", "inhaled corticosteroid", "inhaled steroid",
               "beclomethasone", "advair", "symbicort"),
    "Z79.891": ("oxycodone", "hydrocodone", "hydromorphone", "morphine", "fentanyl patch", "tramadol", "oxycontin",
                "percocet", "norco"),
    "Z79.3": ("oral contraceptive", "oral contraceptives", "birth control pill", "birth control pills", "ocp"),
    "Z79.810": ("tamoxifen", "raloxifene"),
    "Z79.811": ("anastrozole", "letrozole", "exemestane"),
    "Z79.83": ("alendronate", "fosamax", "risedronate", "ibandronate"),
    "Z79.631": ("methotrexate",),
    "Z79.620": ("adalimumab", "humira", "infliximab", "remicade", "etanercept", "enbrel"),
    "Z79.621": ("tacrolimus", "cyclosporine"),
}
_DRUG_INDEX = {name: code for code, names in LONG_TERM_DRUGS.items() for name in names}
_DRUG_RE = re.compile(r"\b(" + "|".join(sorted((re.escape(n) for n in _DRUG_INDEX), key=len, reverse=True)) + r")\b",
                      re.I)
_ON_DRUG = re.compile(r"\b(?:on|takes|taking|uses|using|maintained on|continues|continued|chronic|long[- ]term|"
                      r"home|current|daily|remains on|compliant with)\b[^.;\n]{0,40}$", re.I)
_MED_LIST = re.compile(r"(?:^|\n)\s*(?:home |current |outpatient |discharge )?(?:medications?|meds|rx)\s*:", re.I)
_DOSE_AFTER = re.compile(r"^[^.;\n]{0,25}?\b(?:\d+(?:\.\d+)?\s*(?:mg|mcg|g|units?|iu)\b|daily|bid|tid|qid|qd|qhs|"
                         r"nightly|weekly|once a day|twice a day|po\b)", re.I)
_NOT_CURRENT = re.compile(r"\b(?:start(?:ed|ing)?|initiat\w+|given|gave|received|administered|load(?:ed|ing)?|"
                          r"bolus|will|plan(?:ned)?|consider\w*|recommend\w*|prescrib\w+ today|new(?:ly)?|"
                          r"stop(?:ped)?|discontinu\w+|held|hold(?:ing)?|allerg\w*|intoleran\w*|not on|no|denies|"
                          r"off|without|instead of|switch(?:ed)? from|avoid\w*|mother|father|wife|husband)\b"
                          r"[^.;\n]{0,25}$", re.I)


def long_term_drug_codes(text: str, sentence_spans: Sequence[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """``(Z79 code, start, end)`` for drugs the note says the patient is on ("on warfarin", a medication
    list, "metformin 500 mg BID"); not for drugs started, given once, stopped, held or refused."""
    out: list[tuple[str, int, int]] = []
    med_sections = [m.end() for m in _MED_LIST.finditer(text)]
    for m in _DRUG_RE.finditer(text):
        name = m.group(1).lower()
        if name == "asa" and m.group(1) != "ASA":
            continue
        s0 = next((s for s, e in sentence_spans if s <= m.start() < e), max(0, m.start() - 80))
        before = text[s0 : m.start()]
        if _NOT_CURRENT.search(before):
            continue
        in_list = any(0 <= m.start() - p <= 400 and "\n\n" not in text[p : m.start()] for p in med_sections)
        if in_list or _ON_DRUG.search(before) or _DOSE_AFTER.match(text[m.end() :]):
            code = _DRUG_INDEX[name]
            if out and out[-1][0] == code and m.start() - out[-1][2] <= 30:
                continue  # "insulin glargine": one drug, one statement
            out.append((code, m.start(), m.end()))
    return out


# ------------------------------------------------------------------------------------------------ status codes
#: stated statuses -> code (a category ending in "-" is completed for laterality by the agent)
STATUS: tuple[tuple[str, str], ...] = (
    (r"\b(?:permanent |dual[- ]chamber |cardiac )?pacemaker\b(?! (?:placement|insertion|implantation) (?:today|planned))",
     "Z95.0"),
    (r"\b(?:AICD|implantable cardioverter[- ]defibrillator|ICD in place)\b", "Z95.810"),
    (r"\b(?:s/p|status post|history of|hx of)\s+CABG\b|\bCABG\s+(?:in|x\s?\d)", "Z95.1"),
    (r"\bcoronary stents?\b|\b(?:s/p|status post)\s+(?:PCI|stent)|\bstents? (?:to|in) the (?:LAD|RCA|LCx|circumflex)",
     "Z95.5"),
    (r"\b(?:kidney|renal) transplant\b", "Z94.0"),
    (r"\bliver transplant\b", "Z94.4"),
    (r"\bon (?:hemo)?dialysis\b|\bhemodialysis\b|\bHD (?:M/W/F|MWF|TTS|T/Th/S)\b", "Z99.2"),
    (r"\btracheostomy\b", "Z93.0"),
    (r"\bcolostomy\b", "Z93.3"),
    (r"\bileostomy\b", "Z93.2"),
    (r"\b(?:(?:former|past|previous) smoker|ex-?smoker)\b|\bquit smoking\b|\bremote (?:tobacco|smoking) history\b",
     "Z87.891"),
    (r"\b(?:current|active|daily) smoker\b|\bsmokes \d+|\b\d+ (?:cigarettes|ppd)\b|\bsmokes (?:a )?(?:pack|cigarettes)",
     "F17.210"),
    (r"\b(?:allerg(?:y|ic) to (?:penicillin|pcn|amoxicillin)|(?:penicillin|pcn) allergy)\b", "Z88.0"),
    (r"\b(?:allerg(?:y|ic) to sulfa|sulfa allergy)\b", "Z88.2"),
    (r"\bDNR\b|\bdo not resuscitate\b", "Z66"),
    (r"\bwheelchair[- ](?:bound|dependent|user)\b|\buses a wheelchair\b", "Z99.3"),
    (r"\binsulin pump\b", "Z96.41"),
    (r"\b(?:s/p|status post|history of)\s+(?:(?:right|left|bilateral)\s+)?(?:total\s+)?knee "
     r"(?:replacement|arthroplasty)|\b(?:TKA|TKR)\b", "Z96.65"),
    (r"\b(?:s/p|status post|history of)\s+(?:(?:right|left|bilateral)\s+)?(?:total\s+)?hip "
     r"(?:replacement|arthroplasty)|\b(?:THA|THR)\b", "Z96.64"),
)
_STATUS_RE = [(re.compile(p, re.I if not p.startswith(r"\bDNR") else 0), code) for p, code in STATUS]


def status_codes(text: str) -> list[tuple[str, int, int]]:
    """``(code, start, end)`` of the status Z codes (and tobacco use) the note states."""
    out = []
    for rx, code in _STATUS_RE:
        for m in rx.finditer(text):
            out.append((code, m.start(), m.end()))
    return out


__all__ = ["EMERGENCY", "FAMILY_HISTORY", "INPATIENT", "LONG_TERM_DRUGS", "OUTPATIENT", "STATUS",
           "UNCERTAIN_AS_ESTABLISHED", "UNKNOWN", "Finding", "codable_as_present", "encounter_setting",
           "family_history_code", "long_term_drug_codes", "refine_assertion", "status_codes"]
