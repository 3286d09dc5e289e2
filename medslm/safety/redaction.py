"""No PHI in logs: a logging filter that redacts, and helpers that make text log-safe.

medslm's own code logs note ids, hashes, offsets and counts, never text. This module is the second
line: :func:`install_log_redaction` wraps the log-record factory so that *every* record created in the
process (medslm's, a third-party library's, an exception's traceback text) is redacted before any
handler sees it:

- PHI found by the rules of :mod:`medslm.safety.phi` (names after a cue, dates, phones, e-mail, IDs…)
  becomes ``[PHI:TYPE]``;
- strings registered with :func:`register_phi` (the guardian registers the PHI it finds in each note)
  become ``[PHI:<hash>]`` wherever they appear.

Set ``Settings(log_phi=True)`` / ``MEDSLM_LOG_PHI=1`` (debug only) and :func:`install_log_redaction`
leaves records alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from medslm.records import PhiSpan

_LOCK = threading.Lock()
_MAX_REGISTERED = 50_000
_INSTALLED: dict[str, Any] = {}
_TOKEN = re.compile(r"\w+")
#: what may stand between two tokens of one registered string ("O'Brien-Smith, Mary", "617-555-0142")
_MAX_GAP = 3


class _TokenIndex:
    """Registered PHI strings as token sequences, found by dictionary look-ups on a text's tokens.

    Adding a string costs a few dictionary inserts and nothing is compiled, so matching stays as fast at
    50,000 strings as at 10 (the old registry recompiled one regular expression per note: +1.2 s a note
    at 50,000 strings). Matching is case-sensitive, on whole tokens, with at most ``_MAX_GAP``
    non-word characters between tokens.
    """

    def __init__(self) -> None:
        self.strings: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.by_first: dict[str, dict[tuple[str, ...], str]] = {}
        self.refs: dict[tuple[str, ...], int] = {}  # registered strings per token sequence
        self.max_len = 1  # most tokens in one registered string

    def add(self, s: str, typ: str) -> None:
        if s in self.strings:
            self.strings.move_to_end(s)  # recently seen: evicted last
            return
        toks = tuple(_TOKEN.findall(s))
        if not toks:
            return
        self.strings[s] = toks
        self.max_len = max(self.max_len, len(toks))
        self.refs[toks] = self.refs.get(toks, 0) + 1
        bucket = self.by_first.setdefault(toks[0], {})
        if toks not in bucket or bucket[toks] == "PHI":
            bucket[toks] = typ
        while len(self.strings) > _MAX_REGISTERED:
            _, gone = self.strings.popitem(last=False)
            self.refs[gone] -= 1
            if self.refs[gone] == 0:
                del self.refs[gone]
                b = self.by_first.get(gone[0])
                if b is not None:
                    b.pop(gone, None)
                    if not b:
                        del self.by_first[gone[0]]

    def find(self, text: str) -> list[tuple[int, int, str]]:
        if not self.by_first or not text:
            return []
        toks = list(_TOKEN.finditer(text))
        out: list[tuple[int, int, str]] = []
        i = 0
        while i < len(toks):
            bucket = self.by_first.get(toks[i].group())
            hit = None
            if bucket:
                # one dictionary look-up per distinct length (longest first), whatever the bucket's size
                for n in sorted({len(k) for k in bucket} if len(bucket) < 8 else self._lengths(bucket), reverse=True):
                    if i + n > len(toks):
                        continue
                    seq = tuple(t.group() for t in toks[i : i + n])
                    typ = bucket.get(seq)
                    if typ is not None and all(
                        toks[i + k].start() - toks[i + k - 1].end() <= _MAX_GAP
                        and "\n" not in text[toks[i + k - 1].end() : toks[i + k].start()]
                        for k in range(1, n)
                    ):
                        hit = (toks[i].start(), toks[i + n - 1].end(), typ, n)
                        break
            if hit:
                out.append(hit[:3])
                i += hit[3]
            else:
                i += 1
        return out

    def _lengths(self, bucket: dict[tuple[str, ...], str]) -> set[int]:
        return set(range(1, self.max_len + 1))

    def clear(self) -> None:
        self.strings.clear()
        self.by_first.clear()
        self.refs.clear()
        self.max_len = 1


_INDEX = _TokenIndex()


def _h(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def register_phi(strings: Iterable[str | tuple[str, str]]) -> None:
    """Remember PHI strings (of 3 or more characters) so every later log record has them redacted.

    Items are strings or ``(string, PHI type)`` pairs (the guardian registers typed spans; the
    de-identification boundary uses the types for surrogates).
    """
    with _LOCK:
        for item in strings:
            s, typ = (item, "PHI") if isinstance(item, str) else (item[0], item[1])
            s = s.strip()
            if len(s) >= 3:
                _INDEX.add(s, typ)


def registered_count() -> int:
    return len(_INDEX.strings)


def known_phi_spans(text: str) -> list[PhiSpan]:
    """Where registered PHI strings occur in ``text`` (typed as registered; ``PHI`` when untyped)."""
    with _LOCK:
        found = _INDEX.find(text)
    return [PhiSpan(start=s, end=e, type=t if t != "PHI" else "NAME", confidence=0.9) for s, e, t in found]


def clear_registered_phi() -> None:
    with _LOCK:
        _INDEX.clear()


def redact_text(text: str, *, use_rules: bool = True) -> str:
    """``text`` with registered PHI strings and rule-detected PHI replaced by placeholders."""
    if not text:
        return text
    with _LOCK:
        found = _INDEX.find(text)
    for s, e, _ in reversed(found):
        text = text[:s] + f"[PHI:{_h(text[s:e])}]" + text[e:]
    if use_rules and text:
        from medslm.safety.phi import find_phi

        spans = find_phi(text, use_ner=False)
        for sp in reversed(spans):
            text = text[: sp.start] + f"[PHI:{sp.type}]" + text[sp.end :]
    return text


class PhiRedactingFilter(logging.Filter):
    """A logging filter that redacts PHI in the formatted message and exception text of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_medslm_redacted", False):
        return record
    try:
        msg = record.getMessage()
    except Exception:  # a broken format string: keep only the template
        msg = str(record.msg)
    record.msg = redact_text(msg)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        import traceback

        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    record._medslm_redacted = True
    return record


def install_log_redaction(*, log_phi: bool | None = None) -> bool:
    """Redact every log record created from now on in this process. Returns True when installed.

    ``log_phi=True`` (or env ``MEDSLM_LOG_PHI=1`` when ``log_phi`` is None) skips installing: debug only.
    Idempotent; :func:`uninstall_log_redaction` restores the previous record factory.
    """
    if log_phi is None:
        log_phi = os.environ.get("MEDSLM_LOG_PHI", "") == "1"
    if log_phi:
        return False
    with _LOCK:
        if "factory" in _INSTALLED:
            return True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        _INSTALLED["factory"] = previous
        logging.setLogRecordFactory(factory)
    return True


def uninstall_log_redaction() -> None:
    with _LOCK:
        previous = _INSTALLED.pop("factory", None)
        if previous is not None:
            logging.setLogRecordFactory(previous)


def safe_error_message(exc: BaseException) -> str:
    """An exception's type and redacted message: for ``ChartReview.reason`` and logs."""
    return f"{type(exc).__name__}: {redact_text(str(exc))}"


__all__ = [
    "PhiRedactingFilter",
    "clear_registered_phi",
    "install_log_redaction",
    "known_phi_spans",
    "redact_record",
    "redact_text",
    "register_phi",
    "registered_count",
    "safe_error_message",
    "uninstall_log_redaction",
]
