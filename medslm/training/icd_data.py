"""What the ICD recipes share: CodiEsp splits, the knowledge graph with the index being trained, the
agent's view of each train document (candidates and features, out of fold), and an embedding cache.

The reranker (``icd-reranker``) and the stacker (``icd-coder``) are fitted from the same out-of-fold
candidates of CodiEsp train (5 folds by document, seeded): the first stage of each fold is fitted on the
other four, so every feature a stacker or head sees on a train document comes from models that never
saw that document. CodiEsp dev is read only for the figures (``use="report"``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medslm.training import TrainContext

log = logging.getLogger(__name__)

LICENCE = "CC BY 4.0 (CodiEsp, CLEF eHealth 2020)"
FOLDS = 5
QUICK_DOCS = 40


def read_split(ctx: TrainContext, split: str, use: str) -> list[Any]:
    """A CodiEsp split (recorded in the manifest with its use); 40 documents in a quick run."""
    from medslm.evals.icd import read_codiesp

    ctx.data_file(f"codiesp/{split}/{split}D.tsv", split=split, use=use, licence=LICENCE)
    ctx.record_folder(f"codiesp/{split}/text_files_en", "*.txt", split=split, use=use, licence=LICENCE)
    return read_codiesp(ctx.data_dir, split, limit=QUICK_DOCS if ctx.quick else None)


def training_kg(ctx: TrainContext) -> Any:
    """The knowledge graph with the Alphabetic Index from the folder being trained into, when it has one
    (``medslm train icd --out DIR`` fits the index first), else the default graph."""
    from medslm.knowledge import KnowledgeGraph
    from medslm.knowledge.icd10cm import EmbeddedCCSR, EmbeddedICD10CM
    from medslm.knowledge.icd_index import COMPONENT, AlphabeticIndex
    from medslm.knowledge.obo import EmbeddedHPO

    root = ctx.out.parent
    if (root / COMPONENT / "manifest.json").is_file():
        return KnowledgeGraph([EmbeddedICD10CM(), AlphabeticIndex(root), EmbeddedHPO(), EmbeddedCCSR()])
    return KnowledgeGraph.default()


class EmbeddingCache:
    """MiniLM vectors of texts, kept on disk under the cache folder (training and evaluation only: the
    recipes and the ablation encode the same sentences and code texts again and again)."""

    def __init__(self, folder: Path | None = None, device: str = "cpu") -> None:
        self.device = device
        self._gpu: Any = None
        if folder is None:
            from medslm.settings import Settings

            folder = Settings.from_env().cache_dir / "icd-embeddings"
        self.folder = folder
        self.keys: dict[str, int] = {}
        self.vectors = np.zeros((0, 384), dtype=np.float16)
        self._load()

    @staticmethod
    def _key(text: str, max_length: int) -> str:
        from medslm.knowledge.embedding import encoder

        return hashlib.sha1(f"{encoder().version}|{max_length}|{text}".encode()).hexdigest()

    def _encode_on_device(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """The same vectors as :class:`medslm.knowledge.embedding.MiniLM` (mean pooling, unit length),
        computed on ``self.device`` (``medslm train … --device cuda``)."""
        import torch

        from medslm.knowledge.embedding import MiniLM

        if self._gpu is None:
            tok, model = MiniLM().loaded()
            import copy

            self._gpu = (tok, copy.deepcopy(model).to(self.device))
        tok, model = self._gpu
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        with torch.inference_mode():
            for i in range(0, len(texts), 512):
                idx = order[i : i + 512]
                batch = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(self.device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                vec = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
                out[idx] = vec.float().cpu().numpy()
        return out

    def _load(self) -> None:
        npy, meta = self.folder / "vectors.npy", self.folder / "keys.json"
        try:
            keys = json.loads(meta.read_text(encoding="utf-8"))
            vecs = np.load(npy)
            if len(vecs) == len(keys):
                self.keys, self.vectors = {k: i for i, k in enumerate(keys)}, vecs
        except (OSError, ValueError):
            pass

    def _save(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / "vectors.tmp.npy"
            np.save(tmp, self.vectors)
            os.replace(tmp, self.folder / "vectors.npy")
            keys = sorted(self.keys, key=self.keys.__getitem__)
            (self.folder / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
        except OSError as exc:
            log.warning("could not save the embedding cache at %s (%s)", self.folder, exc)

    def encode(self, texts: Sequence[str], max_length: int = 64) -> np.ndarray:
        from medslm.agents.icd_reranker import CodeReranker

        keys = [self._key(t, max_length) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self.keys))
        if todo:
            by_key = dict(zip(keys, texts, strict=True))
            batch = [by_key[k] for k in todo]
            vecs = (CodeReranker.encode(batch, max_length=max_length) if self.device == "cpu"
                    else self._encode_on_device(batch, max_length))
            base = len(self.vectors)
            self.vectors = np.concatenate([self.vectors, vecs.astype(np.float16)])
            self.keys.update({k: base + i for i, k in enumerate(todo)})
            self._save()
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return self.vectors[[self.keys[k] for k in keys]].astype(np.float32)


@dataclass
class DocView:
    """One train (or dev) document as the agent sees it: sentences, evidence, candidates and features."""

    id: str
    text: str
    gold: set[str]
    spans: list[tuple[int, int]]
    evidence: dict[str, Any]
    codes: list[str]
    rows: list[list[float]]  # classical features (out of fold on train)


def doc_views(agent: Any, docs: Sequence[Any], *, oof: bool = True, first_stage: Any = None, folds: int = FOLDS,
              seed: int = 0) -> tuple[list[DocView], dict[int, int]]:
    """The agent's view of each document. ``oof=True`` (train): candidates and classical features from
    first stages fitted on the other folds; else (dev) from ``first_stage`` (fitted on all of train)."""
    from medslm.agents.icd_candidates import sentences
    from medslm.agents.icd_model import CodingModel

    kg = agent.kg
    texts = [d.text for d in docs]
    labels = [[c for c in d.codes if kg.get(c, "ICD10CM") is not None] for d in docs]
    spans = [sentences(t) for t in texts]
    evidences = [agent.evidence(t) for t in texts]
    extras = [agent._extras(t, sp) for t, sp in zip(texts, spans, strict=True)]
    if oof:
        codes_of, rows_of, fold_of = CodingModel.oof_rows(texts, labels, evidences, agent._billable,
                                                          lambda i: extras[i], folds=folds, seed=seed)
    else:
        assert first_stage is not None
        codes_of, rows_of, fold_of = [], [], {}
        for t, ev, ex in zip(texts, evidences, extras, strict=True):
            c, r = first_stage.candidate_features(first_stage.ridge.scores(t), ev, agent._billable, ex)
            codes_of.append(c)
            rows_of.append(r)
    views = [DocView(d.id, d.text, set(lab), sp, ev, c, r) for d, lab, sp, ev, c, r in
             zip(docs, labels, spans, evidences, codes_of, rows_of, strict=True)]
    return views, fold_of


__all__ = ["FOLDS", "LICENCE", "DocView", "EmbeddingCache", "doc_views", "read_split", "training_kg"]
