"""Train-split models of the ICD-10-CM coding agent: a document-level code ranker and a candidate stacker.

Fitted on CodiEsp *train* only (English text + diagnosis codes), cached under ``<cache_dir>/icd/``:

- a kernel ridge regression from TF-IDF (1-2 grams) to the train codes (its top 100 codes are candidates) (one dense 500x500 solve, all
  codes at once): which codes documents like this one carry;
- per-code precision of the knowledge graph's lexicon matches on train (how often a match of the code's
  names means the code is gold), smoothed;
- a gradient-boosted stacker over candidate features (ranker score and rank, lexicon evidence, share of
  negated/family mentions, train prior, billability), fitted on out-of-fold features, whose probability
  is the code's confidence.

Every candidate code is a knowledge-graph concept: codes of train documents that are not ICD-10-CM 2026
are dropped before fitting, so nothing the models rank can be invalid.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "icd-model-3"
FEATURES = (
    "ridge", "ridge_rank_inv", "in_ridge", "lex_score", "lex_count", "lex_precision", "lex_ambiguity",
    "neg_share", "prior", "billable", "depth", "entity_hit",
)


@dataclass
class Evidence:
    """What the text says about one candidate code."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    lex_score: float = 0.0
    count: int = 0
    ambiguity: int = 0
    negated: int = 0
    entity_hit: bool = False


class Ridge:
    """Kernel ridge regression from TF-IDF to a multi-label code matrix."""

    def __init__(self, lam: float = 0.1) -> None:
        self.lam = lam

    def fit(self, texts: Sequence[str], labels: Sequence[Sequence[str]]) -> Ridge:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.kernel_ridge import KernelRidge

        self.codes = sorted({c for ls in labels for c in ls})
        ix = {c: i for i, c in enumerate(self.codes)}
        y = np.zeros((len(texts), len(self.codes)), dtype=np.float32)
        for i, ls in enumerate(labels):
            for c in ls:
                y[i, ix[c]] = 1.0
        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, stop_words="english")
        self.x = self.vec.fit_transform(texts)
        k = (self.x @ self.x.T).toarray()  # the linear kernel over TF-IDF rows
        fitted = KernelRidge(alpha=self.lam, kernel="precomputed").fit(k, y)
        self.alpha = np.asarray(fitted.dual_coef_, dtype=np.float32)  # (K + lam I)^-1 y
        return self

    def scores(self, text: str) -> dict[str, float]:
        kd = (self.vec.transform([text]) @ self.x.T).toarray()[0]
        s = kd @ self.alpha
        return {c: float(v) for c, v in zip(self.codes, s, strict=True) if v > 0.01}


def normalize_code(code: str) -> str:
    """CodiEsp's ``"n39.0"`` -> ``"N39.0"`` (upper-case, dot after the third character)."""
    c = code.strip().upper().replace(".", "")
    return c if len(c) <= 3 else f"{c[:3]}.{c[3:]}"


@dataclass(frozen=True)
class CodiespDoc:
    id: str
    text: str
    codes: tuple[str, ...]  # gold diagnosis codes, dotted upper-case ("N39.0")


def codiesp_files(root: Path, split: str) -> tuple[Path, Path]:
    return root / "codiesp" / split / f"{split}D.tsv", root / "codiesp" / split / "text_files_en"


def read_codiesp(root: Path, split: str = "train", limit: int | None = None) -> list[CodiespDoc]:
    """English CodiEsp documents of a split with their gold diagnosis codes (``{split}D.tsv``)."""
    codes_file, text_dir = codiesp_files(root, split)
    gold: dict[str, list[str]] = defaultdict(list)
    with codes_file.open(encoding="utf-8") as fh:
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 2 and cols[1].strip():
                code = normalize_code(cols[1])
                if code not in gold[cols[0]]:
                    gold[cols[0]].append(code)
    docs = []
    for path in sorted(text_dir.glob("*.txt")):
        docs.append(CodiespDoc(path.stem, path.read_text(encoding="utf-8"), tuple(gold.get(path.stem, ()))))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def code_depth(code: str) -> int:
    return len(code.replace(".", ""))


class CodingModel:
    """The fitted ranker, lexicon statistics and stacker (see the module doc)."""

    def __init__(self) -> None:
        self.ridge: Ridge | None = None
        self.prior: dict[str, float] = {}
        self.lex_hits: dict[str, tuple[int, int]] = {}  # code -> (gold hits, all hits) on train
        self.stacker: Any = None
        self.threshold: float = 0.5
        self.n_train = 0
        #: ranker codes per document that become candidates (top 100: 59% of CodiEsp dev gold codes,
        #: top 40: 47%; with the lexicon's codes 67% and 57%)
        self.top_k = 100

    # ---------------------------------------------------------------- features
    def lex_precision(self, code: str) -> float:
        gold, hits = self.lex_hits.get(code, (0, 0))
        return (gold + 0.3) / (hits + 1.0)

    def candidate_features(self, ridge: dict[str, float], evidence: dict[str, Evidence], billable: Callable[[str], bool],
                           top_k: int | None = None) -> tuple[list[str], list[list[float]]]:
        ranked = sorted(ridge.items(), key=lambda kv: -kv[1])[: top_k or self.top_k]
        rank = {c: r for r, (c, _) in enumerate(ranked, 1)}
        codes = list(dict.fromkeys([c for c, _ in ranked] + list(evidence)))
        rows = []
        for c in codes:
            ev = evidence.get(c)
            rows.append([
                ridge.get(c, 0.0),
                1.0 / rank[c] if c in rank else 0.0,
                float(c in rank),
                ev.lex_score if ev else 0.0,
                math.log1p(ev.count) if ev else 0.0,
                self.lex_precision(c) if ev else 0.0,
                float(ev.ambiguity) if ev else 0.0,
                (ev.negated / ev.count) if ev and ev.count else 0.0,
                math.log1p(self.prior.get(c, 0.0)),
                float(billable(c)),
                float(code_depth(c)),
                float(ev.entity_hit) if ev else 0.0,
            ])
        return codes, rows

    def predict(self, rows: list[list[float]]) -> list[float]:
        if not rows:
            return []
        import numpy as np
        from threadpoolctl import threadpool_limits

        # one thread: OpenMP start-up costs ~25 ms per tree on a busy machine, the trees themselves ~µs
        with threadpool_limits(1):
            probs = self.stacker.predict_proba(np.asarray(rows, dtype=np.float64))[:, 1]
        return [float(p) for p in probs]

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[Sequence[str]],
            evidence_of: Callable[[str], dict[str, Evidence]], billable: Callable[[str], bool],
            folds: int = 5, seed: int = 0) -> CodingModel:
        """Fit on train documents; ``evidence_of(text)`` gives the lexicon evidence per candidate code."""
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingClassifier

        n = len(texts)
        evidences = [evidence_of(t) for t in texts]
        order = np.random.default_rng(seed).permutation(n)
        fold_of = {int(i): k % folds for k, i in enumerate(order)}
        x_rows: list[list[float]] = []
        y_rows: list[int] = []
        groups: list[int] = []
        for f in range(folds):
            tr = [i for i in range(n) if fold_of[i] != f]
            te = [i for i in range(n) if fold_of[i] == f]
            part = cls._fit_first_stage([texts[i] for i in tr], [labels[i] for i in tr], [evidences[i] for i in tr])
            for i in te:
                codes, rows = part.candidate_features(part.ridge.scores(texts[i]), evidences[i], billable)  # type: ignore[union-attr]
                gold = set(labels[i])
                x_rows.extend(rows)
                y_rows.extend(int(c in gold) for c in codes)
                groups.extend([i] * len(codes))
        model = cls._fit_first_stage(texts, labels, evidences)
        x = np.asarray(x_rows, dtype=np.float64)
        y = np.asarray(y_rows)
        model.stacker = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                       l2_regularization=1.0, random_state=seed).fit(x, y)
        # threshold: the best micro-F1 of out-of-fold stacker probabilities (a second split of train)
        oof = np.zeros(len(y))
        idx = np.arange(len(y))
        grp = np.asarray(groups)
        for f in range(folds):
            te_docs = {i for i in range(n) if fold_of[i] == f}
            mask = np.isin(grp, list(te_docs))
            st = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                l2_regularization=1.0, random_state=seed).fit(x[~mask], y[~mask])
            oof[idx[mask]] = st.predict_proba(x[mask])[:, 1]
        n_gold = sum(len(set(ls)) for ls in labels)
        best = (0.0, 0.5)
        for t in np.arange(0.1, 0.8, 0.02):
            sel = oof >= t
            tp = float(y[sel].sum())
            p = tp / max(1, int(sel.sum()))
            r = tp / max(1, n_gold)
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            best = max(best, (f1, float(round(t, 2))))
        model.threshold = best[1]
        model.oof_f1 = best[0]
        return model

    @classmethod
    def _fit_first_stage(cls, texts: Sequence[str], labels: Sequence[Sequence[str]],
                         evidences: Sequence[dict[str, Evidence]]) -> CodingModel:
        m = cls()
        m.n_train = len(texts)
        m.ridge = Ridge().fit(texts, labels)
        counts: Counter[str] = Counter(c for ls in labels for c in set(ls))
        m.prior = dict(counts)
        hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for ls, ev in zip(labels, evidences, strict=True):
            gold = set(ls)
            for c in ev:
                hits[c][1] += 1
                hits[c][0] += int(c in gold)
        m.lex_hits = {c: (g, a) for c, (g, a) in hits.items()}
        return m


def cache_path(cache_dir: Path, files: Sequence[Path], extra: str = "") -> Path:
    h = hashlib.sha256(f"{FORMAT}|{extra}".encode())
    for f in files:
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return cache_dir / "icd" / f"codiesp-{h.hexdigest()[:12]}.pkl"


def save(model: CodingModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load(path: Path) -> CodingModel | None:
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            obj = pickle.load(fh)  # our own cache file, written by save()
    except Exception:  # a stale or truncated cache: refit
        return None
    return obj if isinstance(obj, CodingModel) else None


__all__ = ["FEATURES", "CodiespDoc", "CodingModel", "Evidence", "Ridge", "normalize_code", "read_codiesp", "cache_path", "code_depth", "load", "save"]
