"""The NER specialist: a MiniLM LoRA token classifier (``ner-slm``) fused with the CRF's marginals.

``ner-slm`` (trained by ``medslm train ner-slm``, see :mod:`medslm.training.ner_slm`) has one token head
per training corpus over a shared encoder, because the corpora annotate different things: ``ncbi``
(NCBI-disease: diseases) and ``bc5cdr`` (BC5CDR: chemicals and diseases). Each head is paired with the
CRF trained on the same corpus (``ner-crf-ncbi``, ``ner-crf``).

Per sentence (long ones cut into windows of at most ``window_words`` words), on the CRF's tokens
(``\\w+|[^\\w\\s]``, the corpora's tokenization):

- the SLM's BIO distribution of each token is that of its first word piece;
- the CRF's marginal BIO distribution of each token (when a CRF is paired);
- the two are mixed, ``p = w * p_slm + (1 - w) * p_crf``, with ``w`` tuned on NCBI-disease devel
  (written to ``fusion.json`` in the artifact); ``w = 1`` is the SLM alone;
- the tag sequence is decoded by a BIO-constrained Viterbi over the mixed distributions, and a span's
  probability is the lowest mixed probability of its tags.

All windows of a note go through the encoder in one batched pass (one forward per ``batch_size`` windows).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medslm.agents.crf_tagger import CrfTagger
    from medslm.models.encoder import EncoderClassifier

#: head -> the CRF artifact trained on the same corpus
PAIRED_CRF = {"ncbi": "ner-crf-ncbi", "bc5cdr": "ner-crf"}


@dataclass(frozen=True)
class FusedSpan:
    """A mention found by the fused tagger: character span, label, and its probabilities."""

    start: int
    end: int
    label: str
    prob: float  # lowest mixed probability of the span's tags
    slm_prob: float  # lowest SLM probability of those tags (1.0 when the SLM did not see a token)
    crf_prob: float  # lowest CRF marginal of those tags (0.0 without a CRF)


def windows(text: str, sentences: Sequence[tuple[int, int]], max_words: int = 60) -> list[tuple[int, int]]:
    """Sentences as character windows of at most ``max_words`` tokens (long ones cut at token bounds)."""
    from medslm.agents.crf_tagger import tokenize

    out: list[tuple[int, int]] = []
    for s0, s1 in sentences:
        toks = tokenize(text[s0:s1])
        if not toks:
            continue
        for k in range(0, len(toks), max_words):
            part = toks[k : k + max_words]
            out.append((s0 + part[0][0], s0 + part[-1][1]))
    return out


def token_distributions(pred: Any, tokens: Sequence[tuple[int, int]], n_labels: int) -> tuple[Any, Any]:
    """The SLM's distribution of each token (its first word piece) and whether the SLM saw the token."""
    import bisect

    import numpy as np

    starts = [a for a, _ in pred.offsets]
    out = np.zeros((len(tokens), n_labels), dtype=np.float32)
    seen = np.zeros(len(tokens), dtype=bool)
    for i, (a, b) in enumerate(tokens):
        j = bisect.bisect_left(starts, a)
        if j < len(starts) and starts[j] < b:
            out[i] = pred.probs[j]
            seen[i] = True
    return out, seen


def decode(tokens: Sequence[tuple[int, int]], mixed: Any, slm: Any, crf: Any | None,
           labels: Sequence[str]) -> list[FusedSpan]:
    """Spans of one window from mixed per-token distributions (BIO-constrained Viterbi)."""
    from medslm.models.encoder import viterbi_tags

    tags = viterbi_tags(mixed, labels)
    spans: list[FusedSpan] = []
    cur: list[Any] | None = None  # [start_tok, end_tok, label]

    def close(c: list[Any]) -> None:
        s, e, lab = c
        idx = [tags[i] for i in range(s, e)]
        rng = range(s, e)
        spans.append(FusedSpan(
            tokens[s][0], tokens[e - 1][1], lab,
            prob=float(min(mixed[i, t] for i, t in zip(rng, idx, strict=True))),
            slm_prob=float(min(slm[i, t] for i, t in zip(rng, idx, strict=True))),
            crf_prob=float(min(crf[i, t] for i, t in zip(rng, idx, strict=True))) if crf is not None else 0.0,
        ))

    for i, t in enumerate(tags):
        kind, _, lab = labels[t].partition("-")
        if cur is not None and kind == "I" and lab == cur[2]:
            cur[1] = i + 1
            continue
        if cur is not None:
            close(cur)
            cur = None
        if kind in ("B", "I"):
            cur = [i, i + 1, lab]
    if cur is not None:
        close(cur)
    return spans


class SlmTagger:
    """``ner-slm`` with one of its heads, optionally fused with the paired CRF (see the module doc).

    ``weight``: the SLM's share in the mix (``None``: the value tuned on NCBI-disease devel, from the
    artifact's ``fusion.json``; ``1.0``: the SLM alone). ``crf``: a loaded :class:`CrfTagger` or ``None``.
    """

    def __init__(self, model: EncoderClassifier, head: str = "bc5cdr", *, crf: CrfTagger | None = None,
                 weight: float | None = None, window_words: int = 60) -> None:
        self.model = model
        self.head = head
        self.crf = crf
        self._weight = weight
        self.window_words = window_words
        self._lock = threading.Lock()

    @classmethod
    def from_artifact(cls, component: str = "ner-slm", root: str | Path | None = None, **kw: Any) -> SlmTagger:
        from medslm.models.encoder import EncoderClassifier

        return cls(EncoderClassifier.from_artifact(component, root), **kw)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.heads[self.head]

    @property
    def entity_labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(lab.split("-", 1)[1] for lab in self.labels if lab != "O"))

    @property
    def weight(self) -> float:
        if self.crf is None:
            return 1.0
        if self._weight is None:
            self._weight = float(fusion_settings(self.model.folder).get("weight", 1.0))
        return self._weight

    def load(self) -> SlmTagger:
        self.model.load()
        if self.head not in self.model.heads:
            from medslm.errors import ConfigurationError

            raise ConfigurationError(f"NER model {self.model.folder} has no head {self.head!r}; "
                                     f"its heads: {', '.join(self.model.heads)}")
        if self.crf is not None:
            self.crf.load()
        _ = self.weight
        return self

    def distributions(self, text: str, sentences: Sequence[tuple[int, int]]) -> list[WindowDist]:
        """The SLM's (and the CRF's) per-token distributions of each window of ``text``."""
        return window_distributions(text, sentences, self.model, self.head, self.labels, self.crf, self.window_words)

    def tag(self, text: str, sentences: Sequence[tuple[int, int]]) -> list[FusedSpan]:
        """Mentions of ``text`` (character spans), from its sentences."""
        return fuse(self.distributions(text, sentences), self.weight, self.labels)


@dataclass(frozen=True)
class WindowDist:
    """One window's tokens (offsets into the text) and per-token distributions."""

    tokens: tuple[tuple[int, int], ...]
    slm: Any  # (tokens, labels); rows of unseen tokens are 0
    seen: Any  # (tokens,) bool: the SLM saw the token (not cut off by max_length)
    crf: Any | None  # (tokens, labels) CRF marginals, or None


def window_distributions(text: str, sentences: Sequence[tuple[int, int]], predictor: Any, head: str,
                         labels: Sequence[str], crf: CrfTagger | None, window_words: int = 60) -> list[WindowDist]:
    """Run the token model (one batched pass over every window) and the CRF over the windows of ``text``;
    ``predictor`` has ``predict_tokens_by_head(texts, heads)`` (an :class:`EncoderClassifier`)."""
    from medslm.agents.crf_tagger import tokenize

    wins = windows(text, sentences, window_words)
    if not wins:
        return []
    preds = predictor.predict_tokens_by_head([text[a:b] for a, b in wins], heads=(head,))[head]
    out = []
    for (a, b), pred in zip(wins, preds, strict=True):
        chunk = text[a:b]
        toks = tokenize(chunk)
        slm, seen = token_distributions(pred, toks, len(labels))
        marg = crf.marginals([chunk[s:e] for s, e in toks], labels) if crf is not None else None
        out.append(WindowDist(tuple((a + s, a + e) for s, e in toks), slm, seen, marg))
    return out


def fuse(dists: Sequence[WindowDist], weight: float, labels: Sequence[str]) -> list[FusedSpan]:
    """Spans from mixed distributions ``weight * slm + (1 - weight) * crf`` (``weight`` 1: the SLM alone;
    a token the SLM did not see takes the CRF's distribution, or outside without a CRF)."""
    out: list[FusedSpan] = []
    for d in dists:
        slm = d.slm.copy()
        if d.crf is None:
            mixed = slm.copy()
            mixed[~d.seen, 0] = 1.0
        else:
            mixed = weight * slm + (1.0 - weight) * d.crf
            mixed[~d.seen] = d.crf[~d.seen]
        slm[~d.seen] = 1.0
        out.extend(decode(d.tokens, mixed, slm, d.crf, labels))
    return out


def fusion_settings(folder: str | Path) -> dict[str, Any]:
    """The artifact's tuned fusion settings (``fusion.json``), ``{}`` when it has none."""
    path = Path(folder) / "fusion.json"
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


__all__ = ["PAIRED_CRF", "FusedSpan", "SlmTagger", "WindowDist", "decode", "fuse", "fusion_settings", "token_distributions",
           "window_distributions", "windows"]
