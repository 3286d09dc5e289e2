"""Vital signs and triage facts read from free text, each with the span it came from.

Rules only (regular expressions and plausibility ranges): fast, deterministic and shared by the triage
agent, the verifier (red flags must agree with the vitals) and anyone else who needs numbers from a
note. Values outside physiological ranges are dropped rather than guessed.

>>> v = extract_vitals("71-year-old man, BP 85/50, HR 128, RR 24, T 38.6 C, SpO2 89% on room air")
>>> (v.sbp.value, v.hr.value, v.spo2.value, v.temp_c.value, v.age.value)
(85.0, 128.0, 89.0, 38.6, 71.0)
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from medslm.records import Span

__all__ = ["MENTAL_LEVELS", "Measurement", "Vitals", "extract_vitals"]

#: Mental status on the AVPU scale, as an ordinal (1 alert … 4 unresponsive).
MENTAL_LEVELS = {1: "alert", 2: "verbal", 3: "pain", 4: "unresponsive"}


class Measurement(BaseModel):
    """One value read from the note, with its unit and where it was found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="sbp, dbp, hr, rr, temp_c, spo2, gcs, pain, age, mental, sex")
    value: float = Field(description="the value in the canonical unit (temperature in °C)")
    unit: str = ""
    span: Span = Field(description="where the value was read in the note")


class Vitals(BaseModel):
    """The triage-relevant facts of a note; a field is None when the note does not state it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sbp: Measurement | None = None
    dbp: Measurement | None = None
    hr: Measurement | None = None
    rr: Measurement | None = None
    temp_c: Measurement | None = None
    spo2: Measurement | None = None
    gcs: Measurement | None = None
    pain: Measurement | None = Field(default=None, description="numeric rating scale 0-10")
    age: Measurement | None = None
    sex: Measurement | None = Field(default=None, description="1 female, 2 male")
    mental: Measurement | None = Field(default=None, description="AVPU: 1 alert … 4 unresponsive")

    def measurements(self) -> Iterator[Measurement]:
        for name in type(self).model_fields:
            m = getattr(self, name)
            if m is not None:
                yield m

    def value(self, name: str) -> float | None:
        m = getattr(self, name)
        return None if m is None else m.value


_SEP = r"\s*(?:[:=]|of|is|was|at)?\s*"
_NUM = r"(\d{1,3}(?:[.,]\d)?)"

# name -> (pattern, group of value, unit, plausible range)
_PATTERNS: dict[str, tuple[re.Pattern[str], float, float, str]] = {
    "hr": (
        re.compile(r"\b(?:HR|heart\s+rate|pulse(?:\s+rate)?|PR)" + _SEP + r"(\d{2,3})\b", re.I),
        20, 250, "/min",
    ),
    "rr": (
        re.compile(r"\b(?:RR|resp(?:iratory)?\s+rate|respirations?|resp)" + _SEP + r"(\d{1,2})\b", re.I),
        4, 70, "/min",
    ),
    "spo2": (
        re.compile(
            r"\b(?:SpO2|SaO2|O2\s*sat(?:uration)?s?|sat(?:uration)?s?|oxygen\s+saturation|pulse\s+ox(?:imetry)?)"
            + _SEP + r"(\d{2,3})\s*%?", re.I),
        40, 100, "%",
    ),
    "gcs": (re.compile(r"\b(?:GCS|glasgow\s+coma\s+(?:scale|score))" + _SEP + r"(\d{1,2})\b", re.I), 3, 15, ""),
    "sbp": (re.compile(r"\bSBP" + _SEP + r"(\d{2,3})\b", re.I), 40, 300, "mmHg"),
    "dbp": (re.compile(r"\bDBP" + _SEP + r"(\d{2,3})\b", re.I), 20, 200, "mmHg"),
}
_BP = re.compile(r"\b(?:BP|blood\s+pressure|B/P)" + _SEP + r"(\d{2,3})\s*/\s*(\d{2,3})", re.I)
_TEMP = re.compile(
    r"\b(?:T|temp(?:erature)?|BT|body\s+temp(?:erature)?|Tmax)" + _SEP + _NUM + r"\s*(°\s*[CF]|degrees?\s*[CF]?|[CF]\b)?",
    re.I,
)
_PAIN = re.compile(r"\b(?:pain\s+(?:score|scale|rating)|NRS(?:\s+pain)?)" + _SEP + r"(\d{1,2})\b", re.I)
_PAIN_X10 = re.compile(r"\b(\d{1,2})\s*(?:/|out\s+of)\s*10\b", re.I)
_AGE = re.compile(
    r"\b(\d{1,3})\s*[- ]?(?:years?|yrs?|y)[- ]?old\b|\b(\d{1,3})\s*(?:yo|y/o|y\.o\.|yr\s+old)\b|\bage[d]?\s*[:=]?\s*(\d{1,3})\b",
    re.I,
)
_FEMALE = re.compile(r"\b(?:female|woman|lady|girl|she|her|F)\b")
_MALE = re.compile(r"\b(?:male|man|gentleman|boy|he|his|M)\b")
_MENTAL = [
    (4, re.compile(r"\b(?:unresponsive|unconscious|comatose|no\s+response|responds?\s+to\s+nothing|AVPU\s*[:=]?\s*U)\b", re.I)),
    (3, re.compile(r"\b(?:responds?\s+(?:only\s+)?to\s+pain(?:ful\s+stimuli)?|pain\s+response|AVPU\s*[:=]?\s*P)\b", re.I)),
    (2, re.compile(
        r"\b(?:responds?\s+(?:only\s+)?to\s+(?:voice|verbal)|verbal\s+response|confused|disoriented|drowsy|lethargic|obtunded|"
        r"altered\s+mental|mental\s+(?:status\s+)?change|AVPU\s*[:=]?\s*V)\b", re.I)),
    (1, re.compile(r"\b(?:alert|A&O|AOx\s*[34]|oriented|AVPU\s*[:=]?\s*A)\b", re.I)),
]
_NEG_BEFORE = re.compile(r"\b(?:no|not|denies|without|negative\s+for)\s+(?:\w+\s+){0,2}$", re.I)


def _num(s: str) -> float:
    return float(s.replace(",", "."))


def _first(pattern: re.Pattern[str], text: str, lo: float, hi: float, group: int = 1) -> tuple[float, Span] | None:
    for m in pattern.finditer(text):
        try:
            v = _num(m.group(group))
        except (TypeError, ValueError):
            continue
        if lo <= v <= hi:
            return v, Span(start=m.start(), end=m.end())
    return None


def extract_vitals(text: str) -> Vitals:
    """Read vital signs, age, sex and mental status from ``text`` (first plausible mention of each)."""
    found: dict[str, Measurement] = {}

    def put(name: str, value: float, span: Span, unit: str = "") -> None:
        if name not in found:
            found[name] = Measurement(name=name, value=value, unit=unit, span=span.model_copy(update={"label": name}))

    for m in _BP.finditer(text):
        s, d = float(m.group(1)), float(m.group(2))
        if 40 <= s <= 300 and 20 <= d <= 200 and d < s:
            put("sbp", s, Span(start=m.start(), end=m.end()), "mmHg")
            put("dbp", d, Span(start=m.start(), end=m.end()), "mmHg")
            break
    for name, (pat, lo, hi, unit) in _PATTERNS.items():
        hit = _first(pat, text, lo, hi)
        if hit:
            put(name, hit[0], hit[1], unit)

    for m in _TEMP.finditer(text):
        v = _num(m.group(1))
        unit = (m.group(2) or "").upper()
        if "F" in unit or 90 <= v <= 110:
            v = round((v - 32) * 5 / 9, 1)
        if 30 <= v <= 44:
            put("temp_c", v, Span(start=m.start(), end=m.end()), "°C")
            break

    for pat in (_PAIN, _PAIN_X10):
        hit = _first(pat, text, 0, 10)
        if hit:
            put("pain", hit[0], hit[1], "/10")
            break

    for m in _AGE.finditer(text):
        g = next(x for x in m.groups() if x)
        if 0 <= int(g) <= 120:
            put("age", float(g), Span(start=m.start(), end=m.end()), "y")
            break

    fem, mal = _FEMALE.search(text), _MALE.search(text)
    if fem and (not mal or fem.start() < mal.start()):
        put("sex", 1, Span(start=fem.start(), end=fem.end()))
    elif mal:
        put("sex", 2, Span(start=mal.start(), end=mal.end()))

    for level, pat in _MENTAL:
        for m in pat.finditer(text):
            if level >= 2 and _NEG_BEFORE.search(text[max(0, m.start() - 40) : m.start()]):
                continue  # "no altered mental status", "not confused"
            put("mental", level, Span(start=m.start(), end=m.end()))
            break
        if "mental" in found:
            break

    return Vitals(**found)
