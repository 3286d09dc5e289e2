"""Triage on KTAS (Moon et al. 2019): the note text, the acuity model fit, and the evaluation.

Protocol: stratified 5-fold cross-validation on ``ktas/data_dev.csv`` (887 visits; the other 30 % are
held out by the data provider). In each fold the acuity model is fitted on the four training folds and
the combination weight of the SLM score is chosen by an inner cross-validation on those folds only;
the held-out fold is scored by the agent's own decision code (red flags, cost-sensitive decision).
The nurses' ``KTAS_RN`` is scored against ``KTAS_expert`` on the same rows.

The note text is built from the triage-time columns only (age, sex, arrival mode, injury, chief
complaint, mental status, pain, vitals); ``Diagnosis in ED``, disposition and ``KTAS_RN`` never enter it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.evals.datasets import ktas_note, read_ktas  # the KTAS reader lives with the other readers

__all__ = [
    "evaluate_triage",
    "fit_triage_model",
    "ktas_note",
    "read_ktas",
    "triage_metrics",
]


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

def _slm_scores(rows: Sequence[dict[str, Any]], agent: Any, cache: Path | None) -> list[dict[int, float]]:
    """The SLM's level distribution for each row (cached on disk by note hash: it costs ~0.4 s a note)."""
    import hashlib

    store: dict[str, dict[str, float]] = {}
    if cache is not None and cache.exists():
        store = json.loads(cache.read_text())
    out = []
    key_base = agent.prompt_hash
    dirty = False

    def save() -> None:
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(store))
            tmp.replace(cache)

    for n, r in enumerate(rows):
        key = key_base + hashlib.sha256(r["note"].encode()).hexdigest()[:16]
        if key not in store:
            store[key] = {str(k): v for k, v in agent.slm_distribution(r["note"])[0].items()}
            dirty = True
            if n % 25 == 0:
                save()
        out.append({int(k): v for k, v in store[key].items()})
    if dirty:
        save()
    return out


def evaluate_triage(data_dir: str | Path | None = None, limit: int | None = None, *, folds: int = 5,
                    use_slm: bool = True, under_triage_cost: float | None = None, seed: int = 0,
                    cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Cross-validated triage figures on KTAS: nurses, rules-only, SLM-only, fitted model and the agent.

    Returns ``{"protocol": ..., "rows": {system: metrics}, "latency_ms": {...}}``.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from medslm.agents.triage import TriageAgent, combine, decide
    from medslm.agents.triage_features import AcuityModel, note_features
    from medslm.settings import default_cache_dir

    # cross-validation needs rows of several levels in every fold: a small limit still takes MIN_CV_ROWS,
    # spread over the file (the first rows of data_dev.csv are few levels)
    rows = read_ktas(data_dir)
    if limit is not None and limit < len(rows):
        n = max(limit, MIN_CV_ROWS)
        rows = rows[:: max(1, len(rows) // n)][:n]
    y = np.asarray([r["expert"] for r in rows])
    agent = TriageAgent(model="embedded") if use_slm else None
    u_cost = under_triage_cost if under_triage_cost is not None else TriageAgent.DEFAULT_UNDER_TRIAGE_COST
    cache = Path(cache_dir or default_cache_dir()) / "evals" / "ktas_slm_scores.json"
    t0 = time.perf_counter()
    slm = _slm_scores(rows, agent, cache) if agent is not None else [dict.fromkeys(range(1, 6), 0.2)] * len(rows)
    slm_s = time.perf_counter() - t0

    preds: dict[str, list[int]] = {k: [0] * len(rows) for k in ("rules_only", "slm_only", "model_only",
                                                                  "model+rules", "agent")}
    probs_agent: list[dict[int, float]] = [{}] * len(rows)
    weights = []
    n_splits = min(folds, int(np.bincount(y).max()))
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # rare classes (KTAS 1) may have fewer members than folds: StratifiedKFold warns; that is expected
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(skf.split(np.zeros(len(y)), y))
    for train_idx, test_idx in splits:
        train = [rows[i] for i in train_idx]
        model = AcuityModel(fit_triage_model(train))
        w = _choose_slm_weight(train, [slm[i] for i in train_idx], seed) if agent is not None else 0.0
        weights.append(w)
        for i in test_idx:
            f = note_features(rows[i]["note"], model.vocabulary)
            p_model = model.predict_proba(f.values)
            flags = f.red_flags
            worst = min((fl.max_level for fl in flags), default=5)
            preds["rules_only"][i] = min(worst, 3)  # rules alone: the flag cap, else the commonest level (3)
            preds["slm_only"][i] = max(slm[i], key=slm[i].get)
            preds["model_only"][i] = max(p_model, key=p_model.get)
            preds["model+rules"][i] = min(preds["model_only"][i], worst)
            p = combine(p_model, slm[i], w)
            probs_agent[i] = p
            preds["agent"][i] = decide(p, flags, u_cost)[0]

    table = {"nurse (KTAS_RN)": triage_metrics(y.tolist(), [r["nurse"] for r in rows])}
    for k, v in preds.items():
        table[k] = triage_metrics(y.tolist(), v)
    # calibration of the agent's confidence (probability of the chosen level)
    conf = [probs_agent[i][preds["agent"][i]] for i in range(len(rows))]
    correct = [preds["agent"][i] == rows[i]["expert"] for i in range(len(rows))]
    table["agent"]["ece"] = _ece(conf, correct)
    # per-note latency of the full agent (note -> AgentResult) on a few notes
    lat = []
    if agent is not None:
        for r in rows[: min(20, len(rows))]:
            from medslm.records import Note

            t = time.perf_counter()
            agent.run(Note(id=r["id"], text=r["note"]), {})
            lat.append((time.perf_counter() - t) * 1000)
    return {
        "dataset": "KTAS data_dev.csv",
        "protocol": f"stratified {n_splits}-fold CV (seed {seed}); acuity model and SLM weight fitted on "
                    "training folds only; nurses scored on the same rows",
        "under_triage_cost": u_cost,
        "slm_weight_per_fold": weights,
        "slm_scoring_s": round(slm_s, 1),
        "rows": table,
        "latency_ms": _latency(lat),
    }


MIN_CV_ROWS = 40


def _choose_slm_weight(train: Sequence[dict[str, Any]], slm: Sequence[dict[int, float]], seed: int,
                       grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0)) -> float:
    """Weight of the SLM log-probabilities that maximises inner-CV log-likelihood on ``train``."""
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from medslm.agents.triage import combine
    from medslm.agents.triage_features import AcuityModel, note_features

    y = np.asarray([r["expert"] for r in train])
    inner: list[dict[int, float]] = [{}] * len(train)
    n_splits = min(4, int(np.bincount(y).max()))
    if n_splits < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed + 1).split(np.zeros(len(y)), y))
    for tr, te in splits:
        m = AcuityModel(fit_triage_model([train[i] for i in tr]))
        for i in te:
            inner[i] = m.predict_proba(note_features(train[i]["note"], m.vocabulary).values)
    best, best_ll = 0.0, -math.inf
    for w in grid:
        ll = sum(math.log(max(combine(inner[i], slm[i], w)[train[i]["expert"]], 1e-12)) for i in range(len(train)))
        if ll > best_ll:
            best, best_ll = w, ll
    return best


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
