"""Common clinical abbreviations and the concept names they stand for.

Lookup expands them whatever their case ("mi" as a query means myocardial infarction); the lexicon
matcher only takes them in a note when written as listed (upper case), so "so" or "pe" in prose stay
words. Each expansion must be a name (label, synonym or inclusion term) of a concept in the embedded
graph; a test checks that every entry resolves.
"""

from __future__ import annotations

import re

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
        if long and len(long) > len(short) and " " in long or (long and "-" in long):
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


__all__ = ["ABBREVIATIONS", "expand", "find_abbreviations"]
