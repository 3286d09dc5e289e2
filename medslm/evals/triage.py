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

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.evals.ktas import (
    NOTE_STYLES,
    fit_triage_model,
    ktas_note,
    ktas_note_styled,
    read_ktas,
    triage_metrics,
)

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

def cv_triage_slm(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The nested KTAS cross-validation of the triage specialist (:func:`medslm.training.triage_slm.cv_triage_slm`)."""
    from medslm.training.triage_slm import cv_triage_slm as run

    return run(*args, **kwargs)


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
