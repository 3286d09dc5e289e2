"""Recipe for the triage agent's acuity model (``triage-acuity``), fitted on KTAS.

KTAS ``data_dev.csv`` (887 visits) is the only KTAS split here, so the shipped model is fitted on all of
it, and every figure in its manifest is **out of fold**: stratified 5-fold cross-validation in which the
model is refitted on four folds and scored on the fifth (``medslm.evals.triage.evaluate_triage`` without
the SLM). The fusion weight of the triage specialist and the under-triage cost ship with the specialist
(``triage-slm``, :mod:`medslm.training.triage_slm`); ``slm_weight`` here is the fallback for a generative
model.
"""

from __future__ import annotations

from medslm.training import TrainContext, TrainResult, recipe, write_json

LICENCE = "CC BY 4.0 (Moon et al., PLOS ONE 2019, S1 data)"
C = 0.3


@recipe("triage-acuity", agent="triage", description="acuity logistic regression over triage-note features (KTAS)",
        data=("ktas",))
def train_triage_acuity(ctx: TrainContext) -> TrainResult:
    from medslm.evals.triage import evaluate_triage, fit_triage_model, read_ktas

    ctx.data_file("ktas/data_dev.csv", split="dev (the provider's 70 %; all rows, CV folds)", licence=LICENCE)
    rows = read_ktas(ctx.data_dir, limit=120 if ctx.quick else None)
    params = fit_triage_model(rows, C=C)
    params["meta"]["slm_weight"] = 0.5
    write_json(ctx.out / "model.json", params)
    cv = evaluate_triage(ctx.data_dir, limit=120 if ctx.quick else None, use_slm=False, seed=ctx.seed)
    figures = {}
    for system, key in (("model_only", "ktas_cv_model"), ("model+rules", "ktas_cv_model+rules+cost"),
                        ("nurse (KTAS_RN)", "ktas_cv_rows_nurse")):
        m = cv["rows"][system]
        figures.update({f"{key}_accuracy": m["accuracy"], f"{key}_qwk": m["qwk"],
                        f"{key}_under_triage": m["under_triage"]})
    return TrainResult(
        hyperparameters={"C": C, "features": len(params["features"]), "vocabulary": len(params["vocabulary"]),
                         "rows": len(rows), "slm_weight": 0.5},
        tuning="C chosen by stratified 5-fold CV on KTAS data_dev (session 2); figures: the same 5-fold CV",
        figures=figures,
    )


__all__ = ["train_triage_acuity"]
