"""Recipes for the NER agent's CRF mention taggers (``ner-crf``: BC5CDR; ``ner-crf-ncbi``: NCBI-disease).

Fitted on train splits only. ``ner-crf`` is the tagger the chart review uses (chemicals and diseases);
``ner-crf-ncbi`` (diseases, NCBI-disease train) serves ``medslm eval`` on NCBI-disease test. Both are
also the CRF side of the NER specialist's fusion (:mod:`medslm.training.ner_slm`), whose weight is tuned
on NCBI-disease devel: so ``ner-crf-ncbi`` is fitted on train alone (it was train + devel before issue 16;
a CRF that had seen devel would look better there than it is and win the fusion). The CRF's hyperparameters (c1, c2, 150 iterations, lexicon and
gazetteer features) were chosen on NCBI-disease devel with a train-only tagger (sessions 1-2); the
figures below are measured on data neither tagger was fitted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

#: corpus -> (IOB files under the data folder, labels kept, split names, licence)
CORPORA: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, str]] = {
    "bc5cdr": (("bc5cdr/train.tsv",), ("Chemical", "Disease"), "train", "CC BY 4.0 (BC5CDR, BioCreative V CDR)"),
    "ncbi": (("ncbi-disease/conll/train.tsv",), ("Disease",), "train", "public domain (NCBI-disease, US Government work)"),
}
QUICK_SENTENCES = 300


def _fit(ctx: TrainContext, corpus: str, eval_file: str, eval_split: str) -> TrainResult:
    from medslm.agents.crf_tagger import CrfTagger, fit_crf, iob_spans, kg_gazetteer, read_iob
    from medslm.knowledge import KnowledgeGraph

    files, labels, split, licence = CORPORA[corpus]
    sents: list[tuple[list[str], list[str]]] = []
    for rel in files:
        sents.extend(read_iob(ctx.data_file(rel, split=split, licence=licence)))
    if ctx.quick:
        sents = sents[:QUICK_SENTENCES]
    kg = KnowledgeGraph.default()
    gaz = kg_gazetteer(kg)
    hyper: dict[str, Any] = {"c1": 0.05, "c2": 0.01, "max_iterations": 20 if ctx.quick else 150, "lexicon": True,
                             "gazetteer": "kg:ICD10CM+HPO", "corpus": corpus, "sentences": len(sents),
                             "kg_sources": [f"{src.name}={src.version()}" for src in kg.sources]}
    fit_crf(sents, ctx.out, labels=labels, c1=hyper["c1"], c2=hyper["c2"], max_iterations=hyper["max_iterations"],
            lexicon=True, gazetteer=gaz, gazetteer_name=hyper["gazetteer"])
    # figures on a split the tagger was not fitted on (strict span F1 per sentence-level IOB)
    tagger = CrfTagger(ctx.out, gazetteer=gaz)
    held = read_iob(ctx.data_file(eval_file, split=eval_split, use="report", licence=licence))
    if ctx.quick:
        held = held[:100]
    keep = set(labels)
    tp = fp = fn = 0
    for toks, tags in held:
        gold = {(s, e, lab) for s, e, lab in iob_spans(tags) if lab in keep}
        pred = {(t.start, t.end, t.label) for t in tagger.tag(toks)[1]}
        tp += len(gold & pred)
        fp += len(pred - gold)
        fn += len(gold - pred)
    p = tp / max(1, tp + fp)
    r = tp / max(1, tp + fn)
    f = 2 * p * r / (p + r) if p + r else 0.0
    name = f"{Path(eval_file).parts[0]}_{eval_split}"
    return TrainResult(
        hyperparameters=hyper,
        tuning="NCBI-disease devel (features and c1/c2, sessions 1-2, with a train-only tagger)",
        figures={f"{name}_strict_p": p, f"{name}_strict_r": r, f"{name}_strict_f1": f},
    )


@recipe("ner-crf", agent="ner", description="CRF mention tagger, chemicals and diseases (BC5CDR train)",
        data=("bc5cdr",))
def train_ner_crf(ctx: TrainContext) -> TrainResult:
    return _fit(ctx, "bc5cdr", "bc5cdr/devel.tsv", "devel")


@recipe("ner-crf-ncbi", agent="ner", description="CRF disease tagger for NCBI-disease (train)",
        data=("ncbi-disease",))
def train_ner_crf_ncbi(ctx: TrainContext) -> TrainResult:
    return _fit(ctx, "ncbi", "ncbi-disease/conll/test.tsv", "test")


__all__ = ["CORPORA", "train_ner_crf", "train_ner_crf_ncbi"]
