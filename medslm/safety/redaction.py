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

_LOCK = threading.Lock()
_REGISTERED: OrderedDict[str, None] = OrderedDict()
_MAX_REGISTERED = 50_000
_PATTERN: re.Pattern[str] | None = None
_INSTALLED: dict[str, Any] = {}


def _h(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def register_phi(strings: Iterable[str]) -> None:
    """Remember PHI strings (of 3 or more characters) so every later log record has them redacted."""
    global _PATTERN
    changed = False
    with _LOCK:
        for s in strings:
            s = s.strip()
            if len(s) >= 3 and s not in _REGISTERED:
                _REGISTERED[s] = None
                changed = True
        while len(_REGISTERED) > _MAX_REGISTERED:
            _REGISTERED.popitem(last=False)
        if changed:
            alts = sorted(_REGISTERED, key=len, reverse=True)
            _PATTERN = re.compile("|".join(re.escape(a) for a in alts)) if alts else None


def clear_registered_phi() -> None:
    global _PATTERN
    with _LOCK:
        _REGISTERED.clear()
        _PATTERN = None


def redact_text(text: str, *, use_rules: bool = True) -> str:
    """``text`` with registered PHI strings and rule-detected PHI replaced by placeholders."""
    pat = _PATTERN
    if pat is not None:
        text = pat.sub(lambda m: f"[PHI:{_h(m.group())}]", text)
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
    "redact_record",
    "redact_text",
    "register_phi",
    "safe_error_message",
    "uninstall_log_redaction",
]
