"""Small linear heads on MiniLM sentence embeddings: the learned half of the guardian's screens.

- ``guardian-harm``: harmful medical request vs benign clinical text (see :mod:`medslm.safety.harm`).
- ``guardian-injection``: a sentence that instructs an AI vs an ordinary clinical sentence.

Both are trained artifacts (``head.json``, a few KB) fitted by ``medslm train guardian`` (see
:mod:`medslm.training.guardian_heads`) and shipped with medslm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any



@dataclass(frozen=True)
class LinearHead:
    """Logistic regression on 384-d normalized MiniLM embeddings."""

    weights: tuple[float, ...]
    bias: float
    threshold: float  # probability at or above which an item counts as positive
    meta: dict[str, Any]

    def proba(self, emb: Any) -> Any:
        import numpy as np

        z = emb @ np.asarray(self.weights, dtype="float32") + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> str:
        return json.dumps(
            {"weights": [round(w, 6) for w in self.weights], "bias": self.bias, "threshold": self.threshold, "meta": self.meta}
        )

    @classmethod
    def from_json(cls, text: str) -> LinearHead:
        d = json.loads(text)
        return cls(tuple(d["weights"]), float(d["bias"]), float(d["threshold"]), dict(d.get("meta", {})))


@lru_cache(maxsize=8)
def load_head(component: str, root: str | None = None) -> LinearHead:
    """A trained head artifact (``guardian-harm`` or ``guardian-injection``)."""
    from medslm.artifacts import artifact_dir

    return LinearHead.from_json((artifact_dir(component, root) / "head.json").read_text(encoding="utf-8"))


__all__ = ["LinearHead", "load_head"]
