"""Held-out agent results for calibration: each agent run as it ships on data it was never fitted on.

For every calibrated agent, :func:`heldout` returns the agent's own confidence on held-out items and
whether each result was **correct** (defined per agent below, printed in the manifests and docs):

| agent | held-out data | a result is correct when |
|---|---|---|
| ``triage`` | KTAS ``data_dev.csv``, stratified 5-fold CV: the acuity model refitted on 4 folds, the agent run on the 5th | the level equals ``KTAS_expert`` |
| ``icd`` | CodiEsp **train**, 3-fold CV: the ICD coder refitted on 2 folds, NER then ICD run on the 3rd | the note's code-set F1 vs the gold diagnosis codes is >= 0.5 |
| ``ner`` | NCBI-disease **devel** abstracts (the shipped tagger is fitted on BC5CDR train) | its problem mentions cover >= 80 % of the gold disease mentions (overlap match; NCBI labels diseases only, not the symptoms and findings the agent also reports, so precision against it is not measured) |
| ``summarize`` | MTS-Dialog **train**, the held-out tune slice of the ``summarize-lora`` recipe (5 %, seeded; the adapter is fitted on the rest) | ROUGE-L F1 vs the reference section is >= 0.2 and every summary sentence passed the faithfulness check |

Nothing here is used for reporting elsewhere: CodiEsp dev, NCBI-disease test, MTS-Dialog valid and the
KTAS figures of the other recipes stay untouched. Calibration and thresholds are then fitted on these
items by :mod:`medslm.training.calibration` (cross-fitted, so its ECE figures are out of sample).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.evals.metrics import set_f1
from medslm.records import Note

#: what "correct" means per agent (recorded in the calibration artifacts)
CORRECT = {
    "triage": "level == KTAS_expert",
    "icd": "note code-set F1 vs gold CodiEsp diagnosis codes >= 0.5",
    "ner": "recall of gold NCBI disease mentions by its problem mentions (overlap) >= 0.8",
    "summarize": "ROUGE-L F1 vs the MTS-Dialog reference >= 0.2 and every sentence supported",
}


@dataclass
class HeldOut:
    """One agent's held-out results: its own confidence, whether each was right, and a quality score."""

    agent: str
    split: str
    correct_means: str
    confidences: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # (path, split, use, licence); use "fit": the calibrator is fitted on these runs (held out from the agent)
    data: list[tuple[str, str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, item_id: str, confidence: float, correct: bool, quality: float) -> None:
        self.ids.append(item_id)
        self.confidences.append(float(confidence))
        self.correct.append(bool(correct))
        self.quality.append(float(quality))


def _settings(settings: Any) -> Any:
    from medslm.settings import Settings

    return settings or Settings()


def _f1(pred: set[Any], gold: set[Any]) -> float:
    return set_f1(pred, gold)


# ------------------------------------------------------------------------------------------ triage
def triage_heldout(data_dir: Path, *, artifacts: str | None, limit: int | None, seed: int, settings: Any = None,
                   quick: bool = False,
                   folds: int = 5) -> HeldOut:
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from medslm.agents.triage import TriageAgent
    from medslm.agents.triage_features import AcuityModel
    from medslm.evals.ktas import fit_triage_model, read_ktas

    s = _settings(settings)
    rows = read_ktas(data_dir)
    y = np.asarray([r["expert"] for r in rows])
    with warnings.catch_warnings():  # KTAS 1 has fewer members than folds: expected
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    keep = set(order[:limit]) if limit else set(order)
    out = HeldOut("triage", f"KTAS data_dev.csv, stratified {folds}-fold CV (out of fold; {len(keep)} of {len(rows)} "
                  "visits run)", CORRECT["triage"],
                  data=[("ktas/data_dev.csv", "dev (all rows, CV folds)", "fit",
                         "CC BY 4.0 (Moon et al., PLOS ONE 2019, S1 data)")])
    t0 = time.perf_counter()
    # The shipped specialist (triage-slm) is fitted on every KTAS dev row, so its own probabilities would be
    # in sample here: the agent reads instead the out-of-fold distributions of the specialist's nested CV
    # (medslm.training.triage_slm.cv_triage_slm, cached; each row scored by an adapter fitted without its fold), and
    # the folds are that CV's, so the acuity model refitted per fold never sees the row either. The shipped
    # decision settings (fusion weight, under-triage cost) are kept. --quick runs the shipped adapter.
    oof: dict[str, dict[int, float]] = {}
    probe = TriageAgent(model=s.model_for("triage"), artifacts=artifacts, scale="KTAS")
    if probe.uses_specialist and not quick:
        from medslm.training.triage_slm import cv_triage_slm

        cv = cv_triage_slm(data_dir, rows=rows, folds=folds, seed=seed)
        fold_of = {rec["id"]: rec["fold"] for rec in cv["rows"]}
        oof = {rec["id"]: {lv + 1: float(p) for lv, p in enumerate(rec["standard"]["p_slm"])} for rec in cv["rows"]}
        splits = [(np.asarray([i for i, r in enumerate(rows) if fold_of[r["id"]] != k]),
                   np.asarray([i for i, r in enumerate(rows) if fold_of[r["id"]] == k]))
                  for k in sorted(set(fold_of.values()))]
        out.split += "; specialist probabilities out of fold (its nested CV)"
    lm = None
    for train_idx, test_idx in splits:
        model = AcuityModel(fit_triage_model([rows[i] for i in train_idx]))
        agent = TriageAgent(model=lm or s.model_for("triage"), acuity_model=model, artifacts=artifacts, scale="KTAS")
        if probe.uses_specialist:
            agent._specialist = probe.specialist  # loaded once; its tuned fusion weight and cost apply
        for i in test_idx:
            if i not in keep:
                continue
            if oof:
                p_oof = oof[rows[i]["id"]]
                agent.specialist_distribution = lambda texts, p=p_oof: [p for _ in texts]  # type: ignore[method-assign]
            r = agent.run(Note(id=rows[i]["id"], text=rows[i]["note"]), {})
            ok = r.output.level == rows[i]["expert"]
            out.add(rows[i]["id"], r.confidence, ok, float(ok))
        lm = agent._lm  # one language model for every fold
    out.seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ icd
def icd_heldout(data_dir: Path, *, artifacts: str | None, limit: int | None, seed: int, settings: Any = None,
                folds: int = 3, quick: bool = False) -> HeldOut:
    """The shipped NER + ICD agents on CodiEsp **dev**: the coder (ranker, reranker, stackers, thresholds)
    was fitted and tuned on CodiEsp train only, so its confidences on dev are out of sample. The ICD
    quality figures reported on dev do not depend on this calibrator (it changes routing only).
    (``folds`` is kept for the signature; the coder is not refitted.)"""
    from medslm.agents.icd import IcdAgent
    from medslm.agents.ner import NerAgent
    from medslm.evals.icd import read_codiesp

    s = _settings(settings)
    docs = read_codiesp(data_dir, "dev", limit=45 if quick else None)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    keep = order[:limit] if limit else order
    licence = "CC BY 4.0 (CodiEsp, CLEF eHealth 2020)"
    out = HeldOut("icd", f"CodiEsp dev (English): the shipped NER + ICD agents ({len(keep)} of {len(docs)} "
                  "documents); the coder never saw dev", CORRECT["icd"],
                  data=[("codiesp/dev/devD.tsv", "dev", "fit", licence),
                        ("codiesp/dev/text_files_en/*.txt", "dev", "fit", licence)])
    t0 = time.perf_counter()
    extra = {"artifacts": artifacts} if artifacts else {}
    agent = IcdAgent(model=s.model_for("icd"), **extra)
    ner = NerAgent(model=s.model_for("ner"), kg=agent.kg, **extra)
    for i in keep:
        d = docs[i]
        note = Note(id=d.id, text=d.text)
        ents = ner.run(note, {})
        r = agent.run(note, {"entities": ents})
        f1 = _f1({c.code for c in r.output}, set(d.codes))
        out.add(d.id, r.confidence, f1 >= 0.5, f1)
    out.seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ ner
def ner_heldout(data_dir: Path, *, artifacts: str | None, limit: int | None, seed: int, settings: Any = None,
                quick: bool = False) -> HeldOut:
    from medslm.agents.ner import NerAgent
    from medslm.evals.ner import read_ncbi
    from medslm.records import EntityType

    s = _settings(settings)
    docs = read_ncbi(data_dir, "devel")
    random.Random(seed).shuffle(docs)
    docs = docs[:limit] if limit else docs
    out = HeldOut("ner", f"NCBI-disease devel ({len(docs)} abstracts; the shipped tagger is fitted on BC5CDR train)",
                  CORRECT["ner"],
                  data=[("ncbi-disease/original/NCBIdevelopset_corpus.txt", "devel", "fit",
                         "public domain (NCBI-disease, Dogan et al. 2014)")])
    agent = NerAgent(model=s.model_for("ner"), **({"artifacts": artifacts} if artifacts else {}))
    t0 = time.perf_counter()
    for d in docs:
        r = agent.run(Note(id=d.id, text=d.text), {})
        pred = [(e.start, e.end) for e in r.output if e.type == EntityType.PROBLEM]
        gold = [(a, b) for a, b, _ in d.spans]
        tp_p = sum(any(a < ge and ga < b for ga, ge in gold) for a, b in pred)
        tp_g = sum(any(a < pe and pa < b for pa, pe in pred) for a, b in gold)
        p = tp_p / len(pred) if pred else (1.0 if not gold else 0.0)
        rc = tp_g / len(gold) if gold else (1.0 if not pred else 0.0)
        f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
        out.add(d.id, r.confidence, rc >= 0.8, f1)
    out.seconds = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ summarize
def summarize_heldout(data_dir: Path, *, artifacts: str | None, limit: int | None, seed: int,
                      settings: Any = None, quick: bool = False) -> HeldOut:
    from rouge_score import rouge_scorer

    from medslm.agents.summarize import SummarizeAgent
    from medslm.evals.summarize import read_mts

    s = _settings(settings)
    rows = read_mts(data_dir, "TrainingSet")
    # summarize-lora is fitted on MTS-Dialog train less its tune slice (5 %, seeded, which only picks the
    # epoch): the calibration runs that slice, chosen exactly as the recipe chooses it (seed 0 as shipped)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    tune = [rows[i] for i in order[: max(1, len(rows) // 20)]]
    rows = tune[:limit] if limit else tune
    out = HeldOut("summarize", f"MTS-Dialog train, the summarize-lora recipe's held-out tune slice ({len(rows)} of "
                  f"{len(tune)} dialogues; the adapter is not fitted on it)", CORRECT["summarize"],
                  data=[("mts-dialog/MTS-Dialog-TrainingSet.csv", "train (summarize-lora's tune slice)", "fit",
                         "CC BY 4.0 (MTS-Dialog)")])
    agent = SummarizeAgent(model=s.model_for("summarize"))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    t0 = time.perf_counter()
    for row in rows:
        r = agent.run(Note(id=f"mts-train-{row['ID']}", text=row["dialogue"]), {})
        text = " ".join(x.text for sec in r.output.sections for x in sec.sentences)
        rl = scorer.score(row["section_text"], text)["rougeL"].fmeasure if text else 0.0
        supported = all(x.supported for sec in r.output.sections for x in sec.sentences)
        out.add(f"mts-train-{row['ID']}", r.confidence, rl >= 0.2 and supported and bool(text), rl)
    out.seconds = time.perf_counter() - t0
    return out


HELDOUT: dict[str, Callable[..., HeldOut]] = {
    "triage": triage_heldout,
    "icd": icd_heldout,
    "ner": ner_heldout,
    "summarize": summarize_heldout,
}


def heldout(agent: str, data_dir: str | Path, *, artifacts: str | Path | None = None, limit: int | None = None,
            seed: int = 0, settings: Any = None, quick: bool = False) -> HeldOut:
    """The held-out results of ``agent`` (see the module docstring for the data and "correct")."""
    from medslm.errors import UnknownNameError

    if agent not in HELDOUT:
        raise UnknownNameError("calibrated agent", agent, list(HELDOUT))
    return HELDOUT[agent](Path(data_dir), artifacts=str(artifacts) if artifacts else None, limit=limit, seed=seed,
                          settings=settings, quick=quick)


def cross_fitted(confidences: Sequence[float], correct: Sequence[bool], methods: Sequence[str], *, folds: int = 5,
                 seed: int = 0) -> dict[str, list[float]]:
    """Each item's calibrated confidence by a calibrator of each method fitted on the other folds."""
    from medslm.routers.calibration import Calibrator

    n = len(confidences)
    idx = list(range(n))
    random.Random(seed + 7).shuffle(idx)
    fold_of = {i: k % folds for k, i in enumerate(idx)}
    out = {m: [0.0] * n for m in methods}
    for f in range(folds):
        train = [i for i in range(n) if fold_of[i] != f]
        test = [i for i in range(n) if fold_of[i] == f]
        if not train or not test:
            continue
        for m in methods:
            cal = Calibrator.fit([confidences[i] for i in train], [correct[i] for i in train], method=m)
            for i in test:
                out[m][i] = cal(confidences[i])
    return out


__all__ = ["CORRECT", "HELDOUT", "HeldOut", "cross_fitted", "heldout"]
