"""Recipes ``calibration-<agent>``: each agent's calibrator, operating curve and default threshold.

``medslm train calibration`` refits all of them (``medslm train calibration-icd`` one; ``medslm train icd``
refits the ICD agent's components and then its calibration, which runs last). Each recipe:

1. runs the agent **as it ships** (its model spec, and the trained components of the ``--out`` folder,
   else the shipped ones) on held-out data (:mod:`medslm.evals.calibration`: KTAS CV folds, CodiEsp
   train out of fold, NCBI-disease devel, the summarizer adapter's held-out MTS-Dialog train slice) and
   records whether each result was correct;
2. cross-fits identity, temperature and isotonic calibrators (5 folds: each item calibrated by a
   calibrator fitted on the others) and keeps the method with the lowest cross-fitted ECE; the figures
   (ECE with its 95 % bootstrap interval) are therefore out of sample;
3. fits that method on all the items, and measures the operating curve (escalation share and accepted
   error per threshold) on the cross-fitted confidences;
4. writes ``calibration.json`` (:class:`~medslm.routers.thresholds.AgentCalibration`) with the default
   threshold (the highest that escalates at most 5 % of the calls) and the configuration it was fitted
   for (the route node refuses to apply it to another).

Sizes: running an agent with its SLM costs 0.5-3 s an item on a shared 2-core machine, so each recipe
runs a seeded subset (``ITEMS``); ``--quick`` runs a handful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

#: held-out items run per agent (the calibration's sample size)
ITEMS = {"triage": 887, "icd": 250, "ner": 100, "summarize": 60}
QUICK_ITEMS = {"triage": 15, "icd": 6, "ner": 6, "summarize": 3}
METHODS = ("identity", "temperature", "isotonic")
SPLIT_TAG = {"triage": "ktas_cv", "icd": "codiesp_dev", "ner": "ncbi-disease_devel",
             "summarize": "mts-dialog_heldout_tune_slice"}


def fit_calibration(ctx: TrainContext, agent: str) -> TrainResult:
    """Run ``agent`` on its held-out data, pick and fit its calibrator, write ``calibration.json``."""
    from medslm.evals.calibration import cross_fitted, heldout
    from medslm.evals.metrics import bootstrap_ci
    from medslm.routers.calibration import Calibrator, ece
    from medslm.routers.thresholds import (
        DEFAULT_MAX_ESCALATION,
        AgentCalibration,
        OperatingCurve,
        component_for,
        fitted_for,
    )
    from medslm.settings import Settings

    root: Path = ctx.out.parent  # components trained in this run (else the shipped ones)
    settings = Settings(artifacts=root)
    n = (QUICK_ITEMS if ctx.quick else ITEMS)[agent]
    ho = heldout(agent, ctx.data_dir, artifacts=root, limit=n, seed=ctx.seed, settings=settings, quick=ctx.quick)
    for path, split, use, licence in ho.data:
        if "*" in path:
            rel, pattern = path.rsplit("/", 1)
            ctx.record_folder(rel, pattern, split=split, use=use, licence=licence)
        else:
            ctx.data_file(path, split=split, use=use, licence=licence)
    conf, ok = ho.confidences, ho.correct
    cf = cross_fitted(conf, ok, METHODS, folds=5, seed=ctx.seed)
    eces = {m: ece(cf[m], ok) for m in METHODS}
    best = min(METHODS, key=lambda m: (eces[m], METHODS.index(m)))
    calibrator = Calibrator.fit(conf, ok, method=best, agent=agent)
    curve = OperatingCurve.from_data(cf[best], ok)
    default = curve.for_share(DEFAULT_MAX_ESCALATION)
    lo, hi = bootstrap_ci(lambda c, y: ece(c, y), cf[best], ok, n=500, seed=ctx.seed)
    tag = SPLIT_TAG[agent]
    figures: dict[str, float] = {
        f"{tag}_items": float(len(conf)),
        f"{tag}_accuracy": sum(ok) / len(ok),
        f"{tag}_ece_raw": ece(conf, ok),
        **{f"{tag}_ece_{m}_crossfitted": eces[m] for m in METHODS},
        f"{tag}_ece_chosen_crossfitted": eces[best],
        f"{tag}_ece_chosen_ci95_low": lo,
        f"{tag}_ece_chosen_ci95_high": hi,
        f"{tag}_default_threshold": default.threshold,
        f"{tag}_default_escalation_share": default.escalation_share,
        f"{tag}_default_accepted_error": default.accepted_error,
        f"{tag}_error_without_escalation": 1.0 - sum(ok) / len(ok),
        f"{tag}_seconds_per_item": ho.seconds / max(1, len(conf)),
    }
    cal = AgentCalibration(agent=agent, calibrator=calibrator, curve=curve, default_threshold=default.threshold,
                           fitted_for=fitted_for(agent, settings, root), split=ho.split, correct=ho.correct_means,
                           figures=figures, component=component_for(agent))
    cal.save(ctx.out)
    return TrainResult(
        hyperparameters={"method": best, "methods_tried": list(METHODS), "items": len(conf),
                         "cv_folds_for_method_and_curve": 5, "default_max_escalation": DEFAULT_MAX_ESCALATION,
                         "correct": ho.correct_means, "model": settings.model_for(agent)},
        tuning=f"method by cross-fitted ECE and default threshold on the cross-fitted curve: {ho.split}",
        figures=figures,
    )


def _register(agent: str, data: tuple[str, ...]) -> Any:
    @recipe(f"calibration-{agent}", agent=agent, data=data,
            description=f"calibrator, operating curve and default threshold of the {agent} agent (held-out runs)")
    def train(ctx: TrainContext) -> TrainResult:
        return fit_calibration(ctx, agent)

    train.__name__ = f"train_calibration_{agent}"
    return train


train_calibration_ner = _register("ner", ("ncbi-disease",))
train_calibration_icd = _register("icd", ("codiesp",))
train_calibration_triage = _register("triage", ("ktas",))
train_calibration_summarize = _register("summarize", ("mts-dialog",))

__all__ = ["ITEMS", "METHODS", "fit_calibration"]
