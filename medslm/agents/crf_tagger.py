"""A linear-chain CRF mention tagger (python-crfsuite) trained on public IOB corpora.

:func:`fit_crf` trains it (``medslm train ner-crf``: BC5CDR train, chemicals and diseases;
``ner-crf-ncbi``: NCBI-disease train, diseases) into an artifact folder that ships with medslm;
:class:`CrfTagger` loads that folder at run time in milliseconds and never trains. Features are orthographic (case, shape,
affixes, neighbouring words) plus a lexicon feature: whether a token starts or continues a span that a
dictionary of known mention strings (train mentions, optionally knowledge-graph names) matches.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError, MissingExtraError

log = logging.getLogger(__name__)

FORMAT = "crf-4"

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[tuple[int, int]]:
    """Character spans of word and punctuation tokens (the tokenization of the IOB corpora)."""
    return [(m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def read_iob(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences of a ``token<TAB>tag`` file with blank lines between sentences."""
    sents: list[tuple[list[str], list[str]]] = []
    toks: list[str] = []
    tags: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                if toks:
                    sents.append((toks, tags))
                    toks, tags = [], []
                continue
            tok, _, tag = line.partition("\t")
            toks.append(tok)
            tags.append(tag.strip() or "O")
    if toks:
        sents.append((toks, tags))
    return sents


def iob_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Token spans ``(start, end, label)`` of an IOB tag sequence (an ``I-`` after ``O`` opens a span)."""
    spans: list[tuple[int, int, str]] = []
    start, label = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        kind, _, lab = tag.partition("-")
        if start >= 0 and (kind != "I" or lab != label):
            spans.append((start, i, label))
            start = -1
        if kind == "B" or (kind == "I" and start < 0):
            start, label = i, lab
    return spans


class Lexicon:
    """Lower-cased token sequences of known mentions, for a longest-match lexicon feature."""

    def __init__(self, phrases: Iterable[Sequence[str]], max_len: int = 8) -> None:
        self.phrases: set[tuple[str, ...]] = set()
        self.max_len = max_len
        for p in phrases:
            key = tuple(t.lower() for t in p)
            if 0 < len(key) <= max_len:
                self.phrases.add(key)

    def tags(self, tokens: Sequence[str]) -> list[str]:
        low = [t.lower() for t in tokens]
        out = ["O"] * len(low)
        i = 0
        while i < len(low):
            for n in range(min(self.max_len, len(low) - i), 0, -1):
                if tuple(low[i : i + n]) in self.phrases:
                    out[i] = "B"
                    for j in range(i + 1, i + n):
                        out[j] = "I"
                    i += n
                    break
            else:
                i += 1
        return out


def _shape(w: str) -> str:
    s = re.sub(r"[A-Z]", "A", w)
    s = re.sub(r"[a-z]", "a", s)
    s = re.sub(r"[0-9]", "0", s)
    return re.sub(r"(.)\1+", r"\1\1", s)


def _word_features(w: str, p: str) -> dict[str, float | str]:
    lw = w.lower()
    return {
        f"{p}w": lw,
        f"{p}sh": _shape(w),
        f"{p}s3": lw[-3:],
        f"{p}s4": lw[-4:],
        f"{p}up": str(w.isupper()),
        f"{p}ti": str(w.istitle()),
    }


def sentence_features(tokens: Sequence[str], lex_tags: Sequence[str] | None = None,
                      gaz_tags: Sequence[str] | None = None) -> list[dict[str, float | str]]:
    """CRF features of each token of one sentence."""
    feats: list[dict[str, float | str]] = []
    n = len(tokens)
    for i, w in enumerate(tokens):
        lw = w.lower()
        f: dict[str, float | str] = {
            "bias": 1.0,
            "w": lw,
            "sh": _shape(w),
            "p2": lw[:2],
            "p3": lw[:3],
            "p4": lw[:4],
            "s2": lw[-2:],
            "s3": lw[-3:],
            "s4": lw[-4:],
            "s5": lw[-5:],
            "up": str(w.isupper()),
            "ti": str(w.istitle()),
            "dg": str(any(c.isdigit() for c in w)),
            "ln": str(min(len(w), 8)),
        }
        for off in (-2, -1, 1, 2):
            j = i + off
            if 0 <= j < n:
                f.update(_word_features(tokens[j], f"{off}:"))
            else:
                f[f"{off}:pad"] = 1.0
        if i > 0:
            f["bg-"] = tokens[i - 1].lower() + "|" + lw
        if i + 1 < n:
            f["bg+"] = lw + "|" + tokens[i + 1].lower()
        if lex_tags is not None:
            f["lx"] = lex_tags[i]
            f["lx-1"] = lex_tags[i - 1] if i > 0 else "^"
            f["lx+1"] = lex_tags[i + 1] if i + 1 < n else "$"
        if gaz_tags is not None:
            f["gz"] = gaz_tags[i]
            f["gz-1"] = gaz_tags[i - 1] if i > 0 else "^"
            f["gz+1"] = gaz_tags[i + 1] if i + 1 < n else "$"
            f["gzw"] = gaz_tags[i] + "|" + lw
        feats.append(f)
    return feats


@dataclass(frozen=True)
class TaggedSpan:
    """A tagged mention: token span, label and the CRF's marginal probability of its tags."""

    start: int
    end: int
    label: str
    prob: float


Gazetteer = Callable[[Sequence[str]], list[str]]


def kg_gazetteer(kg: Any, systems: Sequence[str] = ("ICD10CM", "HPO")) -> Gazetteer:
    """BIO tags of the knowledge graph's lexicon matches over a token sequence (tokens joined by spaces)."""
    skip = {"right", "left", "bilateral", "unilateral", "onset", "all", "other", "single"}

    def tags(tokens: Sequence[str]) -> list[str]:
        text = " ".join(tokens)
        starts, pos = [], 0
        for t in tokens:
            starts.append(pos)
            pos += len(t) + 1
        out = ["O"] * len(tokens)
        for m in kg.matcher(tuple(systems)).find(text):
            if m.text.lower() in skip:
                continue
            first = bisect.bisect_right(starts, m.start) - 1
            last = bisect.bisect_left(starts, m.end) - 1
            if first < 0:
                continue
            out[first] = "B"
            for j in range(first + 1, last + 1):
                out[j] = "I"
        return out

    return tags


class CrfTagger:
    """A trained CRF tagger loaded from an artifact folder (``model.crfsuite``, ``lexicon.json``,
    ``config.json``), written by :func:`fit_crf` through ``medslm train ner-crf``.

    ``gazetteer``: the knowledge graph's lexicon tags; required when the tagger was trained with them
    (its config names the gazetteer).
    """

    def __init__(self, folder: str | Path, *, gazetteer: Gazetteer | None = None) -> None:
        self.folder = Path(folder)
        self.gazetteer = gazetteer
        self.config: dict[str, Any] = {}
        self._tagger: Any = None
        self._lexicon: Lexicon | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_artifact(cls, component: str = "ner-crf", root: str | Path | None = None, *,
                      gazetteer: Gazetteer | None = None) -> CrfTagger:
        from medslm.artifacts import artifact_dir

        return cls(artifact_dir(component, root), gazetteer=gazetteer)

    @property
    def labels(self) -> tuple[str, ...]:
        self.load()
        return tuple(self.config["labels"])

    @property
    def uses_gazetteer(self) -> bool:
        self.load()
        return bool(self.config.get("gazetteer"))

    def _load(self) -> None:
        import json

        try:
            import pycrfsuite
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingExtraError(package="python-crfsuite", extra="ner", feature="the CRF NER tagger") from exc
        try:
            self.config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"CRF tagger artifact {self.folder} has no readable config.json "
                                     f"({type(exc).__name__}); retrain it with `medslm train ner-crf`") from None
        if self.config.get("format") != FORMAT:
            raise ConfigurationError(f"CRF tagger artifact {self.folder} has format {self.config.get('format')!r}, "
                                     f"this medslm reads {FORMAT!r}; retrain it with `medslm train ner-crf`")
        if self.config.get("gazetteer") and self.gazetteer is None:
            raise ConfigurationError(f"the CRF tagger in {self.folder} was trained with the knowledge graph's "
                                     "lexicon as features; pass gazetteer=kg_gazetteer(kg)")
        lex = self.folder / "lexicon.json"
        if lex.is_file():
            self._lexicon = Lexicon(p.split(" ") for p in json.loads(lex.read_text(encoding="utf-8")))
        tagger = pycrfsuite.Tagger()
        tagger.open(str(self.folder / "model.crfsuite"))
        self._tagger = tagger

    def load(self) -> CrfTagger:
        with self._lock:
            if self._tagger is None:
                self._load()
        return self

    def tag(self, tokens: Sequence[str]) -> tuple[list[str], list[TaggedSpan]]:
        """IOB tags of one sentence and its spans with their marginal probabilities."""
        self.load()
        if not tokens:
            return [], []
        lex = self._lexicon.tags(tokens) if self._lexicon is not None else None
        gaz = self.gazetteer(tokens) if self.config.get("gazetteer") and self.gazetteer is not None else None
        with self._lock:  # a pycrfsuite Tagger keeps the last sentence's lattice: one sentence at a time
            tagger = self._tagger
            tags = list(tagger.tag(sentence_features(tokens, lex, gaz)))
            spans = []
            for s, e, lab in iob_spans(tags):
                p = 1.0
                for i in range(s, e):
                    p = min(p, tagger.marginal(tags[i], i))
                spans.append(TaggedSpan(s, e, lab, p))
        return tags, spans

    def marginals(self, tokens: Sequence[str], labels: Sequence[str]) -> Any:
        """Per-token marginal probabilities ``(len(tokens), len(labels))`` of one sentence (numpy), in the
        order of ``labels`` (a label the CRF does not know gets 0): the CRF's side of a fusion with a neural
        tagger's per-token distributions."""
        import numpy as np

        self.load()
        out = np.zeros((len(tokens), len(labels)), dtype=np.float32)
        if not tokens:
            return out
        lex = self._lexicon.tags(tokens) if self._lexicon is not None else None
        gaz = self.gazetteer(tokens) if self.config.get("gazetteer") and self.gazetteer is not None else None
        feats = sentence_features(tokens, lex, gaz)
        with self._lock:
            tagger = self._tagger
            known = set(tagger.labels())
            tagger.set(feats)
            for j, lab in enumerate(labels):
                if lab in known:
                    for i in range(len(tokens)):
                        out[i, j] = tagger.marginal(lab, i)
        return out


def out_of_fold_lexicon_tags(sents: Sequence[tuple[list[str], list[str]]], folds: int = 5) -> list[list[str]]:
    """Lexicon tags of each training sentence from a lexicon built on the *other* folds.

    A lexicon of every train mention would be the gold on train sentences, and the CRF would learn to
    trust it blindly; each fold's sentences get the tags of a lexicon built from the other folds.
    """
    lexicons = [
        Lexicon(toks[s:e] for k, (toks, tags) in enumerate(sents) if k % folds != f for s, e, _ in iob_spans(tags))
        for f in range(folds)
    ]
    return [lexicons[k % folds].tags(toks) for k, (toks, _) in enumerate(sents)]


def fit_crf(sents: Sequence[tuple[list[str], list[str]]], folder: str | Path, *, labels: Sequence[str],
            c1: float = 0.05, c2: float = 0.01, max_iterations: int = 150, lexicon: bool = True,
            gazetteer: Gazetteer | None = None, gazetteer_name: str = "") -> dict[str, Any]:
    """Train a CRF on IOB ``sents`` and write ``model.crfsuite``, ``lexicon.json`` and ``config.json``."""
    import json

    import pycrfsuite

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keep = set(labels)
    sents = [(toks, [t if t == "O" or t.split("-", 1)[1] in keep else "O" for t in tags]) for toks, tags in sents]
    lex_tags: list[list[str]] | list[None] = out_of_fold_lexicon_tags(sents) if lexicon else [None] * len(sents)
    trainer = pycrfsuite.Trainer(verbose=False)
    for (toks, tags), lex in zip(sents, lex_tags, strict=True):
        gaz = gazetteer(toks) if gazetteer is not None else None
        trainer.append(sentence_features(toks, lex, gaz), tags)
    trainer.set_params({"c1": c1, "c2": c2, "max_iterations": max_iterations, "feature.possible_transitions": True})
    log.info("training CRF tagger on %d sentences", len(sents))
    trainer.train(str(folder / "model.crfsuite"))
    if lexicon:
        phrases = sorted({" ".join(t.lower() for t in toks[s:e]) for toks, tags in sents for s, e, _ in iob_spans(tags)
                          if 0 < e - s <= 8})
        (folder / "lexicon.json").write_text(json.dumps(phrases, separators=(",", ":")), encoding="utf-8")
    config = {"format": FORMAT, "labels": list(labels), "c1": c1, "c2": c2, "max_iterations": max_iterations,
              "lexicon": lexicon, "gazetteer": gazetteer_name if gazetteer is not None else ""}
    (folder / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return config


__all__ = ["CrfTagger", "Gazetteer", "Lexicon", "TaggedSpan", "fit_crf", "iob_spans", "kg_gazetteer", "out_of_fold_lexicon_tags",
           "read_iob", "sentence_features", "tokenize"]
