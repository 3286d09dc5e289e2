"""Triage on KTAS (Moon et al. 2019): the note text, the acuity model fit, and the evaluation.

Protocol: stratified 5-fold cross-validation on ``ktas/data_dev.csv`` (887 visits; the other 30 % are
held out by the data provider). In each fold the acuity model is fitted on the four training folds; the
triage specialist (``triage-slm``) is fine-tuned on 80 % of them, and its fusion weight and the
under-triage cost are chosen on the other 20 % (:func:`cv_triage_slm`, nested); the held-out fold is
scored by the agent's own decision code (red flags, cost-sensitive decision). The nurses' ``KTAS_RN`` is
scored against ``KTAS_expert`` on the same rows.

The note text is built from the triage-time columns only (age, sex, arrival mode, injury, chief
complaint, mental status, pain, vitals); ``Diagnosis in ED``, disposition and ``KTAS_RN`` never enter it.
:func:`ktas_note_styled` writes the same facts in an abbreviated or a narrative style (training-time
augmentation, and a check that the agent does not depend on the template).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.evals.datasets import _num, ktas_note, read_ktas  # the KTAS reader lives with the other readers

__all__ = [
    "NOTE_STYLES",
    "ablation",
    "evaluate_triage",
    "fit_triage_model",
    "ktas_note",
    "ktas_note_styled",
    "read_ktas",
    "triage_metrics",
]

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


# ------------------------------------------------------------------------------------ evaluation

def evaluate_triage(data_dir: str | Path | None = None, limit: int | None = None, *, folds: int = 5,
                    use_slm: bool = True, under_triage_cost: float | None = None, seed: int = 0,
                    cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Cross-validated triage figures on KTAS: nurses, rules-only, the specialist alone, fitted model and agent.

    Rules-only and the acuity model are refitted per fold here; the specialist and the agent come from
    the nested cross-validation :func:`cv_triage_slm` (same folds: stratified, same seed), so that no
    figure is in sample. ``under_triage_cost`` fixes the cost of ``model+rules`` (default: the agent's).
    Returns ``{"protocol": ..., "rows": {system: metrics}, "latency_ms": {...}}``.
    """
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from medslm.agents.triage import TriageAgent, decide
    from medslm.agents.triage_features import AcuityModel, note_features

    # cross-validation needs rows of several levels in every fold: a small limit still takes MIN_CV_ROWS,
    # spread over the file (the first rows of data_dev.csv are few levels)
    rows = read_ktas(data_dir)
    quick = limit is not None and limit < len(rows)
    if quick:
        n = max(int(limit or 0), MIN_CV_ROWS)
        rows = rows[:: max(1, len(rows) // n)][:n]
    y = np.asarray([r["expert"] for r in rows])
    u_cost = under_triage_cost if under_triage_cost is not None else TriageAgent.DEFAULT_UNDER_TRIAGE_COST
    preds: dict[str, list[int]] = {k: [0] * len(rows) for k in ("rules_only", "model_only", "model+rules")}
    n_splits = min(folds, int(np.bincount(y).max()))
    # rare classes (KTAS 1) may have fewer members than folds: StratifiedKFold warns; that is expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    for train_idx, test_idx in splits:
        model = AcuityModel(fit_triage_model([rows[i] for i in train_idx]))
        for i in test_idx:
            f = note_features(rows[i]["note"], model.vocabulary)
            p_model = model.predict_proba(f.values)
            worst = min((fl.max_level for fl in f.red_flags), default=5)
            preds["rules_only"][i] = min(worst, 3)  # rules alone: the flag cap, else the commonest level (3)
            preds["model_only"][i] = max(p_model, key=p_model.get)
            preds["model+rules"][i] = decide(p_model, f.red_flags, u_cost)[0]
    table = {"nurse (KTAS_RN)": triage_metrics(y.tolist(), [r["nurse"] for r in rows])}
    for k, v in preds.items():
        table[k] = triage_metrics(y.tolist(), v)
    out: dict[str, Any] = {"dataset": "KTAS data_dev.csv", "under_triage_cost": u_cost, "rows": table}
    if not use_slm:
        out["protocol"] = (f"stratified {n_splits}-fold CV (seed {seed}); acuity model refitted on the training "
                           "folds; nurses scored on the same rows")
        return out
    cv = cv_triage_slm(data_dir, rows=rows, folds=folds, seed=seed, quick=quick)
    by_id = {r["id"]: r for r in cv["rows"]}
    for system, key in (("slm_only", "slm"), ("classical (inner-dev cost)", "classical"), ("agent", "agent")):
        table[system] = triage_metrics(y.tolist(), [by_id[r["id"]]["standard"][key] for r in rows])
    # calibration of the agent's confidence (probability of the chosen level)
    from medslm.agents.triage import combine

    w = {p["fold"]: p["fusion_weight"] for p in cv["fold_params"]}
    conf, correct = [], []
    for r in rows:
        rec = by_id[r["id"]]["standard"]
        p = combine(dict(enumerate(rec["p_model"], 1)), dict(enumerate(rec["p_slm"], 1)), w[by_id[r["id"]]["fold"]])
        conf.append(p[rec["agent"]])
        correct.append(rec["agent"] == r["expert"])
    table["agent"]["ece"] = _ece(conf, correct)
    lat = []
    agent = TriageAgent()
    from medslm.records import Note

    agent.run(Note(id="warm-up", text=rows[0]["note"]), {})
    for r in rows[: min(20, len(rows))]:
        t = time.perf_counter()
        agent.run(Note(id=r["id"], text=r["note"]), {})
        lat.append((time.perf_counter() - t) * 1000)
    out.update({
        "protocol": cv["protocol"], "fold_params": cv["fold_params"], "cv_seconds": cv["seconds"],
        "latency_ms": _latency(lat),
    })
    return out


MIN_CV_ROWS = 40


def _ece(conf: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    n = len(conf)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            avg = sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - avg)
    return total


def _latency(ms: Sequence[float]) -> dict[str, float]:
    if not ms:
        return {}
    s = sorted(ms)
    return {"n": len(s), "p50": s[len(s) // 2], "p95": s[min(len(s) - 1, int(0.95 * len(s)))]}


# ------------------------------------------------------------------------ the specialist (triage-slm)

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


#: bump when the cross-validation procedure or the specialist's training changes (invalidates caches)
CV_VERSION = "triage-slm-cv-2"


def cv_triage_slm(data_dir: str | Path | None = None, *, rows: Sequence[dict[str, Any]] | None = None,
                  folds: int = 5, seed: int = 0, device: str = "cpu", quick: bool = False, frozen: Any = None,
                  use_cache: bool = True) -> dict[str, Any]:
    """KTAS cross-validation of the triage specialist, the classical system and the agent (nested).

    In each outer fold, on the four training folds only: the adapter is fitted on 80 % of the rows with
    the other 20 % as inner dev (early stopping; fusion weight and under-triage cost chosen there, with
    an acuity model fitted on the 80 %); the classical system's cost is chosen on the same inner dev;
    the acuity model used on the test fold is refitted on all four folds. The held-out fold is then
    scored by the agent's own decision code. Per-row outputs are returned (and cached on disk under the
    medslm cache folder, keyed by the rows and :data:`CV_VERSION`) so that the ablation and the recipe
    share one run.
    """
    import hashlib
    import tempfile
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from medslm.agents.triage import combine, decide
    from medslm.agents.triage_features import AcuityModel, note_features
    from medslm.models.encoder import EncoderClassifier
    from medslm.records import RedFlag
    from medslm.settings import default_cache_dir
    from medslm.training.triage_slm import choose_fusion, fit_adapter

    rows = list(rows) if rows is not None else read_ktas(data_dir)
    if quick:  # the smoke test: two folds of a few rows
        folds = min(folds, 2)
    key_src = json.dumps([CV_VERSION, folds, seed, quick, [(r["note"], r["expert"]) for r in rows]])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache = Path(default_cache_dir()) / "evals" / f"triage_slm_cv_{key}.json"
    if use_cache and cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    y = np.asarray([int(r["expert"]) for r in rows])
    n_splits = min(folds, int(np.bincount(y).max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    styles = ("standard", "terse", "prose")
    per_row: list[dict[str, Any]] = [{} for _ in rows]
    fold_params = []
    t0 = time.perf_counter()
    for k, (tr, te) in enumerate(splits):
        train_rows = [rows[i] for i in tr]
        fit_rows, dev_rows = split_dev(train_rows, seed=seed + k)
        with tempfile.TemporaryDirectory(prefix="triage-slm-cv-") as tmp:
            hist = fit_adapter(fit_rows, dev_rows, Path(tmp), seed=seed + k, device=device, quick=quick, frozen=frozen)
            clf = EncoderClassifier(tmp, device=device)
            test_texts = {st: [ktas_note_styled(rows[i], st, seed=int(i)) for i in te] for st in styles}
            probs = {st: clf.predict(t) for st, t in test_texts.items()}
            dev_probs = clf.predict([r["note"] for r in dev_rows])
        inner = AcuityModel(fit_triage_model(fit_rows))
        dev_feats = [note_features(r["note"], inner.vocabulary) for r in dev_rows]
        dev_pm = [inner.predict_proba(f.values) for f in dev_feats]
        dev_caps = [min((fl.max_level for fl in f.red_flags), default=5) for f in dev_feats]
        dev_ps = [{j + 1: float(p[j]) for j in range(5)} for p in dev_probs]
        dev_y = [int(r["expert"]) for r in dev_rows]
        w, u, _ = choose_fusion(dev_pm, dev_ps, dev_caps, dev_y)
        _, u_cls, _ = choose_fusion(dev_pm, None, dev_caps, dev_y)
        model = AcuityModel(fit_triage_model(train_rows))
        fold_params.append({"fold": k, "fusion_weight": w, "under_triage_cost": u, "classical_cost": u_cls,
                            "epochs": len(hist["epochs"]), "best_dev_loglik": hist["best_dev"],
                            "train_rows": len(fit_rows), "dev_rows": len(dev_rows)})
        for j, i in enumerate(te):
            rec: dict[str, Any] = {"id": rows[i]["id"], "expert": int(rows[i]["expert"]), "nurse": int(rows[i]["nurse"]),
                                   "fold": k}
            for st in styles:
                f = note_features(test_texts[st][j], model.vocabulary)
                p_model = model.predict_proba(f.values)
                p_slm = {lv + 1: float(probs[st][j][lv]) for lv in range(5)}
                cap = min((fl.max_level for fl in f.red_flags), default=5)
                flags = (RedFlag(name="cap", max_level=cap),) if cap < 5 else ()
                rec[st] = {
                    "p_slm": [round(p_slm[lv], 6) for lv in range(1, 6)],
                    "p_model": [round(p_model[lv], 6) for lv in range(1, 6)],
                    "cap": cap,
                    "classical": decide(p_model, flags, u_cls)[0],
                    "slm": max(range(1, 6), key=lambda lv: (p_slm[lv], -lv)),
                    "agent": decide(combine(p_model, p_slm, w), flags, u)[0],
                }
            per_row[i] = rec
        log_fold = f"fold {k + 1}/{n_splits}: w={w} u={u} classical u={u_cls} ({time.perf_counter() - t0:.0f} s)"
        import logging

        logging.getLogger(__name__).info(log_fold)
    metrics = {}
    truth = [r["expert"] for r in per_row]
    metrics["nurse"] = triage_metrics(truth, [r["nurse"] for r in per_row])
    for system in ("classical", "slm", "agent"):
        metrics[system] = triage_metrics(truth, [r["standard"][system] for r in per_row])
        for st in ("terse", "prose"):
            metrics[f"{system}_{st}"] = triage_metrics(truth, [r[st][system] for r in per_row])
    out = {"dataset": "KTAS data_dev.csv", "version": CV_VERSION, "folds": n_splits, "seed": seed, "quick": quick,
           "protocol": "stratified 5-fold CV; in each fold the adapter (80 % of the training folds), the fusion weight "
                       "and costs (inner dev: the other 20 %) and the acuity model (all training folds) never see the "
                       "test fold",
           "fold_params": fold_params, "metrics": metrics, "rows": per_row, "seconds": round(time.perf_counter() - t0, 1)}
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out), encoding="utf-8")
    return out


def ablation(data_dir: str | Path | None = None, *, limit: int | None = None, seed: int = 0) -> Any:
    """Classical (acuity model + red flags + cost decision) vs the specialist alone vs the agent, KTAS 5-fold CV.

    Items: the KTAS rows, each scored by the fold models that never saw it; metric: quadratic-weighted
    kappa against the expert level. ``limit`` runs a quick CV on about ``limit`` rows (smoke test).
    """
    from medslm.evals.ablation import Ablation

    rows = read_ktas(data_dir)
    quick = limit is not None and limit < len(rows)
    if quick:
        n = max(int(limit or 0), MIN_CV_ROWS)
        rows = rows[:: max(1, len(rows) // n)][:n]
    cv = cv_triage_slm(data_dir, rows=rows, seed=seed, quick=quick)
    items = {s: [(r["expert"], r["standard"][key]) for r in cv["rows"]]
             for s, key in (("classical", "classical"), ("slm", "slm"), ("combined", "agent"))}

    def qwk(entries: Sequence[tuple[int, int]]) -> float:
        return triage_metrics([e[0] for e in entries], [e[1] for e in entries])["qwk"]

    extra = {"metrics": cv["metrics"], "fold_params": cv["fold_params"], "cv_seconds": cv["seconds"],
             "under_triage_ci95": _under_ci(items, seed)}
    notes = [f"KTAS data_dev 5-fold CV ({len(rows)} rows); nurses on the same rows: QWK "
             f"{cv['metrics']['nurse']['qwk']:.3f}, under-triage {cv['metrics']['nurse']['under_triage']:.3f}",
             "combined = the agent: acuity model x specialist (weight from inner dev) + red-flag cap + cost decision"]
    for s, key in (("classical", "classical"), ("slm", "slm"), ("combined", "agent")):
        m = cv["metrics"][key]
        notes.append(f"{s}: under-triage {m['under_triage']:.3f}, over-triage {m['over_triage']:.3f}, "
                     f"accuracy {m['accuracy']:.3f}; on terse notes QWK {cv['metrics'][key + '_terse']['qwk']:.3f}, "
                     f"on prose notes QWK {cv['metrics'][key + '_prose']['qwk']:.3f}")
    return Ablation(agent="triage", split=f"KTAS data_dev 5-fold CV ({len(rows)} rows{', quick' if quick else ''})",
                    metric_name="quadratic kappa", metric=qwk, items=items, notes=notes, extra=extra)


def _under_ci(items: dict[str, list[tuple[int, int]]], seed: int, n_boot: int = 1000) -> dict[str, list[float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(next(iter(items.values())))
    draws = [rng.integers(0, n, n) for _ in range(n_boot)]
    out = {}
    for s, entries in items.items():
        under = np.asarray([p > t for t, p in entries], dtype=float)
        vals = [under[d].mean() for d in draws]
        out[s] = [float(under.mean()), float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]
    return out
