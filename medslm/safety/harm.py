"""Requests for harmful medical content (MedSafetyBench style), for question answering and patient messages.

Three signals: rules (phrases that are certain: "falsify the records", "without consent", "overdose"),
a logistic-regression head on MiniLM sentence embeddings trained on MedSafetyBench *train* against
benign clinical text (the head ships as package data, ``data/harm_head.json``; :func:`train_harm_head`
rebuilds it), and the guardian SLM's choice probability for texts the first two leave in doubt.

A long text is cut into segments (a few sentences each); its score is the highest segment score.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.safety.heads import LinearHead, fit_logistic, load_head

_HARM_RULES = [
    r"\b(?:falsif(?:y|ied|ying)|fabricat(?:e|ing)|forg(?:e|ing)|doctor(?:ing)?|alter(?:ing)?|tamper(?:ing)?\s+with|backdat(?:e|ing))\b[^.?!]{0,40}\b(?:records?|charts?|documentation|results|data|prescriptions?|signatures?|notes?|reports?|certificates?|claims?)",
    r"\bwithout\s+(?:the\s+)?(?:patient'?s?\s+|their\s+|his\s+|her\s+|informed\s+)?(?:consent|permission|knowledge|authori[sz]ation|telling|informing|reporting|notifying|a\s+prescription|a\s+license|being\s+(?:detected|caught|noticed|traced))",
    r"\b(?:avoid|evade|bypass|circumvent|get\s+around|skirt|dodge|escape)\b[^.?!]{0,40}\b(?:detection|regulations?|laws?|the\s+FDA|oversight|reporting|audits?|liability|accountability|investigation|authorities|licensing|malpractice|HIPAA|consent)",
    r"\b(?:how\s+(?:can|could|do|would|might|should)\s+(?:I|we|one|a|an|the|you|someone|doctors?|physicians?|nurses?|clinicians?|pharmacists?|providers?|hospitals?)\b)[^.?!]{0,80}\b(?:mock|belittle|humiliate|ridicule|shame|deceive|mislead|manipulate|coerce|exploit|discriminat|exclude|refuse\s+(?:to\s+)?(?:treat|care|serve)|deny\s+(?:care|treatment)|overcharge|upcode|defraud|sell|harm|poison|overdose|sedate|restrain|lie|trick|pressure|intimidate|neglect|abandon|ignore|dismiss)",
    r"\b(?:lethal|fatal|deadly)\s+(?:dose|amount|combination|injection)",
    r"\b(?:overdose\s+(?:someone|a\s+patient|him|her|them)|poison(?:ing)?\s+(?:someone|a\s+patient|him|her|them)|kill\s+(?:a\s+patient|someone|him|her|them|myself|yourself)|end\s+(?:my|their|his|her)\s+life)",
    r"\b(?:insurance|medicare|medicaid|billing)\s+fraud\b|\bupcod(?:e|ing)\b|\bkickbacks?\b|\bpill\s+mill\b",
    r"\b(?:obtain|get|acquire|buy|prescribe)\b[^.?!]{0,40}\b(?:opioids?|oxycodone|fentanyl|controlled\s+substances?|narcotics?|benzodiazepines?|adderall)\b[^.?!]{0,40}\b(?:without|illegally|for\s+(?:recreational|personal|non-?medical)\s+use|to\s+sell|for\s+resale)",
    r"\b(?:misinformation|disinformation|anti-?vax|false\s+claims?|conspiracy)\b[^.?!]{0,60}\b(?:spread|promote|convince|persuade|write|create|campaign)|\b(?:spread|promote|convince|persuade|write|create)\b[^.?!]{0,60}\b(?:misinformation|disinformation|vaccines?\s+cause|false\s+claims?)",
    r"\b(?:share|disclose|leak|sell|post|publish|reveal)\b[^.?!]{0,40}\b(?:patient(?:'s|s'|s)?\s+(?:records?|information|data|diagnos[ie]s|history|details|identity)|medical\s+records?|PHI|health\s+information)\b[^.?!]{0,60}\b(?:without|to\s+(?:the\s+)?(?:media|press|employer|public|social\s+media|third\s+part))",
    r"\b(?:unnecessary|unneeded|needless)\s+(?:tests?|procedures?|surgery|surgeries|treatments?|prescriptions?|imaging)\b[^.?!]{0,60}\b(?:profit|money|revenue|bill|income|financial)",
]
_HARM_RX = [re.compile(p, re.IGNORECASE) for p in _HARM_RULES]


def harm_rule_score(text: str) -> float:
    """0.9 when a rule for a certainly harmful request matches (1 - 0.1**n for n matching rules), else 0."""
    n = sum(1 for rx in _HARM_RX if rx.search(text))
    return 0.0 if n == 0 else round(1 - 0.1**n, 4)


def segments(text: str, *, max_words: int = 60) -> list[str]:
    """Cut ``text`` into segments of whole sentences (or dialogue turns) of at most ~``max_words`` words."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text) if p.strip()]
    out: list[str] = []
    cur: list[str] = []
    n = 0
    for p in parts:
        w = len(p.split())
        if cur and n + w > max_words:
            out.append(" ".join(cur))
            cur, n = [], 0
        cur.append(p)
        n += w
    if cur:
        out.append(" ".join(cur))
    return out or [text.strip()]


HarmHead = LinearHead


def default_head() -> LinearHead | None:
    return load_head("harm_head")


@dataclass(frozen=True)
class HarmScore:
    rule: float
    classifier: float | None  # highest segment probability, None without the head
    segment: int  # index of the highest-scoring segment

    @property
    def combined(self) -> float:
        if self.classifier is None:
            return self.rule
        return 1 - (1 - self.rule) * (1 - self.classifier)


def score_texts(texts: Sequence[str], head: HarmHead | None = None) -> list[HarmScore]:
    """Rule and classifier scores of each text (classifier: max over its segments)."""
    head = head or default_head()
    out: list[HarmScore] = []
    if head is None:
        return [HarmScore(max((harm_rule_score(s) for s in segments(t)), default=0.0), None, 0) for t in texts]
    from medslm.safety._embed import embed

    segs = [segments(t) for t in texts]
    flat = [s for ss in segs for s in ss]
    probs = head.proba(embed(flat)) if flat else []
    i = 0
    for ss in segs:
        p = [float(x) for x in probs[i : i + len(ss)]]
        i += len(ss)
        best = max(range(len(ss)), key=lambda k: p[k])
        rule = max(harm_rule_score(s) for s in ss)
        out.append(HarmScore(rule, p[best], best))
    return out


# ---- training ------------------------------------------------------------------------------------------
def read_medsafetybench(data_dir: Path | str, split: str = "train") -> list[tuple[str, str]]:
    """(harmful_request, group) pairs, group = 'gpt4/category_1' etc."""
    import csv

    base = Path(data_dir) / "medsafetybench" / split
    rows: list[tuple[str, str]] = []
    for f in sorted(base.glob("*/category_*.csv")):
        with f.open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                req = (r.get("harmful_medical_request") or "").strip()
                if req:
                    rows.append((req, f"{f.parent.name}/{f.stem}"))
    return rows


def read_benign(data_dir: Path | str, *, heldout: bool) -> dict[str, list[str]]:
    """Benign clinical texts by source. ``heldout=False``: training splits; True: splits never trained on."""
    import csv

    csv.field_size_limit(10**9)
    d = Path(data_dir)
    out: dict[str, list[str]] = {}

    def rows(path: Path) -> Iterable[dict[str, str]]:
        if not path.exists():
            return []
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))

    if heldout:
        mts = [d / "mts-dialog" / n for n in ("MTS-Dialog-ValidationSet.csv", "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv", "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv")]
        aci = [d / "aci-bench" / "valid.csv"]
    else:
        mts = [d / "mts-dialog" / "MTS-Dialog-TrainingSet.csv"]
        aci = [d / "aci-bench" / "train.csv"]
    out["mts-dialog/dialogue"] = [r["dialogue"] for p in mts for r in rows(p) if r.get("dialogue")]
    out["mts-dialog/section_text"] = [r["section_text"] for p in mts for r in rows(p) if r.get("section_text")]
    out["aci-bench/dialogue"] = [r["dialogue"] for p in aci for r in rows(p) if r.get("dialogue")]
    out["aci-bench/note"] = [r["note"] for p in aci for r in rows(p) if r.get("note")]
    # consumer health questions and research questions: benign *questions* (hard negatives)
    qs = _read_questions(d)
    half = len(qs) // 2
    out["questions"] = qs[half:] if heldout else qs[:half]
    return {k: v for k, v in out.items() if v}


def _read_questions(d: Path) -> list[str]:
    qs: list[str] = []
    pq = d / "pubmedqa" / "ori_pqal.json"
    if pq.exists():
        data = json.loads(pq.read_text(encoding="utf-8"))
        qs += [v["QUESTION"] for _, v in sorted(data.items()) if v.get("QUESTION")]
    mq = d / "meqsum" / "MeQSum_ACL2019_BenAbacha_Demner-Fushman.xlsx"
    if mq.exists():
        try:
            import warnings

            import openpyxl

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wb = openpyxl.load_workbook(mq, read_only=True)
            ws = wb.active
            for i, row in enumerate(ws.iter_rows(values_only=True)):
                if i and row and len(row) > 1 and row[1]:
                    qs.append(str(row[1]))
            wb.close()
        except ImportError:
            pass
    # interleave deterministically so both halves hold both sources
    return [q for _, q in sorted(enumerate(qs), key=lambda t: (t[0] % 2, t[0]))]


def train_harm_head(data_dir: Path | str, *, folds: int = 5, target_fpr: float = 0.02, seed: int = 0) -> tuple[HarmHead, dict[str, Any]]:
    """Fit the head on MedSafetyBench train vs benign training splits; report k-fold CV figures.

    The threshold is the lowest that keeps the out-of-fold false-positive rate on benign *documents*
    (max over segments) at or under ``target_fpr``.
    """
    import numpy as np

    from medslm.safety._embed import embed

    harmful = [t for t, _ in read_medsafetybench(data_dir)]
    benign = read_benign(data_dir, heldout=False)
    docs: list[tuple[str, int, str]] = [(t, 1, "medsafetybench") for t in harmful]
    docs += [(t, 0, src) for src, ts in benign.items() for t in ts]
    seg_doc: list[int] = []
    seg_txt: list[str] = []
    for i, (t, _, _) in enumerate(docs):
        for s in segments(t):
            seg_doc.append(i)
            seg_txt.append(s)
    emb = embed(seg_txt)
    seg_doc_a = np.asarray(seg_doc)
    y_doc = np.asarray([lab for _, lab, _ in docs])
    rng = np.random.default_rng(seed)
    fold_of_doc = rng.integers(0, folds, size=len(docs))
    oof_doc = np.zeros(len(docs))
    for k in range(folds):
        tr = fold_of_doc[seg_doc_a] != k
        w, b = fit_logistic(emb[tr], y_doc[seg_doc_a][tr])
        te = ~tr
        p = 1 / (1 + np.exp(-(emb[te] @ w + b)))
        for d, pp in zip(seg_doc_a[te], p, strict=True):
            oof_doc[d] = max(oof_doc[d], pp)
    neg = np.sort(oof_doc[y_doc == 0])
    idx = min(len(neg) - 1, int(math.floor(len(neg) * (1 - target_fpr))))
    threshold = float(max(0.5, neg[idx] + 1e-6)) if len(neg) else 0.5
    recall = float((oof_doc[y_doc == 1] >= threshold).mean())
    fpr = float((oof_doc[y_doc == 0] >= threshold).mean())
    w, b = fit_logistic(emb, y_doc[seg_doc_a])
    meta = {
        "trained_on": "medsafetybench/train (harmful) vs mts-dialog train, aci-bench train, half of meqsum+pubmedqa questions",
        "segments": len(seg_txt),
        "docs": len(docs),
        "cv_folds": folds,
        "cv_recall": round(recall, 4),
        "cv_fpr": round(fpr, 4),
        "target_fpr": target_fpr,
    }
    return HarmHead(tuple(float(v) for v in w), b, threshold, meta), meta


__all__ = ["HarmHead", "HarmScore", "default_head", "harm_rule_score", "read_benign", "read_medsafetybench", "score_texts", "segments", "train_harm_head"]
