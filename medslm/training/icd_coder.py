"""Recipe for the ICD agent's ranker and stacker (``icd-coder``), fitted on CodiEsp train.

The ranker (kernel ridge from TF-IDF to the train codes), the lexicon statistics and the gradient-boosted
stacker are fitted on CodiEsp **train** only; the emission threshold is the best out-of-fold micro-F1 on
train (a second split inside train). CodiEsp **dev** is used only to report the figures in the manifest.
"""

from __future__ import annotations

from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

LICENCE = "CC BY 4.0 (CodiEsp, CLEF eHealth 2020)"


def _codiesp(ctx: TrainContext, split: str, use: str) -> list[Any]:
    from medslm.evals.icd import read_codiesp

    ctx.data_file(f"codiesp/{split}/{split}D.tsv", split=split, use=use, licence=LICENCE)
    ctx.record_folder(f"codiesp/{split}/text_files_en", "*.txt", split=split, use=use, licence=LICENCE)
    return read_codiesp(ctx.data_dir, split, limit=40 if ctx.quick else None)


@recipe("icd-coder", agent="icd", description="ICD-10-CM code ranker + candidate stacker (CodiEsp train)",
        data=("codiesp",))
def train_icd_coder(ctx: TrainContext) -> TrainResult:
    from medslm.agents.icd import IcdAgent
    from medslm.agents.icd_model import CodingModel
    from medslm.evals.icd import mean_average_precision, micro_prf

    docs = _codiesp(ctx, "train", "fit")
    agent = IcdAgent(model=None, coder=None)
    kg = agent.kg
    labels = [[c for c in d.codes if kg.get(c, "ICD10CM") is not None] for d in docs]
    folds = 3 if ctx.quick else 5
    model = CodingModel.fit([d.text for d in docs], labels, lambda text: agent.evidence(text), agent._billable,
                            folds=folds, seed=ctx.seed)
    model.save(ctx.out)
    # figures on CodiEsp dev (never used for fitting or tuning), the coder alone (no NER, no SLM)
    dev = _codiesp(ctx, "dev", "report")
    scorer = IcdAgent(model=None, coder=None)
    scorer._coder, scorer._coder_loaded = CodingModel.load(ctx.out), True
    ranked, emitted = {}, {}
    for d in dev:
        coding = scorer.code(d.text)
        ranked[d.id] = [c.code for c in coding.ranked]
        emitted[d.id] = [c.code for c in coding.chosen]
    gold = {d.id: d.codes for d in dev}
    prf = micro_prf(emitted, gold)
    return TrainResult(
        hyperparameters={"ridge_lambda": 0.1, "tfidf": "1-2 grams, min_df 2, sublinear tf", "top_k": model.top_k,
                         "stacker": "HistGradientBoosting(max_iter=200, lr=0.05, max_leaf_nodes=15, l2=1.0)",
                         "folds": folds, "train_documents": len(docs), "threshold": model.threshold},
        tuning="emission threshold: best out-of-fold micro-F1 on CodiEsp train (5 folds)",
        figures={"codiesp_train_oof_micro_f1": float(getattr(model, "oof_f1", 0.0)),
                 "codiesp_dev_map": mean_average_precision(ranked, gold),
                 "codiesp_dev_micro_p": prf["precision"], "codiesp_dev_micro_r": prf["recall"],
                 "codiesp_dev_micro_f1": prf["f1"]},
    )


__all__ = ["train_icd_coder"]
