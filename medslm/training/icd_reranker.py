"""Recipe ``icd-reranker``: the ICD agent's SLM scorer of (note, candidate code) pairs, trained on CodiEsp train.

all-MiniLM-L6-v2 (frozen, from PyPI) embeds every sentence of a train document and every candidate code's
text (description + index path); :func:`medslm.agents.icd_reranker.pair_features` turns a (document,
code) pair into 388 features; a head is fitted to tell the codes coders assigned from the other
candidates. Candidates are the agent's own, out of fold (:func:`medslm.training.icd_data.doc_views`).
Per train document the head sees every gold candidate, the 40 highest-ranked other candidates (hard
negatives) and 20 random ones.

The head's kind (logistic regression or a 64-unit MLP) and its emission threshold are chosen on 5 folds
of train (out-of-fold MAP, out-of-fold micro-F1); the final head is refitted on all of train. CodiEsp dev
gives the figures only. The ``icd-coder`` recipe refits the same out-of-fold heads (:func:`oof_scores`) to
fit its combined stacker on out-of-fold SLM scores.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from medslm.training import TrainContext, TrainResult, recipe
from medslm.training.icd_data import FOLDS, DocView, EmbeddingCache, doc_views, read_split, training_kg

log = logging.getLogger(__name__)

HARD_NEGATIVES = 40
RANDOM_NEGATIVES = 20
MAX_SHIPPED_CODES = 5000
HEADS = {
    "logistic": {"C": 0.5},
    "mlp": {"hidden_layer_sizes": (64,), "alpha": 1e-3, "max_iter": 60, "early_stopping": True,
            "n_iter_no_change": 5},
}


class SlmData:
    """Sentence and code vectors of the documents (from the embedding cache) and their pair features."""

    def __init__(self, kg: Any, views: Sequence[DocView], cache: EmbeddingCache) -> None:
        from medslm.agents.icd_reranker import MAX_SENTENCE_TOKENS, code_text

        self.kg = kg
        codes = list(dict.fromkeys(c for v in views for c in v.codes))
        vecs = cache.encode([code_text(kg, c) for c in codes])
        self.code_vec = dict(zip(codes, vecs, strict=True))
        flat = cache.encode([v.text[s:e] for v in views for s, e in v.spans], max_length=MAX_SENTENCE_TOKENS)
        bounds = np.cumsum([0] + [len(v.spans) for v in views])
        self.sent = [flat[bounds[k] : bounds[k + 1]] for k in range(len(views))]

    def features(self, i: int, view: DocView) -> np.ndarray:
        from medslm.agents.icd_reranker import context_sentences, pair_features

        vecs = np.stack([self.code_vec[c] for c in view.codes]) if view.codes else np.zeros((0, 384), np.float32)
        return pair_features(self.sent[i], vecs, context_sentences(view.spans, view.codes, view.evidence))


def _sample(view: DocView, rng: random.Random) -> list[int]:
    """Row indices a head is fitted on: every gold candidate, the best-ranked others, a few random ones."""
    pos = [k for k, c in enumerate(view.codes) if c in view.gold]
    neg = [k for k, c in enumerate(view.codes) if c not in view.gold]
    neg.sort(key=lambda k: -view.rows[k][1] - view.rows[k][3])  # ranker rank, then lexicon score
    hard, rest = neg[:HARD_NEGATIVES], neg[HARD_NEGATIVES:]
    return pos + hard + rng.sample(rest, min(RANDOM_NEGATIVES, len(rest)))


def _fit_head(kind: str, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from medslm.agents.icd_reranker import Head

    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    z = (x - mean) / scale
    if kind == "logistic":
        est = LogisticRegression(max_iter=2000, random_state=seed, **HEADS[kind]).fit(z, y)
    else:
        est = MLPClassifier(random_state=seed, **HEADS[kind]).fit(z, y)
    return Head.from_sklearn(est, mean, scale)


def _training_rows(data: SlmData, views: Sequence[DocView], docs: Sequence[int], seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    xs, ys = [], []
    for i in docs:
        v = views[i]
        if not v.codes:
            continue
        keep = _sample(v, rng)
        f = data.features(i, v)[keep]
        xs.append(f)
        ys.extend(int(v.codes[k] in v.gold) for k in keep)
    return np.concatenate(xs), np.asarray(ys)


def oof_scores(data: SlmData, views: Sequence[DocView], fold_of: dict[int, int], kind: str, seed: int = 0,
               folds: int = FOLDS) -> list[np.ndarray]:
    """Out-of-fold head probabilities of every candidate of every train document."""
    out: list[np.ndarray] = [np.zeros(0)] * len(views)
    for f in range(folds):
        train_docs = [i for i in range(len(views)) if fold_of[i] != f]
        x, y = _training_rows(data, views, train_docs, seed)
        head = _fit_head(kind, x, y, seed)
        for i in (i for i in range(len(views)) if fold_of[i] == f):
            out[i] = head.predict_proba(data.features(i, views[i])) if views[i].codes else np.zeros(0)
    return out


def mean_ap(views: Sequence[DocView], scores: Sequence[np.ndarray]) -> float:
    from medslm.evals.icd import average_precision

    aps = [average_precision([v.codes[k] for k in np.argsort(-s, kind="stable")], v.gold)
           for v, s in zip(views, scores, strict=True) if v.gold]
    return float(np.mean(aps)) if aps else 0.0


def best_threshold(views: Sequence[DocView], scores: Sequence[np.ndarray]) -> tuple[float, float]:
    """The threshold of best micro-F1 over all candidates, and that F1."""
    n_gold = sum(len(v.gold) for v in views)
    best = (0.0, 0.5)
    for t in np.arange(0.1, 0.95, 0.02):
        tp = sum(int(v.codes[k] in v.gold) for v, s in zip(views, scores, strict=True) for k in np.flatnonzero(s >= t))
        sel = sum(int((s >= t).sum()) for s in scores)
        p, r = tp / max(1, sel), tp / max(1, n_gold)
        best = max(best, (2 * p * r / (p + r) if p + r else 0.0, float(round(t, 2))))
    return best[1], best[0]


def prepare(ctx: TrainContext) -> tuple[Any, Any, list[Any], list[DocView], dict[int, int], SlmData]:
    """Train documents read, viewed out of fold and embedded (shared by both recipes)."""
    from medslm.agents.icd import IcdAgent

    docs = read_split(ctx, "train", "fit")
    kg = training_kg(ctx)
    agent = IcdAgent(model=None, kg=kg, coder=None, reranker=None)
    views, fold_of = doc_views(agent, docs, seed=ctx.seed, folds=3 if ctx.quick else FOLDS)
    log.info("%d train documents read, %.0f candidates each", len(views),
             sum(len(v.codes) for v in views) / max(1, len(views)))
    data = SlmData(kg, views, EmbeddingCache(device=ctx.device))
    log.info("sentences and candidate codes embedded")
    return kg, agent, docs, views, fold_of, data


@recipe("icd-reranker", agent="icd", description="ICD-10-CM candidate reranker (SLM): all-MiniLM-L6-v2 sentence "
        "and code vectors + a head trained on CodiEsp train", data=("codiesp",))
def train_icd_reranker(ctx: TrainContext) -> TrainResult:
    from safetensors.numpy import save_file

    from medslm.agents.icd_model import CodingModel
    from medslm.agents.icd_reranker import FORMAT, SCALARS
    from medslm.training.encoder_lora import base_record

    kg, agent, _docs, views, fold_of, data = prepare(ctx)
    folds = 3 if ctx.quick else FOLDS
    # the head's kind: out-of-fold MAP on train
    oof: dict[str, list[np.ndarray]] = {}
    for kind in (("logistic",) if ctx.quick else HEADS):
        oof[kind] = oof_scores(data, views, fold_of, kind, ctx.seed, folds)
    maps = {kind: mean_ap(views, s) for kind, s in oof.items()}
    log.info("out-of-fold MAP of the heads on train: %s", maps)
    kind = max(maps, key=maps.__getitem__)
    threshold, oof_f1 = best_threshold(views, oof[kind])
    x, y = _training_rows(data, views, range(len(views)), ctx.seed)
    head = _fit_head(kind, x, y, ctx.seed)
    # code vectors that ship: the codes train documents propose most often
    freq = Counter(c for v in views for c in v.codes)
    shipped = [c for c, _ in freq.most_common(MAX_SHIPPED_CODES)]
    save_file({k: np.ascontiguousarray(v) for k, v in head.arrays().items()}, str(ctx.out / "head.safetensors"))
    save_file({"vectors": np.stack([data.code_vec[c] for c in shipped]).astype(np.float16)},
              str(ctx.out / "codes.safetensors"))
    config = {"format": FORMAT, "head": kind, "scalars": list(SCALARS), "threshold": threshold, "codes": shipped,
              "encoder": "all-MiniLM-L6-v2 (mean pooling, unit vectors; sentences 96 tokens, codes 64)"}
    (ctx.out / "config.json").write_text(json.dumps(config, separators=(",", ":")), encoding="utf-8")
    # dev: the SLM alone over the agent's candidates (first stage fitted on all of train)
    dev = read_split(ctx, "dev", "report")
    labels = [sorted(v.gold) for v in views]
    first = CodingModel._fit_first_stage([v.text for v in views], labels, [v.evidence for v in views])
    dviews, _ = doc_views(agent, dev, oof=False, first_stage=first)
    ddata = SlmData(kg, dviews, EmbeddingCache(device=ctx.device))
    dscores = [head.predict_proba(ddata.features(i, v)) if v.codes else np.zeros(0) for i, v in enumerate(dviews)]
    figures = {f"codiesp_train_oof_map_{k}": v for k, v in maps.items()}
    figures.update({"codiesp_train_oof_micro_f1": oof_f1, "codiesp_dev_map_slm_alone": mean_ap(dviews, dscores),
                    "codiesp_dev_candidate_coverage": _coverage(dviews)})
    if math.isnan(figures["codiesp_dev_map_slm_alone"]):
        figures.pop("codiesp_dev_map_slm_alone")
    return TrainResult(
        hyperparameters={"head": kind, "heads_tried": {k: str(v) for k, v in HEADS.items()}, "folds": folds,
                         "hard_negatives": HARD_NEGATIVES, "random_negatives": RANDOM_NEGATIVES,
                         "train_documents": len(views), "training_pairs": len(y), "positive_pairs": int(y.sum()),
                         "shipped_code_vectors": len(shipped), "threshold": threshold,
                         "kg_sources": [f"{s.name}={s.version()}" for s in kg.sources]},
        tuning=f"head kind by out-of-fold MAP and threshold by out-of-fold micro-F1 on CodiEsp train ({folds} folds)",
        figures=figures,
        base_model=base_record(),
    )


def _coverage(views: Sequence[DocView]) -> float:
    gold = sum(len(v.gold) for v in views)
    return sum(len(v.gold & set(v.codes)) for v in views) / max(1, gold)


__all__ = ["SlmData", "best_threshold", "mean_ap", "oof_scores", "prepare", "train_icd_reranker"]
