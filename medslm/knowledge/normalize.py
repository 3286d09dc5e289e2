"""Text normalization shared by lookup and the lexicon matcher.

A name becomes a tuple of *terms*: lower-cased alphanumeric tokens, possessives dropped ("Crohn's" ->
"crohn"), plurals reduced to a singular stem ("infarctions" -> "infarction", "arteries" -> "artery").
:func:`bag_key` also drops stop words and sorts, so word order and "of"/"the" do not matter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from medslm.text import singular as stem  # plurals to singular, for lexicon keys

TOKEN = re.compile(r"[^\W_]+(?:'s\b)?", re.UNICODE)

#: Words that carry no meaning for matching a concept name (kept out of bag-of-words keys).
STOP_WORDS = frozenset(
    "a an and as at by for from in into of on or the to with without due nos unspecified".split()
)
#: Qualifiers ICD-10-CM adds to labels that a clinician never writes.
_QUALIFIERS = re.compile(
    r",\s*unspecified\b[^,]*|,?\s*\b(?:unspecified|not otherwise specified|nos|not elsewhere classified|nec)\b\s*",
    re.IGNORECASE,
)
_PARENS = re.compile(r"\s*[\(\[][^)\]]*[\)\]]")
_NOT_INVERTED = frozenset({"unspecified", "nos", "nec", "encounter", "other", "sequela", "site", "organism"})


def _fold(text: str) -> str:
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tokens(text: str) -> Iterator[tuple[int, int, str]]:
    """Yield ``(start, end, term)`` for every token of ``text``; offsets index the original text."""
    for m in TOKEN.finditer(text):
        raw = m.group()
        end = m.end()
        if raw.endswith("'s"):
            raw = raw[:-2]
        yield m.start(), end, stem(_fold(raw).lower())


def terms(text: str) -> tuple[str, ...]:
    """The normalized terms of ``text`` (case, punctuation, possessive and plural folded)."""
    return tuple(t for _, _, t in tokens(text))


def key(text: str) -> str:
    """Normalized key: terms joined by one space ("Heart attacks!" -> "heart attack")."""
    return " ".join(terms(text))


def bag_key(text: str) -> str:
    """Order-free key without stop words ("infarction of myocardium, acute" == "acute myocardium infarction")."""
    ts = [t for t in terms(text) if t not in STOP_WORDS]
    return " ".join(sorted(set(ts)))


def variants(name: str) -> list[str]:
    """Forms of a terminology name a note may contain: the name, without ICD qualifiers or parentheses."""
    out = [name]
    short = _PARENS.sub("", name).strip()
    if short and short != name:
        out.append(short)
    for form in list(out):
        q = _QUALIFIERS.sub(" ", form).strip(" ,;")
        if q and q not in out:
            out.append(q)
    # "Infarction, myocardial" / "Diabetes, type 2": an inverted index term, read it both ways
    if name.count(",") == 1 and "(" not in name:
        head, tail = (p.strip() for p in name.split(","))
        if tail and len(tail.split()) <= 2 and not _NOT_INVERTED & set(tail.lower().split()):
            out.append(f"{tail} {head}")
    return out


__all__ = ["STOP_WORDS", "bag_key", "key", "stem", "terms", "tokens", "variants"]
