"""Assertion status of mentions (present, negated, possible, historical, family, hypothetical).

ConText-style rules: medspaCy's ConText with its default rules plus clinical phrasings they miss
("s/p", "probable", "return if…", kinship terms), over spaCy's rule sentencizer (medspaCy's PyRuSH is
slow and logs every token). The pipeline is built on first use and shared per process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from medslm.records import Assertion

log = logging.getLogger(__name__)

#: Extra ConText rules: (literal or None, category, direction, pattern or None, max_scope).
_EXTRA_RULES: tuple[tuple[str, str, str, list[dict[str, Any]] | None, int | None], ...] = (
    # history
    ("status post", "HISTORICAL", "FORWARD", None, None),
    ("s/p", "HISTORICAL", "FORWARD", None, None),
    ("s / p", "HISTORICAL", "FORWARD", None, None),
    ("previously diagnosed with", "HISTORICAL", "FORWARD", None, None),
    ("previous", "HISTORICAL", "FORWARD", None, 4),
    ("prior", "HISTORICAL", "FORWARD", None, 4),
    ("remote", "HISTORICAL", "FORWARD", None, 4),
    ("in the past", "HISTORICAL", "BACKWARD", None, None),
    ("years ago", "HISTORICAL", "BACKWARD", None, None),
    ("last year", "HISTORICAL", "BACKWARD", None, None),
    ("since childhood", "HISTORICAL", "BACKWARD", None, None),
    ("pmh", "HISTORICAL", "FORWARD", None, None),
    ("past history", "HISTORICAL", "FORWARD", None, None),
    ("medical history includes", "HISTORICAL", "FORWARD", None, None),
    # uncertainty
    ("probable", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("likely", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("presumed", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("suspected", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("suspicion of", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("concern for", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("concerning for", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("consider", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("equivocal for", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("may represent", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("may be consistent with", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("could be", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("possibly", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("questionable", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("differential diagnosis includes", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("cannot exclude", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("cannot be excluded", "POSSIBLE_EXISTENCE", "BACKWARD", None, None),
    ("cannot rule out", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("evaluate for", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("rule out", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    ("r/o", "POSSIBLE_EXISTENCE", "FORWARD", None, None),
    # negation
    ("ruled out", "NEGATED_EXISTENCE", "BACKWARD", None, None),
    ("was excluded", "NEGATED_EXISTENCE", "BACKWARD", None, None),
    ("excluding", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("free of", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("absence of", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("does not have", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("not experiencing", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("negative for", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("was negative for", "NEGATED_EXISTENCE", "FORWARD", None, None),
    ("were negative for", "NEGATED_EXISTENCE", "FORWARD", None, None),
    (": no", "NEGATED_EXISTENCE", "FORWARD", None, None),
    # hypothetical
    ("return if", "HYPOTHETICAL", "FORWARD", None, None),
    ("call if", "HYPOTHETICAL", "FORWARD", None, None),
    ("seek care if", "HYPOTHETICAL", "FORWARD", None, None),
    ("in case of", "HYPOTHETICAL", "FORWARD", None, None),
    ("watch for", "HYPOTHETICAL", "FORWARD", None, None),
    ("monitor for", "HYPOTHETICAL", "FORWARD", None, None),
    ("return precautions", "HYPOTHETICAL", "FORWARD", None, None),
    ("should she develop", "HYPOTHETICAL", "FORWARD", None, None),
    ("should he develop", "HYPOTHETICAL", "FORWARD", None, None),
    ("if you develop", "HYPOTHETICAL", "FORWARD", None, None),
)

_KIN = (
    "mother", "father", "brother", "sister", "son", "daughter", "aunt", "uncle", "cousin", "grandmother",
    "grandfather", "parents", "parent", "sibling", "siblings", "mom", "dad", "fhx", "fh",
)

#: When several modifiers apply, the first in this order wins ("evaluate for possible sepsis": possible).
_PRIORITY = (Assertion.FAMILY, Assertion.HYPOTHETICAL, Assertion.POSSIBLE, Assertion.NEGATED, Assertion.HISTORICAL)

_NLP: Any = None
_NLP_LOCK = threading.Lock()


def _pipeline() -> Any:
    global _NLP
    with _NLP_LOCK:
        if _NLP is None:
            import spacy
            from medspacy.context import ConText, ConTextRule  # noqa: F401  (registers the factory)

            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            ctx = nlp.add_pipe("medspacy_context", config={"rules": "default"})
            rules = [
                ConTextRule(lit, cat, direction=d, pattern=pat, max_scope=scope)
                for lit, cat, d, pat, scope in _EXTRA_RULES
            ]
            rules += [ConTextRule(k, "FAMILY", direction="BIDIRECTIONAL", max_scope=6) for k in _KIN]
            rules += [ConTextRule(k, "FAMILY", direction="FORWARD") for k in ("family history", "fam hx")]
            ctx.add(rules)
            _NLP = nlp
    return _NLP


class AssertionClassifier:
    """Assertion of character spans of a text, by ConText rules (medspaCy)."""

    name = "context"

    def load(self) -> AssertionClassifier:
        _pipeline()
        return self

    def classify(self, text: str, spans: Sequence[tuple[int, int]]) -> list[Assertion]:
        """The assertion of each ``(start, end)`` span of ``text`` (present when no modifier applies)."""
        if not spans:
            return []
        from spacy.util import filter_spans

        nlp = _pipeline()
        doc = nlp.make_doc(text)
        ents = []
        index: dict[int, Any] = {}
        for k, (s, e) in enumerate(spans):
            sp = doc.char_span(s, e, label="ENT", alignment_mode="expand")
            if sp is None or len(sp) == 0:
                continue
            ents.append(sp)
            index[k] = sp
        kept = filter_spans(ents)
        doc.ents = kept
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        by_tokens = {(e.start, e.end): e for e in doc.ents}
        out: list[Assertion] = []
        for k in range(len(spans)):
            sp = index.get(k)
            ent = by_tokens.get((sp.start, sp.end)) if sp is not None else None
            if ent is None and sp is not None:  # overlapped by a longer span: use the one that holds it
                ent = next((e for e in doc.ents if e.start <= sp.start and sp.end <= e.end), None)
            out.append(_assertion_of(ent) if ent is not None else Assertion.PRESENT)
        return out


def _assertion_of(ent: Any) -> Assertion:
    flags = {
        Assertion.FAMILY: ent._.is_family,
        Assertion.HYPOTHETICAL: ent._.is_hypothetical,
        Assertion.NEGATED: ent._.is_negated,
        Assertion.POSSIBLE: ent._.is_uncertain,
        Assertion.HISTORICAL: ent._.is_historical,
    }
    for a in _PRIORITY:
        if flags[a]:
            return a
    return Assertion.PRESENT


def load_assertion_sentences() -> list[dict[str, Any]]:
    """The synthetic assertion set shipped with medslm: ``{"text", "start", "end", "assertion"}`` rows."""
    import json
    from importlib.resources import files

    raw = files("medslm").joinpath("data/assertion_sentences.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def evaluate_assertion(classifier: AssertionClassifier | None = None) -> dict[str, Any]:
    """Accuracy of the classifier on the synthetic set, overall and per gold class."""
    clf = classifier or AssertionClassifier()
    rows = load_assertion_sentences()
    per: dict[str, list[int]] = {}
    errors = []
    for i, r in enumerate(rows):
        pred = clf.classify(r["text"], [(r["start"], r["end"])])[0]
        ok = pred.value == r["assertion"]
        per.setdefault(r["assertion"], []).append(int(ok))
        if not ok:
            errors.append({"index": i, "gold": r["assertion"], "pred": pred.value})
    n = sum(len(v) for v in per.values())
    return {
        "n": n,
        "accuracy": sum(sum(v) for v in per.values()) / n,
        "per_class": {k: sum(v) / len(v) for k, v in sorted(per.items())},
        "errors": errors,
    }


__all__ = ["AssertionClassifier", "evaluate_assertion", "load_assertion_sentences"]
