"""Train-split models of the ICD-10-CM coding agent: a document-level code ranker and a candidate stacker.

Fitted on CodiEsp *train* only (English text + diagnosis codes) by ``medslm train icd-coder``, saved as
the ``icd-coder`` artifact in safe formats (:meth:`CodingModel.save`: safetensors arrays and JSON; no
pickle) and loaded at run time by :meth:`CodingModel.load`:

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

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "icd-model-4"
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

    # ---------------------------------------------------------------- safe persistence
    def arrays(self) -> dict[str, Any]:
        import numpy as np

        x = self.x.tocsr()
        return {"ridge.x.data": x.data.astype(np.float32), "ridge.x.indices": x.indices.astype(np.int32),
                "ridge.x.indptr": x.indptr.astype(np.int64), "ridge.alpha": np.ascontiguousarray(self.alpha),
                "ridge.idf": self.vec.idf_.astype(np.float64)}

    def config(self) -> dict[str, Any]:
        return {"lam": self.lam, "codes": self.codes, "shape": list(self.x.shape),
                "vocabulary": {t: int(i) for t, i in self.vec.vocabulary_.items()},
                "tfidf": {"ngram_range": [1, 2], "min_df": 2, "sublinear_tf": True, "stop_words": "english"}}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, Any]) -> Ridge:
        from scipy.sparse import csr_matrix
        from sklearn.feature_extraction.text import TfidfVectorizer

        r = cls(lam=float(config["lam"]))
        r.codes = list(config["codes"])
        t = config["tfidf"]
        r.vec = TfidfVectorizer(ngram_range=tuple(t["ngram_range"]), min_df=t["min_df"], sublinear_tf=t["sublinear_tf"],
                                stop_words=t["stop_words"], vocabulary=config["vocabulary"])
        r.vec.idf_ = arrays["ridge.idf"]
        r.x = csr_matrix((arrays["ridge.x.data"], arrays["ridge.x.indices"], arrays["ridge.x.indptr"]),
                         shape=tuple(config["shape"]))
        r.alpha = arrays["ridge.alpha"]
        return r


class TreeEnsemble:
    """A fitted binary ``HistGradientBoostingClassifier`` as plain arrays, evaluated with numpy.

    Saved as arrays (no pickle and no coupling to scikit-learn's private classes across versions);
    :meth:`from_sklearn` checks that its probabilities equal the estimator's.
    """

    FIELDS = ("feature", "threshold", "left", "right", "leaf", "value", "missing_left", "offsets")

    def __init__(self, baseline: float, arrays: dict[str, Any]) -> None:
        self.baseline = float(baseline)
        self.a = arrays

    @classmethod
    def from_sklearn(cls, est: Any, check: Any = None) -> TreeEnsemble:
        import numpy as np

        if getattr(est, "n_trees_per_iteration_", 1) != 1:
            raise ValueError("TreeEnsemble holds binary classifiers only")
        nodes = [pred[0].nodes for pred in est._predictors]
        if any(n["is_categorical"].any() for n in nodes):
            raise ValueError("categorical splits are not supported")
        offsets = np.cumsum([0] + [len(n) for n in nodes]).astype(np.int64)
        cat = np.concatenate(nodes)
        arrays = {
            "feature": cat["feature_idx"].astype(np.int32), "threshold": cat["num_threshold"].astype(np.float64),
            "left": cat["left"].astype(np.int32), "right": cat["right"].astype(np.int32),
            "leaf": cat["is_leaf"].astype(np.uint8), "value": cat["value"].astype(np.float64),
            "missing_left": cat["missing_go_to_left"].astype(np.uint8), "offsets": offsets,
        }
        out = cls(float(np.ravel(est._baseline_prediction)[0]), arrays)
        if check is not None and len(check):
            want = est.predict_proba(np.asarray(check, dtype=np.float64))[:, 1]
            got = out.predict_proba(check)
            if not np.allclose(want, got, atol=1e-9):
                raise ValueError(f"tree export differs from the estimator (max {np.abs(want - got).max():.2e})")
        return out

    def predict_proba(self, rows: Any) -> Any:
        """Probability of the positive class for each row of ``rows`` (n x features)."""
        import numpy as np

        x = np.asarray(rows, dtype=np.float64)
        a = self.a
        n = len(x)
        raw = np.full(n, self.baseline)
        idx = np.arange(n)
        offs = a["offsets"]
        for t in range(len(offs) - 1):
            base = int(offs[t])
            node = np.zeros(n, dtype=np.int64)
            while True:
                g = base + node
                leaf = a["leaf"][g].astype(bool)
                if leaf.all():
                    break
                v = x[idx, a["feature"][g]]
                go_left = np.where(np.isnan(v), a["missing_left"][g].astype(bool), v <= a["threshold"][g])
                nxt = np.where(go_left, a["left"][g], a["right"][g])
                node = np.where(leaf, node, nxt)
            raw += a["value"][base + node]
        return 1.0 / (1.0 + np.exp(-raw))


def normalize_code(code: str) -> str:
    """CodiEsp's ``"n39.0"`` -> ``"N39.0"`` (upper-case, dot after the third character)."""
    c = code.strip().upper().replace(".", "")
    return c if len(c) <= 3 else f"{c[:3]}.{c[3:]}"


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
        return [float(p) for p in self.stacker.predict_proba(rows)]

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
        est = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                             l2_regularization=1.0, random_state=seed).fit(x, y)
        model.stacker = TreeEnsemble.from_sklearn(est, check=x[:2000])
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

    # ---------------------------------------------------------------- safe persistence
    def save(self, folder: str | Path) -> None:
        """Write ``arrays.safetensors`` and ``model.json`` (the ``icd-coder`` artifact's files)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        assert self.ridge is not None and isinstance(self.stacker, TreeEnsemble)
        arrays = {**self.ridge.arrays(), **{f"stacker.{k}": v for k, v in self.stacker.a.items()}}
        save_file(arrays, str(folder / "arrays.safetensors"))
        meta = {"format": FORMAT, "features": list(FEATURES), "threshold": self.threshold, "top_k": self.top_k,
                "n_train": self.n_train, "oof_f1": getattr(self, "oof_f1", None), "prior": self.prior,
                "lex_hits": {c: list(v) for c, v in self.lex_hits.items()}, "ridge": self.ridge.config(),
                "stacker_baseline": self.stacker.baseline}
        (folder / "model.json").write_text(json.dumps(meta, separators=(",", ":"), sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> CodingModel:
        """Load a model written by :meth:`save` (an ``icd-coder`` artifact folder)."""
        from safetensors.numpy import load_file

        from medslm.errors import ConfigurationError

        folder = Path(folder)
        try:
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            arrays = load_file(str(folder / "arrays.safetensors"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"ICD coder artifact {folder} is unreadable ({type(exc).__name__}); retrain "
                                     "it with `medslm train icd-coder`") from None
        if meta.get("format") != FORMAT or tuple(meta.get("features", ())) != FEATURES:
            raise ConfigurationError(f"ICD coder artifact {folder} has format {meta.get('format')!r}; this medslm "
                                     f"reads {FORMAT!r}: retrain it with `medslm train icd-coder`")
        m = cls()
        m.ridge = Ridge.from_saved(meta["ridge"], arrays)
        m.stacker = TreeEnsemble(meta["stacker_baseline"],
                                 {k.removeprefix("stacker."): v for k, v in arrays.items() if k.startswith("stacker.")})
        m.threshold = float(meta["threshold"])
        m.top_k = int(meta["top_k"])
        m.n_train = int(meta["n_train"])
        m.prior = {c: float(v) for c, v in meta["prior"].items()}
        m.lex_hits = {c: (int(v[0]), int(v[1])) for c, v in meta["lex_hits"].items()}
        return m

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


__all__ = ["FEATURES", "FORMAT", "CodingModel", "Evidence", "Ridge", "TreeEnsemble", "code_depth", "normalize_code"]
