"""KTAS triage data beyond the reader: the note styles, the dev split, the metrics and the classical fit.

The lowest layer of the triage evaluation and of the triage recipes (``medslm.evals.triage`` and
``medslm.training.triage_*`` both import it; it imports neither), so that evaluation and training do not
import each other. The KTAS reader itself lives with the other readers in :mod:`medslm.evals.datasets`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.evals.datasets import _num, ktas_note, read_ktas

__all__ = ["NOTE_STYLES", "fit_triage_model", "ktas_note", "ktas_note_styled", "read_ktas", "split_dev",
           "triage_metrics", "write_triage_model"]

# ---- varied note styles (training-time augmentation and a robustness check) ----------------------------
#: Styles a KTAS row can be written in: the evaluation protocol's plain template ("standard") and two
#: renderings closer to how ED notes are written (abbreviated "terse", narrative "prose").
NOTE_STYLES = ("standard", "terse", "prose")
_ARRIVAL_TERSE = {1: ["walk-in", "ambulatory", "walked in"], 2: ["via EMS", "EMS", "by ambulance"],
                  3: ["private vehicle", "POV", "brought by family"], 4: ["private ambulance", "via ambulance"],
                  5: ["other transport"], 6: ["other transport"], 7: ["other transport"]}
_ARRIVAL_PROSE = {1: "walked into the ED", 2: "was brought in by ambulance", 3: "was driven in by family",
                  4: "arrived by private ambulance", 5: "arrived", 6: "arrived", 7: "arrived"}
_MENTAL_TERSE = {1: ["A&O", "alert", "AOx3", "alert, oriented"], 2: ["responds to voice", "drowsy, responds to verbal",
                                                                        "confused"],
                 3: ["responds to pain only", "AVPU P"], 4: ["unresponsive", "AVPU U"]}
_MENTAL_PROSE = {1: "alert and oriented", 2: "drowsy and responds only to voice", 3: "responds only to painful stimuli",
                 4: "unresponsive"}


def ktas_note_styled(row: dict[str, Any], style: str = "standard", seed: int = 0) -> str:
    """One KTAS row written in ``style`` (see :data:`NOTE_STYLES`); ``seed`` varies wording within a style.

    Same facts as :func:`ktas_note` (triage-time columns only), in other words and orders.
    """
    import random

    if style == "standard":
        return ktas_note(row)
    rng = random.Random(seed)
    age = _num(row.get("Age"))
    male = int(row.get("Sex") or 0) == 2
    cc = str(row.get("Chief_complain") or "").strip() or "not recorded"
    arrival = int(row.get("Arrival mode") or 0)
    mental = int(row.get("Mental") or 1)
    injury = int(row.get("Injury") or 1) == 2
    nrs = _num(row.get("NRS_pain"))
    pain = int(row.get("Pain") or 0) == 1
    vit: list[tuple[str, str]] = []
    sbp, dbp = _num(row.get("SBP")), _num(row.get("DBP"))
    if sbp is not None and dbp is not None:
        vit.append(("bp", f"{int(sbp)}/{int(dbp)}"))
    for col, key in (("HR", "hr"), ("RR", "rr"), ("BT", "t"), ("Saturation", "spo2")):
        x = _num(row.get(col))
        if x is not None:
            vit.append((key, f"{x:.1f}" if key == "t" else f"{x:.0f}"))
    if style == "terse":
        who = (f"{int(age)} y/o {'M' if male else 'F'}" if age is not None else ("Adult M" if male else "Adult F"))
        parts = [f"{who}, {rng.choice(_ARRIVAL_TERSE.get(arrival, ['arrived']))}."]
        parts.append(f"{rng.choice(['CC:', 'C/o', 'Presents with'])} {cc}" + (" after injury." if injury else "."))
        parts.append(rng.choice(_MENTAL_TERSE.get(mental, ["alert"])) + ".")
        if pain:
            parts.append(f"Pain {int(nrs)}/10." if nrs is not None else "Reports pain.")
        else:
            parts.append(rng.choice(["No pain.", "Denies pain.", "Pain 0/10."]))
        names = {"bp": "BP", "hr": rng.choice(["HR", "pulse"]), "rr": "RR", "t": rng.choice(["T", "Temp"]),
                 "spo2": rng.choice(["SpO2", "sat"])}
        if vit:
            if rng.random() < 0.3:
                rng.shuffle(vit)
            parts.append(" ".join(f"{names[k]} {v}{'%' if k == 'spo2' else ''}" for k, v in vit) + ".")
        return " ".join(parts)
    if style == "prose":
        noun = "man" if male else "woman"
        pron = "He" if male else "She"
        who = f"A {int(age)}-year-old {noun}" if age is not None else f"An adult {noun}"
        opener = f"{who} {_ARRIVAL_PROSE.get(arrival, 'arrived')} with {cc}"
        parts = [opener + (", injured earlier today." if injury else ".")]
        s = f"{pron} is {_MENTAL_PROSE.get(mental, 'alert')}"
        if pain:
            s += (f" and rates the pain {int(nrs)} out of 10." if nrs is not None else " and reports pain.")
        else:
            s += " and denies pain."
        parts.append(s)
        names = {"bp": "blood pressure", "hr": "heart rate", "rr": "respiratory rate", "t": "temperature",
                 "spo2": "oxygen saturation"}
        if vit:
            parts.append("Vital signs: " + ", ".join(
                f"{names[k]} {v}{' C' if k == 't' else ''}{'%' if k == 'spo2' else ''}" for k, v in vit) + ".")
        return " ".join(parts)
    from medslm.errors import UnknownNameError

    raise UnknownNameError("KTAS note style", style, list(NOTE_STYLES))



def triage_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Exact accuracy, quadratic-weighted kappa, under- and over-triage rates (1 = most urgent)."""
    from sklearn.metrics import cohen_kappa_score

    n = len(y_true)
    return {
        "n": n,
        "accuracy": sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / n,
        "qwk": float(cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=[1, 2, 3, 4, 5])),
        "under_triage": sum(p > t for t, p in zip(y_true, y_pred, strict=True)) / n,
        "over_triage": sum(p < t for t, p in zip(y_true, y_pred, strict=True)) / n,
    }


# --------------------------------------------------------------------------------------- fitting

def _vocabulary(rows: Sequence[dict[str, Any]], min_count: int = 4) -> list[str]:
    from collections import Counter

    from medslm.agents.triage_features import tokens

    c: Counter[str] = Counter()
    for r in rows:
        c.update(set(tokens(str(r.get("Chief_complain") or ""))))
    return sorted(w for w, k in c.items() if k >= min_count)


def _design(rows: Sequence[dict[str, Any]], vocab: Sequence[str]) -> tuple[list[str], list[list[float]]]:
    from medslm.agents.triage_features import note_features

    feats = [note_features(r["note"], vocab).values for r in rows]
    names = list(feats[0])
    return names, [[f[n] for n in names] for f in feats]


def fit_triage_model(rows: Sequence[dict[str, Any]], C: float = 0.3) -> dict[str, Any]:
    """Fit the acuity logistic regression on ``rows`` and return its JSON-ready parameters."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    vocab = _vocabulary(rows)
    names, X = _design(rows, vocab)
    Xa = np.asarray(X, dtype=float)
    y = np.asarray([r["expert"] for r in rows])
    mean = Xa.mean(axis=0)
    scale = Xa.std(axis=0)
    scale[scale < 1e-6] = 1.0  # constant (or nearly: it would round to 0 in the JSON) columns
    clf = LogisticRegression(C=C, max_iter=2000, class_weight=None)
    clf.fit((Xa - mean) / scale, y)
    levels = [int(c) for c in clf.classes_]
    coef = clf.coef_.tolist()
    intercept = clf.intercept_.tolist()
    if len(levels) == 2:  # binary fit: one row for the second class; softmax([0, z]) is its sigmoid
        coef = [[0.0] * len(names), coef[0]]
        intercept = [0.0, intercept[0]]
    # levels absent from the training rows get a very low prior so that the model still covers 1-5
    full_coef, full_int = [], []
    for lvl in (1, 2, 3, 4, 5):
        if lvl in levels:
            i = levels.index(lvl)
            full_coef.append([round(c, 5) for c in coef[i]])
            full_int.append(round(intercept[i], 5))
        else:
            full_coef.append([0.0] * len(names))
            full_int.append(-20.0)
    return {
        "levels": [1, 2, 3, 4, 5],
        "features": names,
        "mean": [round(float(m), 6) for m in mean],
        "scale": [round(float(s), 6) for s in scale],
        "coef": full_coef,
        "intercept": full_int,
        "vocabulary": vocab,
        "meta": {"fitted_on": "KTAS data_dev.csv (Moon et al. 2019)", "n": len(rows), "C": C},
    }


def write_triage_model(params: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(params, separators=(",", ":")), encoding="utf-8")
    return p


def split_dev(rows: Sequence[dict[str, Any]], *, seed: int = 0, frac: float = 0.2
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A stratified ``frac`` dev split of ``rows`` (by expert level): ``(fit_rows, dev_rows)``."""
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedShuffleSplit

    y = np.asarray([int(r["expert"]) for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            fit_idx, dev_idx = next(StratifiedShuffleSplit(1, test_size=frac, random_state=seed).split(y, y))
        except ValueError:  # a level with a single row cannot be stratified: plain shuffle split
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(rows))
            cut = max(1, round(frac * len(rows)))
            dev_idx, fit_idx = order[:cut], order[cut:]
    return [rows[i] for i in sorted(fit_idx)], [rows[i] for i in sorted(dev_idx)]
