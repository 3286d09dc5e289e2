"""Triage features read from note text, and the small fitted acuity model that scores them.

The model is a multinomial logistic regression over features that only the note text gives (vitals,
age, sex, mode of arrival, mental status, pain, red flags, chief-complaint words). It is fitted on the
KTAS public data by ``medslm train triage-acuity`` (:mod:`medslm.training.triage_acuity`) and ships as
the ``triage-acuity`` artifact (``model.json``, a few KB). Inference is pure Python: no scikit-learn at
run time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from medslm.agents.red_flags import find_red_flags, is_negated
from medslm.agents.vitals import Vitals, extract_vitals
from medslm.errors import ConfigurationError
from medslm.records import RedFlag

__all__ = ["AcuityModel", "TriageFeatures", "note_features", "tokens"]


_SYNONYMS = {
    "abd": "abdominal", "abdomen": "abdominal", "abdominal": "abdominal", "lt": "left", "rt": "right",
    "sob": "dyspnea", "dyspnoea": "dyspnea", "breath": "dyspnea", "cp": "chest", "ha": "headache",
    "lbp": "back", "n/v": "vomiting", "nausea": "vomiting", "vomit": "vomiting", "febrile": "fever",
    "seizure": "seizure", "convulsion": "seizure", "sz": "seizure", "uti": "urinary", "dizzy": "dizziness",
    "vertigo": "dizziness", "laceration": "wound", "lac": "wound", "mental": "mental", "confusion": "mental",
    "haematemesis": "hematemesis", "melaena": "melena",
}
_WORD = re.compile(r"[a-z][a-z/\-]+")
_AMBULANCE = re.compile(r"\b(?:ambulance|EMS|paramedics?|119|911|helicopter|stretcher)\b", re.I)
_WALKIN = re.compile(r"\b(?:walk(?:ed|s|ing)?[- ]in|ambulatory|on\s+foot|walked)\b", re.I)
_INJURY = re.compile(r"\b(?:injur\w*|trauma\w*|fall|fell|wound|fracture|laceration|accident|collision|MVC|MVA|"
                     r"assault\w*|burn|bite|sprain|contusion)\b", re.I)
_CC = re.compile(r"(?:chief\s+complaint|CC|presents?\s+with|complain(?:s|ing)?\s+of|c/o)\s*[:\-]?\s*([^.\n]{1,120})", re.I)


def tokens(text: str) -> list[str]:
    """Normalized word tokens (lower case, a few clinical abbreviations mapped)."""
    out = []
    for w in _WORD.findall(text.lower().replace(".", " ")):
        w = w.strip("-/")
        if len(w) < 2:
            continue
        w = _SYNONYMS.get(w, w)
        if w.endswith("s") and len(w) > 4 and not w.endswith("ss") and not w.endswith("is"):
            w = w[:-1]
        out.append(w)
    return out


@dataclass(frozen=True)
class TriageFeatures:
    """Named numeric features of one note, with the vitals and red flags they came from."""

    values: dict[str, float]
    vitals: Vitals
    red_flags: tuple[RedFlag, ...]
    complaint_tokens: tuple[str, ...]


def _complaint_text(text: str) -> str:
    m = _CC.search(text)
    return m.group(1) if m else text[:200]


def note_features(text: str, vocabulary: Sequence[str] = ()) -> TriageFeatures:
    """The features the acuity model reads; ``vocabulary`` lists the complaint words it knows."""
    v = extract_vitals(text)
    flags = tuple(find_red_flags(text, v))
    f: dict[str, float] = {}

    def num(name: str, default: float, lo: float, hi: float) -> float | None:
        x = v.value(name)
        f[f"{name}_missing"] = 1.0 if x is None else 0.0
        f[name] = (default if x is None else min(max(x, lo), hi))
        return x

    age = num("age", 50, 0, 110)
    num("sbp", 130, 50, 250)
    num("dbp", 80, 30, 150)
    num("hr", 85, 30, 200)
    num("rr", 19, 6, 50)
    num("temp_c", 36.6, 33, 42)
    num("spo2", 97, 60, 100)
    sbp, hr, rr, temp, spo2 = (v.value(k) for k in ("sbp", "hr", "rr", "temp_c", "spo2"))
    f["age_65"] = float(age is not None and age >= 65)
    f["male"] = float(v.value("sex") == 2)
    f["spo2_lt94"] = float(spo2 is not None and spo2 < 94)
    f["sbp_lt100"] = float(sbp is not None and sbp < 100)
    f["sbp_gt180"] = float(sbp is not None and sbp > 180)
    f["hr_gt110"] = float(hr is not None and hr > 110)
    f["hr_lt50"] = float(hr is not None and hr < 50)
    f["rr_gt22"] = float(rr is not None and rr > 22)
    f["fever"] = float(temp is not None and temp >= 38.0)
    mental = v.value("mental") or 1
    for k in (2, 3, 4):
        f[f"mental_{k}"] = float(mental == k)
    pain = v.value("pain")
    f["pain_nrs"] = pain or 0.0
    f["pain_missing"] = float(pain is None)
    f["pain_ge7"] = float(pain is not None and pain >= 7)
    f["ambulance"] = float(any(not is_negated(text, m.start()) for m in _AMBULANCE.finditer(text)))
    f["walk_in"] = float(bool(_WALKIN.search(text)))
    f["injury"] = float(any(not is_negated(text, m.start()) for m in _INJURY.finditer(text)))
    worst = min((fl.max_level for fl in flags), default=6)
    for k in (1, 2, 3):
        f[f"flag_le{k}"] = float(worst <= k)
    f["n_flags"] = float(len(flags))
    cc_tokens = tuple(tokens(_complaint_text(text)))
    known = set(cc_tokens)
    for w in vocabulary:
        f[f"w_{w}"] = float(w in known)
    return TriageFeatures(values=f, vitals=v, red_flags=flags, complaint_tokens=cc_tokens)


class AcuityModel:
    """Multinomial logistic regression over :func:`note_features`, loaded from a JSON file."""

    def __init__(self, params: dict) -> None:
        try:
            self.levels: tuple[int, ...] = tuple(int(x) for x in params["levels"])
            self.features: tuple[str, ...] = tuple(params["features"])
            self.mean: tuple[float, ...] = tuple(params["mean"])
            self.scale: tuple[float, ...] = tuple(params["scale"])
            self.coef: tuple[tuple[float, ...], ...] = tuple(tuple(r) for r in params["coef"])
            self.intercept: tuple[float, ...] = tuple(params["intercept"])
            self.vocabulary: tuple[str, ...] = tuple(params.get("vocabulary", ()))
            self.meta: dict = dict(params.get("meta", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"acuity model parameters are malformed ({exc!r}); retrain it "
                                     "with `medslm train triage-acuity`") from None
        if not (len(self.features) == len(self.mean) == len(self.scale)) or any(
            len(r) != len(self.features) for r in self.coef
        ):
            raise ConfigurationError("acuity model parameters have inconsistent sizes; retrain it with "
                                     "`medslm train triage-acuity`")

    @classmethod
    def default(cls, root: str | None = None) -> AcuityModel:
        """The ``triage-acuity`` artifact: the user's retrained one (``root`` / ``$MEDSLM_ARTIFACTS``) or
        the one fitted on KTAS that ships with medslm."""
        from medslm.artifacts import artifact_dir

        return _load_acuity(str(artifact_dir("triage-acuity", root) / "model.json"))

    def contributions(self, values: dict[str, float], level: int) -> dict[str, float]:
        """How much each feature pushes the logit of ``level`` above the mean logit of all levels."""
        i = self.levels.index(level)
        k = len(self.levels)
        out = {}
        for j, (n, m, s) in enumerate(zip(self.features, self.mean, self.scale, strict=True)):
            x = (values.get(n, 0.0) - m) / s
            out[n] = x * (self.coef[i][j] - sum(r[j] for r in self.coef) / k)
        return out

    def predict_proba(self, values: dict[str, float]) -> dict[int, float]:
        x = [(values.get(n, 0.0) - m) / s for n, m, s in zip(self.features, self.mean, self.scale, strict=True)]
        z = [b + sum(c * xi for c, xi in zip(row, x, strict=True)) for row, b in zip(self.coef, self.intercept, strict=True)]
        top = max(z)
        e = [math.exp(zi - top) for zi in z]
        t = sum(e)
        return {lvl: ei / t for lvl, ei in zip(self.levels, e, strict=True)}


@lru_cache(maxsize=4)
def _load_acuity(path: str) -> AcuityModel:
    with open(path, encoding="utf-8") as fh:
        return AcuityModel(json.load(fh))
