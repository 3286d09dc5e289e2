"""Train-split models of the ICD-10-CM coding agent: a document-level code ranker and two candidate stackers.

Fitted on CodiEsp *train* only (English text + diagnosis codes) by ``medslm train icd-coder``, saved as
the ``icd-coder`` artifact in safe formats (:meth:`CodingModel.save`: safetensors arrays and JSON; no
pickle) and loaded at run time by :meth:`CodingModel.load`:

- a kernel ridge regression from TF-IDF (1-2 grams) to the train codes (one dense 500x500 solve, all
  codes at once): which codes documents like this one carry; its top 400 codes are candidates;
- per-code precision of the knowledge graph's lexicon matches on train (how often a match of the code's
  names means the code is gold), smoothed;
- gradient-boosted stackers over candidate features, fitted on out-of-fold features of train: the
  *classical* one (ranker score and rank, lexicon and index evidence, order-free matches, completions,
  shares of negated and uncertain mentions, train prior, billability, description overlap) and the
  *combined* one, which adds the SLM reranker's out-of-fold scores (:mod:`medslm.agents.icd_reranker`).
  The stacker's probability is the code's confidence; each has its threshold (best out-of-fold micro-F1).

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

FORMAT = "icd-model-5"
#: features of the classical system (ranker, lexicon, index, rules): the stacker without the SLM
CLASSICAL = (
    "ridge", "ridge_rank_inv", "in_ridge", "lex_score", "lex_count", "lex_precision", "lex_ambiguity",
    "neg_share", "possible_share", "prior", "billable", "depth", "bag", "origin", "label_overlap", "index_named",
)
#: features the SLM reranker adds (its probability and its best sentence-code cosine); NaN when unscored
SLM = ("slm", "slm_cos")
FEATURES = CLASSICAL + SLM
#: origin of a candidate with a mention: named directly, the completion the note supports, another
#: billable descendant of a named category, a billable sibling of a named code
ORIGIN = {"direct": 1.0, "completion": 0.75, "descendant": 0.5, "sibling": 0.25}


@dataclass
class Evidence:
    """What the text says about one candidate code."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    lex_score: float = 0.0
    count: int = 0
    ambiguity: int = 0
    negated: int = 0      # mentions negated, a family member's, another person's or hypothetical
    possible: int = 0     # mentions stated as uncertain ("r/o", "possible", "likely", "vs")
    bag: bool = False     # found by an order-free match only
    origin: float = 1.0   # see ORIGIN
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

    def scores(self, text: str, floor: float | None = None) -> dict[str, float]:
        """The score of each train code for ``text`` (only those above ``floor``; None: all of them)."""
        kd = (self.vec.transform([text]) @ self.x.T).toarray()[0]
        s = kd @ self.alpha
        return {c: float(v) for c, v in zip(self.codes, s, strict=True) if floor is None or v > floor}

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


#: extra per-candidate signals the recipe or the agent computes from the note: (label_overlap, index_named)
Extras = Callable[[Sequence[str]], list[tuple[float, float]]]
#: the SLM's (probability, cosine) per candidate code; NaN where it did not score one
SlmScores = Callable[[Sequence[str]], list[tuple[float, float]]]

#: share of the ranker's tail rows (past top_k, no evidence in the note) a stacker is fitted on
TAIL_SAMPLE = 0.1
_STACKER = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "l2_regularization": 1.0}


class CodingModel:
    """The fitted ranker, lexicon statistics and the two stackers (see the module doc).

    ``stacker_classical`` scores a candidate from the classical features (:data:`CLASSICAL`); ``stacker``
    (None when fitted without an SLM) from those and the SLM reranker's (:data:`SLM`). Each has its
    emission threshold, the best out-of-fold micro-F1 on train.
    """

    def __init__(self) -> None:
        self.ridge: Ridge | None = None
        self.prior: dict[str, float] = {}
        self.lex_hits: dict[str, tuple[int, int]] = {}  # code -> (gold hits, all hits) on train
        self.stacker_classical: Any = None
        self.stacker: Any = None
        self.threshold_classical: float = 0.5
        self.threshold: float = 0.5
        self.n_train = 0
        self.figures: dict[str, float] = {}
        #: every train code the ranker scores is a candidate (with the lexicon's, the index's, their completions
        #: and siblings: 88.6 % of CodiEsp dev gold codes, ~1,790 candidates a document; the ranker's top
        #: 400 alone with the rest: 82 %); ``top_k`` is the rank the ``in_ridge`` feature marks
        self.top_k = 400

    # ---------------------------------------------------------------- features
    def lex_precision(self, code: str) -> float:
        gold, hits = self.lex_hits.get(code, (0, 0))
        return (gold + 0.3) / (hits + 1.0)

    def candidate_features(self, ridge: dict[str, float], evidence: dict[str, Evidence], billable: Callable[[str], bool],
                           extras: Extras | None = None, top_k: int | None = None) -> tuple[list[str], list[list[float]]]:
        """Candidate codes (every code the ranker scores, best first, then the ones the note names) and
        their classical feature rows (:data:`CLASSICAL` order)."""
        ranked = sorted(ridge.items(), key=lambda kv: -kv[1])
        rank = {c: r for r, (c, _) in enumerate(ranked[: top_k or self.top_k], 1)}
        codes = list(dict.fromkeys([c for c, _ in ranked] + list(evidence)))
        more = extras(codes) if extras is not None else [(0.0, 0.0)] * len(codes)
        rows = []
        for c, (overlap, named) in zip(codes, more, strict=True):
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
                (ev.possible / ev.count) if ev and ev.count else 0.0,
                math.log1p(self.prior.get(c, 0.0)),
                float(billable(c)),
                float(code_depth(c)),
                float(ev.bag) if ev else 0.0,
                ev.origin if ev else 0.0,
                overlap,
                named,
            ])
        return codes, rows

    def predict_classical(self, rows: list[list[float]]) -> list[float]:
        if not rows:
            return []
        return [float(p) for p in self.stacker_classical.predict_proba(rows)]

    def predict(self, rows: list[list[float]]) -> list[float]:
        """Probabilities from the combined stacker; ``rows`` are classical + SLM features."""
        if not rows:
            return []
        return [float(p) for p in self.stacker.predict_proba(rows)]

    # ---------------------------------------------------------------- fitting
    @classmethod
    def oof_rows(cls, texts: Sequence[str], labels: Sequence[Sequence[str]], evidences: Sequence[dict[str, Evidence]],
                 billable: Callable[[str], bool], extras_of: Callable[[int], Extras] | None = None,
                 folds: int = 5, seed: int = 0, top_k: int | None = None
                 ) -> tuple[list[list[str]], list[list[list[float]]], dict[int, int]]:
        """Out-of-fold candidates and classical features of each train document (the first stage fitted
        on the other folds): ``(codes per doc, rows per doc, fold of each doc)``."""
        import numpy as np

        n = len(texts)
        order = np.random.default_rng(seed).permutation(n)
        fold_of = {int(i): k % folds for k, i in enumerate(order)}
        codes_of: list[list[str]] = [[] for _ in range(n)]
        rows_of: list[list[list[float]]] = [[] for _ in range(n)]
        for f in range(folds):
            tr = [i for i in range(n) if fold_of[i] != f]
            part = cls._fit_first_stage([texts[i] for i in tr], [labels[i] for i in tr], [evidences[i] for i in tr])
            if top_k:
                part.top_k = top_k
            for i in (i for i in range(n) if fold_of[i] == f):
                codes_of[i], rows_of[i] = part.candidate_features(
                    part.ridge.scores(texts[i]), evidences[i], billable,  # type: ignore[union-attr]
                    extras_of(i) if extras_of else None)
        return codes_of, rows_of, fold_of

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[Sequence[str]], evidences: Sequence[dict[str, Evidence]],
            billable: Callable[[str], bool], extras_of: Callable[[int], Extras] | None = None,
            slm_of: Callable[[int], SlmScores] | None = None, folds: int = 5, seed: int = 0,
            top_k: int | None = None) -> CodingModel:
        """Fit on train documents: the first stage on all of them, the stackers on out-of-fold features.

        ``evidences[i]``: the lexicon evidence of document ``i``; ``extras_of(i)``: its extra signals;
        ``slm_of(i)``: the SLM's **out-of-fold** scores for it (without it only the classical stacker is fitted).
        """
        import numpy as np

        codes_of, rows_of, fold_of = cls.oof_rows(texts, labels, evidences, billable, extras_of, folds, seed, top_k)
        y, groups, x_cls, x_all, w = [], [], [], [], []
        rng = np.random.default_rng(seed)
        in_ridge, lex, origin = CLASSICAL.index("in_ridge"), CLASSICAL.index("lex_score"), CLASSICAL.index("origin")
        for i, (codes, rows) in enumerate(zip(codes_of, rows_of, strict=True)):
            gold = set(labels[i])
            # the ranker's tail (past its top_k, nothing in the note): one row in TAIL_SAMPLE, weighted up
            keep = [k for k, r in enumerate(rows) if r[in_ridge] or r[lex] or r[origin] or rng.random() < TAIL_SAMPLE]
            y.extend(int(codes[k] in gold) for k in keep)
            groups.extend([i] * len(keep))
            x_cls.extend(rows[k] for k in keep)
            w.extend(1.0 if rows[k][in_ridge] or rows[k][lex] or rows[k][origin] else 1 / TAIL_SAMPLE for k in keep)
            if slm_of is not None:
                slm = slm_of(i)([codes[k] for k in keep])
                x_all.extend(rows[k] + list(sc) for k, sc in zip(keep, slm, strict=True))
        model = cls._fit_first_stage(texts, labels, evidences)
        if top_k:
            model.top_k = top_k
        n_gold = sum(len(set(ls)) for ls in labels)
        yy, gg, ww = np.asarray(y), np.asarray(groups), np.asarray(w)
        model.stacker_classical, model.threshold_classical, f1c = _fit_stacker(
            np.asarray(x_cls, dtype=np.float64), yy, gg, ww, fold_of, folds, n_gold, seed)
        model.figures = {"codiesp_train_oof_micro_f1_classical": f1c}
        if slm_of is not None:
            model.stacker, model.threshold, f1 = _fit_stacker(np.asarray(x_all, dtype=np.float64), yy, gg, ww, fold_of,
                                                              folds, n_gold, seed)
            model.figures["codiesp_train_oof_micro_f1"] = f1
        else:
            model.threshold = model.threshold_classical
        return model

    # ---------------------------------------------------------------- safe persistence
    def save(self, folder: str | Path) -> None:
        """Write ``arrays.safetensors`` and ``model.json`` (the ``icd-coder`` artifact's files)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        assert self.ridge is not None and isinstance(self.stacker_classical, TreeEnsemble)
        arrays = {**self.ridge.arrays(), **{f"classical.{k}": v for k, v in self.stacker_classical.a.items()}}
        if self.stacker is not None:
            arrays.update({f"stacker.{k}": v for k, v in self.stacker.a.items()})
        save_file(arrays, str(folder / "arrays.safetensors"))
        meta = {"format": FORMAT, "features": list(FEATURES), "threshold": self.threshold,
                "threshold_classical": self.threshold_classical, "top_k": self.top_k, "n_train": self.n_train,
                "figures": self.figures, "prior": self.prior, "lex_hits": {c: list(v) for c, v in self.lex_hits.items()},
                "ridge": self.ridge.config(), "classical_baseline": self.stacker_classical.baseline,
                "stacker_baseline": self.stacker.baseline if self.stacker is not None else None}
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

        def tree(prefix: str, baseline: float) -> TreeEnsemble:
            return TreeEnsemble(baseline, {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)})

        m.stacker_classical = tree("classical.", meta["classical_baseline"])
        if meta.get("stacker_baseline") is not None:
            m.stacker = tree("stacker.", meta["stacker_baseline"])
        m.threshold = float(meta["threshold"])
        m.threshold_classical = float(meta["threshold_classical"])
        m.top_k = int(meta["top_k"])
        m.n_train = int(meta["n_train"])
        m.figures = dict(meta.get("figures", {}))
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


def _fit_stacker(x: Any, y: Any, groups: Any, w: Any, fold_of: dict[int, int], folds: int, n_gold: int,
                 seed: int) -> tuple[TreeEnsemble, float, float]:
    """A gradient-boosted stacker on out-of-fold rows (``w``: row weights), and its threshold: the best
    micro-F1 of nested out-of-fold probabilities (a second split of train, by document)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    est = HistGradientBoostingClassifier(**_STACKER, random_state=seed).fit(x, y, sample_weight=w)
    stacker = TreeEnsemble.from_sklearn(est, check=x[:2000])
    oof = np.zeros(len(y))
    for f in range(folds):
        mask = np.isin(groups, [i for i, k in fold_of.items() if k == f])
        st = HistGradientBoostingClassifier(**_STACKER, random_state=seed).fit(x[~mask], y[~mask],
                                                                               sample_weight=w[~mask])
        oof[mask] = st.predict_proba(x[mask])[:, 1]
    best = (0.0, 0.5)
    for t in np.arange(0.1, 0.8, 0.02):
        sel = oof >= t
        tp = float((y[sel] * w[sel]).sum())
        p = tp / max(1.0, float(w[sel].sum()))
        r = tp / max(1, n_gold)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        best = max(best, (f1, float(round(t, 2))))
    return stacker, best[1], best[0]


__all__ = ["CLASSICAL", "FEATURES", "FORMAT", "ORIGIN", "SLM", "CodingModel", "Evidence", "Ridge", "TreeEnsemble", "code_depth", "normalize_code"]
