"""Common clinical abbreviations and the concept names they stand for.

Lookup expands them whatever their case ("mi" as a query means myocardial infarction); the lexicon
matcher only takes them in a note when written as listed (upper case), so "so" or "pe" in prose stay
words. Each expansion must be a name (label, synonym or inclusion term) of a concept in the embedded
graph; a test checks that every entry resolves.
"""

from __future__ import annotations

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

__all__ = ["ABBREVIATIONS"]
