"""A linear-chain CRF mention tagger (python-crfsuite) trained on public IOB corpora.

The tagger is trained on the *train* (and optionally *devel*) splits only - NCBI-disease for disease
mentions, BC5CDR for chemicals and diseases - and cached under ``<cache_dir>/ner/``. Training takes about
a minute on one core; the cached model loads in milliseconds. Features are orthographic (case, shape,
affixes, neighbouring words) plus a lexicon feature: whether a token starts or continues a span that a
dictionary of known mention strings (train mentions, optionally knowledge-graph names) matches.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError, MissingExtraError

log = logging.getLogger(__name__)

#: Corpora a tagger can be trained from: name -> (relative IOB files for training, labels kept).
CORPORA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ncbi": (("ncbi-disease/conll/train.tsv", "ncbi-disease/conll/devel.tsv"), ("Disease",)),
    # train split only: for choosing features on the devel split
    "ncbi-train": (("ncbi-disease/conll/train.tsv",), ("Disease",)),
    "bc5cdr": (("bc5cdr/train.tsv",), ("Chemical", "Disease")),
}
FORMAT = "crf-3"

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
    """Train-once, cached CRF tagger for one corpus (``"ncbi"`` or ``"bc5cdr"``)."""

    def __init__(self, corpus: str, data_dir: Path, cache_dir: Path, *, c1: float = 0.05, c2: float = 0.01,
                 max_iterations: int = 150, lexicon: bool = True, gazetteer: Gazetteer | None = None,
                 gazetteer_name: str = "") -> None:
        if corpus not in CORPORA:
            from medslm.errors import UnknownNameError

            raise UnknownNameError("NER corpus", corpus, list(CORPORA))
        self.corpus = corpus
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.c1, self.c2, self.max_iterations = c1, c2, max_iterations
        self.use_lexicon = lexicon
        self.gazetteer = gazetteer
        self.gazetteer_name = gazetteer_name if gazetteer is not None else ""
        self._tagger = None
        self._lexicon: Lexicon | None = None
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        return CORPORA[self.corpus][1]

    def _files(self) -> list[Path]:
        files = [self.data_dir / rel for rel in CORPORA[self.corpus][0]]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigurationError(
                f"NER corpus {self.corpus!r} needs {', '.join(missing)}; set MEDSLM_DATA_DIR to the public data"
            )
        return files

    def _sentences(self) -> list[tuple[list[str], list[str]]]:
        keep = set(self.labels)
        out = []
        for f in self._files():
            for toks, tags in read_iob(f):
                out.append((toks, [t if t == "O" or t.split("-", 1)[1] in keep else "O" for t in tags]))
        return out

    def _key(self) -> str:
        h = hashlib.sha256(f"{FORMAT}|{self.corpus}|{self.c1}|{self.c2}|{self.max_iterations}|{self.use_lexicon}|{self.gazetteer_name}".encode())
        for f in self._files():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}".encode())
        return h.hexdigest()[:12]

    def _load(self) -> None:
        try:
            import pycrfsuite
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingExtraError(package="python-crfsuite", extra="ner", feature="the CRF NER tagger") from exc
        sents = self._sentences()
        if self.use_lexicon:
            self._lexicon = Lexicon(toks[s:e] for toks, tags in sents for s, e, _ in iob_spans(tags))
        path = self.cache_dir / "ner" / f"{self.corpus}-{self._key()}.crfsuite"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("training CRF tagger %s on %d sentences", self.corpus, len(sents))
            trainer = pycrfsuite.Trainer(verbose=False)
            for (toks, tags), lex in zip(sents, self._lexicon_tags_train(sents), strict=True):
                gaz = self.gazetteer(toks) if self.gazetteer is not None else None
                trainer.append(sentence_features(toks, lex, gaz), tags)
            trainer.set_params({"c1": self.c1, "c2": self.c2, "max_iterations": self.max_iterations,
                                "feature.possible_transitions": True})
            tmp = path.with_suffix(".tmp")
            trainer.train(str(tmp))
            tmp.replace(path)
        tagger = pycrfsuite.Tagger()
        tagger.open(str(path))
        self._tagger = tagger

    def _lexicon_tags_train(self, sents: Sequence[tuple[list[str], list[str]]]) -> list[list[str] | None]:
        # A lexicon of every train mention would be the gold on train sentences, and the CRF would learn to
        # trust it blindly. Each fold's sentences get the tags of a lexicon built from the other folds.
        if self._lexicon is None:
            return [None] * len(sents)
        folds = 5
        out: list[list[str] | None] = []
        lexicons = [
            Lexicon(toks[s:e] for k, (toks, tags) in enumerate(sents) if k % folds != f for s, e, _ in iob_spans(tags))
            for f in range(folds)
        ]
        for k, (toks, _) in enumerate(sents):
            out.append(lexicons[k % folds].tags(toks))
        return out

    def load(self) -> CrfTagger:
        with self._lock:
            if self._tagger is None:
                self._load()
        return self

    def tag(self, tokens: Sequence[str]) -> tuple[list[str], list[TaggedSpan]]:
        """IOB tags of one sentence and its spans with their marginal probabilities."""
        self.load()
        assert self._tagger is not None
        if not tokens:
            return [], []
        lex = self._lexicon.tags(tokens) if self._lexicon is not None else None
        tagger = self._tagger
        gaz = self.gazetteer(tokens) if self.gazetteer is not None else None
        tags = list(tagger.tag(sentence_features(tokens, lex, gaz)))
        spans = []
        for s, e, lab in iob_spans(tags):
            p = 1.0
            for i in range(s, e):
                p = min(p, tagger.marginal(tags[i], i))
            spans.append(TaggedSpan(s, e, lab, p))
        return tags, spans


__all__ = ["CORPORA", "CrfTagger", "Gazetteer", "kg_gazetteer", "Lexicon", "TaggedSpan", "iob_spans", "read_iob", "sentence_features", "tokenize"]
