"""Task metrics with bootstrap confidence intervals.

- NER: strict / lenient span P/R/F1 over character spans (:func:`span_prf`), entity-level F1 over IOB
  tags with seqeval (:func:`iob_prf`).
- Coding: micro P/R/F1 over code sets (:func:`micro_prf`), MAP over ranked code lists
  (:func:`mean_average_precision`).
- Triage: accuracy, quadratic-weighted κ (sklearn), under-/over-triage rates (:func:`triage_scores`).
- Summaries: ROUGE-1/2/L F (rouge-score, :func:`rouge`), embedding cosine similarity with
  all-MiniLM-L6-v2 (:func:`embedding_similarity`).
- Safety: recall on harmful requests and false-positive rate on benign ones (:func:`safety_scores`).
- Calibration: ECE and reliability bins (from :mod:`medslm.routers.calibration`).
- :func:`bootstrap_ci`: a percentile interval for any metric over per-item data.

Heavy libraries (numpy, sklearn, seqeval, rouge-score, torch) are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

__all__ = [
    "Interval",
    "average_precision",
    "bootstrap_ci",
    "ece",
    "embedding_similarity",
    "iob_prf",
    "mean_average_precision",
    "micro_prf",
    "prf",
    "reliability_bins",
    "rouge",
    "safety_scores",
    "span_prf",
    "triage_scores",
]

Span3 = tuple[int, int, str]
Interval = tuple[float, float]


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


# ----------------------------------------------------------------------------------------- NER
def _span_counts(gold: Iterable[Span3], pred: Iterable[Span3], mode: str, typed: bool) -> tuple[int, int, int]:
    g = sorted(set(gold))
    p = sorted(set(pred))
    if mode == "strict":
        if not typed:
            g = sorted({(s, e, "") for s, e, _ in g})
            p = sorted({(s, e, "") for s, e, _ in p})
        tp = len(set(g) & set(p))
        return tp, len(p) - tp, len(g) - tp
    if mode != "lenient":
        raise ValueError(f"span match mode must be 'strict' or 'lenient', not {mode!r}")
    # lenient: a one-to-one matching of overlapping spans (of the same type when typed), greedy by overlap
    pairs = []
    for i, (gs, ge, gt) in enumerate(g):
        for j, (ps, pe, pt) in enumerate(p):
            ov = min(ge, pe) - max(gs, ps)
            if ov > 0 and (not typed or gt == pt):
                pairs.append((ov, i, j))
    used_g: set[int] = set()
    used_p: set[int] = set()
    for _, i, j in sorted(pairs, key=lambda x: (-x[0], x[1], x[2])):
        if i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
    tp = len(used_g)
    return tp, len(p) - tp, len(g) - tp


def span_prf(gold: Sequence[Iterable[Span3]], pred: Sequence[Iterable[Span3]], *, mode: str = "strict",
             typed: bool = True) -> dict[str, float]:
    """Micro P/R/F1 over documents of ``(start, end, type)`` spans.

    ``strict``: exact boundaries (and type when ``typed``). ``lenient``: any character overlap, each gold
    span matched at most once.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold documents but {len(pred)} predicted")
    tp = fp = fn = 0
    for g, p in zip(gold, pred, strict=True):
        a, b, c = _span_counts(g, p, mode, typed)
        tp, fp, fn = tp + a, fp + b, fn + c
    return prf(tp, fp, fn)


def iob_prf(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro P/R/F1 over IOB2 tag sequences (seqeval, strict IOB2 mode)."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    yt, yp = [list(x) for x in y_true], [list(x) for x in y_pred]
    kw: dict[str, Any] = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    return {"precision": float(precision_score(yt, yp, **kw)), "recall": float(recall_score(yt, yp, **kw)),
            "f1": float(f1_score(yt, yp, **kw))}


# ----------------------------------------------------------------------------------------- coding
def micro_prf(gold: Sequence[Iterable[Hashable]], pred: Sequence[Iterable[Hashable]]) -> dict[str, float]:
    """Micro P/R/F1 over per-document label sets (codes)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold documents but {len(pred)} predicted")
    tp = fp = fn = 0
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(g), set(p)
        tp += len(gs & ps)
        fp += len(ps - gs)
        fn += len(gs - ps)
    return prf(tp, fp, fn)


def set_f1(pred: Iterable[Hashable], gold: Iterable[Hashable]) -> float:
    """F1 of one predicted set against one gold set (1.0 when both are empty): a note's code set."""
    p_set, g_set = set(pred), set(gold)
    if not p_set and not g_set:
        return 1.0
    return prf(len(p_set & g_set), len(p_set - g_set), len(g_set - p_set))["f1"]


def average_precision(gold: Iterable[Hashable], ranked: Sequence[Hashable]) -> float:
    """AP of one ranked list: mean of precision@k at each relevant rank, over all gold labels."""
    gs = set(gold)
    if not gs:
        return 0.0
    hits, total, seen = 0, 0.0, set()
    for k, c in enumerate(ranked, start=1):
        if c in gs and c not in seen:
            hits += 1
            total += hits / k
        seen.add(c)
    return total / len(gs)


def mean_average_precision(gold: Sequence[Iterable[Hashable]], ranked: Sequence[Sequence[Hashable]]) -> float:
    """MAP over documents (the CodiEsp ranking metric)."""
    if len(gold) != len(ranked):
        raise ValueError(f"{len(gold)} gold documents but {len(ranked)} ranked lists")
    if not gold:
        return 0.0
    return sum(average_precision(g, r) for g, r in zip(gold, ranked, strict=True)) / len(gold)


# ----------------------------------------------------------------------------------------- triage
def triage_scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy, quadratic-weighted κ, under-triage (predicted less urgent = higher level) and over-triage."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold levels but {len(y_pred)} predicted")
    n = len(y_true)
    if n == 0:
        return {"accuracy": 0.0, "kappa_qw": 0.0, "under_triage": 0.0, "over_triage": 0.0, "n": 0}
    from sklearn.metrics import cohen_kappa_score

    t, p = [int(x) for x in y_true], [int(x) for x in y_pred]
    if len(set(t) | set(p)) > 1:
        kappa = float(cohen_kappa_score(t, p, weights="quadratic", labels=[1, 2, 3, 4, 5]))
    else:
        kappa = 1.0
    return {
        "accuracy": sum(a == b for a, b in zip(t, p, strict=True)) / n,
        "kappa_qw": kappa,
        "under_triage": sum(b > a for a, b in zip(t, p, strict=True)) / n,
        "over_triage": sum(b < a for a, b in zip(t, p, strict=True)) / n,
        "n": n,
    }


# ----------------------------------------------------------------------------------------- summaries
def rouge(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (rouge-score, with stemming)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    tot = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for r, p in zip(references, predictions, strict=True):
        s = sc.score(r, p)
        for k in tot:
            tot[k] += s[k].fmeasure
    return {k: v / len(references) for k, v in tot.items()}


def embedding_similarity(references: Sequence[str], predictions: Sequence[str],
                         embed: Callable[[Sequence[str]], Any] | None = None) -> float:
    """Mean cosine similarity of sentence embeddings (all-MiniLM-L6-v2 unless ``embed`` is given)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        return 0.0
    import numpy as np

    if embed is None:
        from medslm.safety._embed import embed as _embed

        embed = _embed
    a = np.asarray(embed(list(references)), dtype="float64")
    b = np.asarray(embed(list(predictions)), dtype="float64")
    a /= np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b /= np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return float(np.mean(np.sum(a * b, axis=1)))


# ----------------------------------------------------------------------------------------- safety
def safety_scores(harmful: Sequence[bool], flagged: Sequence[bool]) -> dict[str, float]:
    """Recall on harmful items and false-positive rate on benign ones."""
    if len(harmful) != len(flagged):
        raise ValueError(f"{len(harmful)} labels but {len(flagged)} predictions")
    pos = [f for h, f in zip(harmful, flagged, strict=True) if h]
    neg = [f for h, f in zip(harmful, flagged, strict=True) if not h]
    return {"recall": sum(pos) / len(pos) if pos else 0.0, "fpr": sum(neg) / len(neg) if neg else 0.0,
            "n_harmful": len(pos), "n_benign": len(neg)}


# ----------------------------------------------------------------------------------------- calibration
def ece(confidences: Sequence[float], correct: Sequence[bool | int | float], n_bins: int = 10) -> float:
    """Expected calibration error over equal-width bins (the routers' definition)."""
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} outcomes")
    if not confidences:
        return 0.0
    from medslm.routers.calibration import ece as _ece

    return float(_ece(list(confidences), list(correct), n_bins))


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool | int | float],
                     n_bins: int = 10) -> list[dict[str, float]]:
    """Per bin: lower, upper, count, mean confidence and accuracy (for reliability diagrams)."""
    from medslm.routers.calibration import reliability

    return [{"lower": b.lower, "upper": b.upper, "count": b.count, "confidence": b.mean_confidence,
             "accuracy": b.accuracy} for b in reliability(list(confidences), list(correct), n_bins)]


# ----------------------------------------------------------------------------------------- bootstrap
def bootstrap_ci(metric: Callable[..., float], *columns: Sequence[Any], n: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``metric(*columns)``, resampling items (rows) with replacement
    (``scipy.stats.bootstrap`` over the row indexes, so any per-item objects work).

    ``columns`` are parallel per-item sequences (e.g. gold and predicted code sets).
    """
    if not columns or not len(columns[0]):
        return (0.0, 0.0)
    size = len(columns[0])
    if any(len(c) != size for c in columns):
        raise ValueError("bootstrap columns must have the same length")
    if size == 1:  # one item: nothing to resample
        v = float(metric(*columns))
        return (v, v)
    import numpy as np
    from scipy.stats import bootstrap

    def statistic(rows: Any) -> float:
        return float(metric(*([c[i] for i in rows] for c in columns)))

    res = bootstrap((np.arange(size),), statistic, n_resamples=n, confidence_level=1 - alpha,
                    method="percentile", vectorized=False, random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))
