"""Recipe for the NER specialist ``ner-slm``: MiniLM + LoRA with one token head per corpus.

- **Fit**: NCBI-disease *train* (the original PubTator abstracts, split into sentences with their real
  spacing; head ``ncbi``: diseases) and BC5CDR *train* (``train.tsv``; head ``bc5cdr``: chemicals and
  diseases). One head per corpus because the corpora annotate different label sets and follow different
  disease guidelines: a single head would learn that a chemical in an NCBI sentence is "outside".
- **Tune**: NCBI-disease *devel* only: the epoch kept (early stopping on strict span F1 of the ``ncbi``
  head) and the fusion weight ``w`` of the SLM against the CRF trained on NCBI-disease train
  (``ner-crf-ncbi``), written to ``fusion.json`` and used for both heads.
- **Report**: NCBI-disease *test* and BC5CDR *devel* (never used to fit or tune), the SLM alone and fused.

The CRFs it fuses with are read from the same output folder when they were trained in the same run,
otherwise from the shipped artifacts (``medslm train ner`` trains the CRFs first).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe, write_json

log = logging.getLogger(__name__)

NCBI_LICENCE = "public domain (NCBI-disease, US Government work)"
BC5CDR_LICENCE = "CC BY 4.0 (BC5CDR, BioCreative V CDR)"
HEADS = {"ncbi": ["Disease"], "bc5cdr": ["Chemical", "Disease"]}
WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def sentence_examples(docs: Sequence[Any], head: str) -> list[tuple[str, list[tuple[int, int, str]], str]]:
    """``(sentence, spans relative to it, head)`` from documents (spans crossing a sentence end are dropped)."""
    from medslm.agents.ner import split_sentences

    out = []
    for d in docs:
        for a, b in split_sentences(d.text):
            spans = [(s - a, e - a, lab) for s, e, lab in d.spans if a <= s and e <= b]
            out.append((d.text[a:b], spans, head))
    return out


def doc_counts(docs: Sequence[Any], preds: Sequence[Sequence[tuple[int, int, str]]],
               labels: Sequence[str]) -> list[tuple[int, int, int]]:
    """Per-document ``(tp, fp, fn)`` of strict span matches (start, end and label)."""
    out = []
    for d, p in zip(docs, preds, strict=True):
        gold = {(s, e, lab) for s, e, lab in d.spans if lab in labels}
        pred = {(s, e, lab) for s, e, lab in p if lab in labels}
        out.append((len(gold & pred), len(pred - gold), len(gold - pred)))
    return out


def f1(counts: Sequence[tuple[int, int, int]]) -> float:
    tp = sum(c[0] for c in counts)
    fp = sum(c[1] for c in counts)
    fn = sum(c[2] for c in counts)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _dists(docs: Sequence[Any], predictor: Any, head: str, crf: Any) -> list[Any]:
    from medslm.agents.ner import split_sentences
    from medslm.agents.ner_slm import window_distributions

    labels = ["O", *[f"{p}-{lab}" for lab in HEADS[head] for p in ("B", "I")]]
    return [window_distributions(d.text, split_sentences(d.text), predictor, head, labels, crf) for d in docs]


def _spans(dists: Sequence[Any], weight: float, head: str) -> list[list[tuple[int, int, str]]]:
    from medslm.agents.ner_slm import fuse

    labels = ["O", *[f"{p}-{lab}" for lab in HEADS[head] for p in ("B", "I")]]
    return [[(s.start, s.end, s.label) for s in fuse(d, weight, labels)] for d in dists]


def _crf(component: str, ctx: TrainContext) -> Any:
    from medslm.agents.crf_tagger import CrfTagger, kg_gazetteer
    from medslm.artifacts import artifact_dir
    from medslm.knowledge import KnowledgeGraph

    folder = artifact_dir(component, ctx.out.parent)
    return CrfTagger(folder, gazetteer=kg_gazetteer(KnowledgeGraph.default())).load()


def ncbi_dev_metric(dev: dict[str, Any]) -> Any:
    """The early-stopping metric of a fit job: strict span F1 of the ``ncbi`` head alone on ``dev["docs"]``."""
    from medslm.evals.ner import Doc

    docs = [Doc(i, t, tuple(tuple(x) for x in sp)) for i, t, sp in dev["docs"]]

    def metric(live: Any) -> float:
        return f1(doc_counts(docs, _spans(_dists(docs, live, "ncbi", None), 1.0, "ncbi"), ["Disease"]))

    return metric


def prepare(ctx: TrainContext) -> tuple[Any, dict[str, Any]]:
    """The fit job of ``ner-slm`` (examples, settings, dev data) and the report data."""
    from medslm.agents.crf_tagger import iob_spans, read_iob
    from medslm.evals.ner import read_iob_docs, read_ncbi
    from medslm.training.encoder_lora import EncoderTask, FitJob, LoraSettings

    ncbi_train = ctx.data_file("ncbi-disease/original/NCBItrainset_corpus.txt", split="train", licence=NCBI_LICENCE)
    ctx.data_file("ncbi-disease/original/NCBIdevelopset_corpus.txt", split="devel", use="tune", licence=NCBI_LICENCE)
    ctx.data_file("ncbi-disease/original/NCBItestset_corpus.txt", split="test", use="report", licence=NCBI_LICENCE)
    bc_train = ctx.data_file("bc5cdr/train.tsv", split="train", licence=BC5CDR_LICENCE)
    bc_devel = ctx.data_file("bc5cdr/devel.tsv", split="devel", use="report", licence=BC5CDR_LICENCE)
    root = ncbi_train.parents[2]
    examples: list[Any] = sentence_examples(read_ncbi(root, "train"), "ncbi")
    for toks, tags in read_iob(bc_train):
        text, offs = "", []
        for t in toks:
            if text:
                text += " "
            offs.append((len(text), len(text) + len(t)))
            text += t
        examples.append((text, [(offs[s][0], offs[e - 1][1], lab) for s, e, lab in iob_spans(tags)], "bc5cdr"))
    dev_docs = read_ncbi(root, "devel")
    report = {"dev_docs": dev_docs, "test_docs": read_ncbi(root, "test"), "bc_docs": read_iob_docs(bc_devel)}
    settings = LoraSettings(r=16, alpha=32, dropout=0.1, epochs=6, lr=8e-4, head_lr=3e-3, batch_size=16, patience=2)
    max_length = 128
    if ctx.quick:
        rng = ctx.rng()
        rng.shuffle(examples)
        examples = [e for e in examples if e[2] == "ncbi"][:24] + [e for e in examples if e[2] == "bc5cdr"][:24]
        report = {k: v[:2] for k, v in report.items()}
        settings = LoraSettings(r=4, alpha=8, epochs=1, batch_size=8, max_steps=3)
        max_length = 48
    task = EncoderTask("token", ["Disease"], max_length=max_length, heads=HEADS,
                       extra={"heads": {"ncbi": "NCBI-disease train (diseases)",
                                        "bc5cdr": "BC5CDR train (chemicals, diseases)"}})
    dev = {"metric": "medslm.training.ner_slm:ncbi_dev_metric",
           "docs": [[d.id, d.text, [list(x) for x in d.spans]] for d in report["dev_docs"]]}
    return FitJob("ner-slm", task, examples, settings, ctx.seed, dev), report


@recipe("ner-slm", agent="ner",
        description="NER specialist: MiniLM + LoRA token classifier, heads ncbi (NCBI-disease train) and bc5cdr "
                    "(BC5CDR train), fused with the CRF (weight tuned on NCBI-disease devel)",
        data=("ncbi-disease", "bc5cdr"))
def train_ner_slm(ctx: TrainContext) -> TrainResult:
    from medslm.training.encoder_lora import base_record, fit_job

    job, report = prepare(ctx)
    settings, max_length, examples = job.settings, job.task.max_length, job.examples
    dev_docs, test_docs, bc_docs = report["dev_docs"], report["test_docs"], report["bc_docs"]
    history = fit_job(job, ctx.out, device=ctx.device, log_every=100)
    log.info("ner-slm trained: %s", history)

    # fusion weight with the NCBI-train CRF, tuned on NCBI-disease devel
    from medslm.models.encoder import EncoderClassifier

    model = EncoderClassifier(ctx.out, device=ctx.device, batch_size=64).load()
    crf_ncbi, crf_bc = _crf("ner-crf-ncbi", ctx), _crf("ner-crf", ctx)
    dev = _dists(dev_docs, model, "ncbi", crf_ncbi)
    grid = {w: f1(doc_counts(dev_docs, _spans(dev, w, "ncbi"), ["Disease"])) for w in WEIGHTS}
    best_w = max(grid, key=lambda w: (round(grid[w], 4), w))
    write_json(ctx.out / "fusion.json", {
        "weight": best_w, "tuned_on": "NCBI-disease devel (strict span F1, ncbi head with ner-crf-ncbi)",
        "grid": {str(w): round(v, 4) for w, v in grid.items()},
        "crf": {"ncbi": "ner-crf-ncbi", "bc5cdr": "ner-crf"}})

    figures: dict[str, float] = {"ncbi-disease_devel_slm_strict_f1": grid[1.0],
                                 "ncbi-disease_devel_fused_strict_f1": grid[best_w]}
    test = _dists(test_docs, model, "ncbi", crf_ncbi)
    figures["ncbi-disease_test_slm_strict_f1"] = f1(doc_counts(test_docs, _spans(test, 1.0, "ncbi"), ["Disease"]))
    figures["ncbi-disease_test_crf_strict_f1"] = f1(doc_counts(test_docs, _spans(test, 0.0, "ncbi"), ["Disease"]))
    figures["ncbi-disease_test_fused_strict_f1"] = f1(doc_counts(test_docs, _spans(test, best_w, "ncbi"), ["Disease"]))
    bc = _dists(bc_docs, model, "bc5cdr", crf_bc)
    for name, w in (("slm", 1.0), ("crf", 0.0), ("fused", best_w)):
        preds = _spans(bc, w, "bc5cdr")
        figures[f"bc5cdr_devel_{name}_strict_f1"] = f1(doc_counts(bc_docs, preds, ["Chemical", "Disease"]))
        for lab in ("Chemical", "Disease"):
            figures[f"bc5cdr_devel_{name}_{lab.lower()}_strict_f1"] = f1(doc_counts(bc_docs, preds, [lab]))
    return TrainResult(
        hyperparameters={"lora_r": settings.r, "lora_alpha": settings.alpha, "lora_dropout": settings.dropout,
                         "target_modules": list(settings.target_modules), "lr": settings.lr, "head_lr": settings.head_lr,
                         "batch_size": settings.batch_size, "max_epochs": settings.epochs, "patience": settings.patience,
                         "max_length": max_length, "sentences": len(examples), "heads": HEADS,
                         "epochs": history["epochs"], "trainable_params": history["trainable_params"],
                         "fit_device": history.get("device"), "fit_seconds": history.get("seconds"),
                         "fit_key": job.key(), "fit_reused": history.get("reused", ""),
                         "fusion_weight": best_w, "fusion_grid": {str(w): round(v, 4) for w, v in grid.items()}},
        tuning="NCBI-disease devel: the epoch kept (early stopping on the ncbi head's strict span F1) and the "
               "SLM/CRF fusion weight (grid " + ", ".join(str(w) for w in WEIGHTS) + "); BC5CDR devel and "
               "NCBI-disease test are report splits only",
        figures=figures,
        base_model=base_record(),
    )


__all__ = ["HEADS", "doc_counts", "f1", "ncbi_dev_metric", "prepare", "sentence_examples", "train_ner_slm"]
