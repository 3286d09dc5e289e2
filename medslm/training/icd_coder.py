"""Recipe ``icd-coder``: the ICD agent's ranker and stackers, fitted on CodiEsp train.

The ranker (kernel ridge from TF-IDF to the train codes) and the lexicon statistics are fitted on CodiEsp
**train**; the classical stacker on their out-of-fold features (5 folds by document); the combined
stacker on those plus the SLM reranker's out-of-fold scores (the same heads the ``icd-reranker`` recipe
chose, refitted per fold: :func:`medslm.training.icd_reranker.oof_scores`). Each emission threshold is the
best out-of-fold micro-F1 on train (a second split inside train). CodiEsp **dev** is used only to report
the figures in the manifest: MAP, micro P/R/F1 and candidate coverage of the three systems the ablation
compares (classical, SLM alone, combined).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from medslm.training import TrainContext, TrainResult, recipe
from medslm.training.icd_data import FOLDS, read_split

log = logging.getLogger(__name__)

# re-exported for callers of the old name
__all__ = ["read_split", "train_icd_coder"]


@recipe("icd-coder", agent="icd", description="ICD-10-CM code ranker + classical and combined (SLM) candidate "
        "stackers (CodiEsp train)", data=("codiesp",))
def train_icd_coder(ctx: TrainContext) -> TrainResult:
    from medslm.agents.icd_model import CodingModel
    from medslm.artifacts import artifact_dir, has_artifact
    from medslm.training.icd_reranker import oof_scores, prepare

    kg, agent, _docs, views, fold_of, data = prepare(ctx)
    folds = 3 if ctx.quick else FOLDS
    slm_root = ctx.out.parent if (ctx.out.parent / "icd-reranker" / "manifest.json").is_file() else None
    slm_of = None
    kind = None
    if slm_root is not None or has_artifact("icd-reranker"):
        cfg = json.loads((artifact_dir("icd-reranker", slm_root) / "config.json").read_text(encoding="utf-8"))
        kind = cfg["head"]
        oof = oof_scores(data, views, fold_of, kind, ctx.seed, folds)
        cos = [data.features(i, v)[:, 0] if v.codes else np.zeros(0) for i, v in enumerate(views)]
        index = [{c: k for k, c in enumerate(v.codes)} for v in views]

        def slm_of(i: int) -> Any:
            def scores(codes: Any) -> list[tuple[float, float]]:
                return [(float(oof[i][index[i][c]]), float(cos[i][index[i][c]])) for c in codes]

            return scores

    labels = [sorted(v.gold) for v in views]
    model = CodingModel.fit([v.text for v in views], labels, [v.evidence for v in views], agent._billable,
                            extras_of=lambda i: agent._extras(views[i].text, views[i].spans), slm_of=slm_of,
                            folds=folds, seed=ctx.seed)
    model.save(ctx.out)
    log.info("stackers fitted; scoring CodiEsp dev")
    figures = {**model.figures, **dev_figures(ctx, kg, model, slm_root)}
    return TrainResult(
        hyperparameters={"ridge_lambda": 0.1, "tfidf": "1-2 grams, min_df 2, sublinear tf", "top_k": model.top_k,
                         "stacker": "HistGradientBoosting(max_iter=200, lr=0.05, max_leaf_nodes=15, l2=1.0)",
                         "folds": folds, "train_documents": len(views), "threshold": model.threshold,
                         "threshold_classical": model.threshold_classical, "slm_head": kind,
                         "kg_sources": [f"{s.name}={s.version()}" for s in kg.sources]},
        tuning=f"stackers on out-of-fold features and emission thresholds by out-of-fold micro-F1, CodiEsp train "
               f"({folds} folds by document)",
        figures=figures,
    )


def dev_figures(ctx: TrainContext, kg: Any, model: Any, slm_root: Any) -> dict[str, float]:
    """MAP and micro P/R/F1 on CodiEsp dev for the classical, SLM-alone and combined systems."""
    from medslm.agents.icd import IcdAgent
    from medslm.evals.icd import mean_average_precision, micro_prf

    dev = read_split(ctx, "dev", "report")
    agent = IcdAgent(model=None, kg=kg, coder=None, reranker="icd-reranker" if model.stacker is not None else None,
                     artifacts=slm_root)
    agent._coder, agent._loaded = model, {"coder"}
    if agent.reranker is not None:
        from medslm.training.icd_data import EmbeddingCache

        agent.reranker.cache = EmbeddingCache(device=ctx.device)
    gold = {d.id: d.codes for d in dev}
    out: dict[str, float] = {}
    for system in ("classical", "slm", "combined") if model.stacker is not None else ("classical",):
        ranked, emitted = {}, {}
        for d in dev:
            coding = agent.code(d.text, system=system)
            ranked[d.id] = [c.code for c in coding.ranked]
            emitted[d.id] = [c.code for c in coding.chosen]
        prf = micro_prf(emitted, gold)
        name = "" if system == "combined" else f"_{system}"
        out[f"codiesp_dev_map{name}"] = mean_average_precision(ranked, gold)
        out[f"codiesp_dev_micro_p{name}"] = prf["precision"]
        out[f"codiesp_dev_micro_r{name}"] = prf["recall"]
        out[f"codiesp_dev_micro_f1{name}"] = prf["f1"]
        if system == "classical":
            n = sum(len(set(g)) for g in gold.values())
            out["codiesp_dev_candidate_coverage"] = sum(len(set(gold[k]) & set(r)) for k, r in ranked.items()) / max(1, n)
    if model.stacker is None:  # no SLM: the classical figures are the agent's
        out.update({k.replace("_classical", ""): v for k, v in list(out.items()) if k.endswith("_classical")})
    return out
