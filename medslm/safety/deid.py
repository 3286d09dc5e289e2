"""De-identification with consistent surrogates.

The same name maps to the same surrogate everywhere in a note (and "Smith" alone maps to the surrogate
surname of "John Smith"); every date moves by one offset per ``seed`` so intervals stay true; ages over
89 become "90+"; numbers keep their shape (a phone stays a phone-like string). Clinical text between
PHI spans is copied unchanged: "Mild", lab values and doses survive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from medslm.records import PhiSpan, Span

_FIRST = (
    "Avery Blake Casey Dana Eden Finley Gray Harper Indigo Jordan Kendall Logan Morgan Noel Oakley Parker "
    "Quinn Reese Sawyer Taylor Umber Vale Winter Xen Yael Zion Arden Briar Corin Darby Ellis Frankie Greer "
    "Hollis Ira Jules Kit Lane Marlo Nico Orion Perry Remy Shea Tatum Uri Vesper Wren"
).split()
_LAST = (
    "Abbott Barlow Calloway Dunmore Eastwick Fairbanks Galloway Hartwell Ingram Jessup Kimbrough Lockhart "
    "Merriweather Northcott Oakes Pemberton Quimby Redfern Stanhope Thackeray Underhill Vickery Whitlock "
    "Yardley Zimmer Ashdown Blackwood Carrow Delacourt Ellery Fenwick Goodwin Holloway Ivers Jennings "
    "Kettering Larkin Marchetti Nightingale Ormsby Prescott Radcliffe Sedgwick Tillman Upton Vance Wexley"
).split()
_STREETS = ("100 Main Street", "250 Oak Avenue", "17 Cedar Lane", "88 River Road", "402 Park Place")
_CITIES = ("Springfield, IL 62701", "Riverside, CA 92501", "Fairview, TN 37062", "Franklin, OH 45005")

_NAME_RX = r"[A-ZÀ-ÖØ-Þ][A-Za-zß-öø-ÿÀ-ÖØ-Þ]+(?:[\-'][A-Za-zß-öø-ÿÀ-ÖØ-Þ]+)?"

_MONTH_NAMES = [
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december",
]  # fmt: skip


@dataclass(frozen=True)
class DeidResult:
    """A de-identified copy of a text."""

    text: str
    #: PHI spans found in the original text (offsets into the original)
    spans: tuple[PhiSpan, ...]
    #: where each surrogate lies in ``text`` (offsets into the de-identified copy), label = PHI type
    surrogate_spans: tuple[Span, ...]
    #: original surface string -> surrogate (holds PHI: never log it)
    mapping: dict[str, str] = field(default_factory=dict)
    #: days every date was moved by
    date_shift_days: int = 0


def _h(seed: int, *parts: str) -> int:
    digest = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def date_shift_for(seed: int) -> int:
    """The per-seed date shift in days: between 30 and 729 days into the past, never 0."""
    return -(30 + _h(seed, "date-shift") % 700)


class _Surrogates:
    def __init__(self, seed: int, text: str, spans: Sequence[PhiSpan]) -> None:
        self.seed = seed
        self.shift = date_shift_for(seed)
        self.mapping: dict[str, str] = {}
        # role of each name token: surnames are the last token of multi-token names
        self.surnames: set[str] = set()
        for s in spans:
            if s.type == "NAME":
                toks = _name_tokens(text[s.start : s.end])
                if len(toks) >= 2:
                    self.surnames.add(toks[-1].lower())

    def name_token(self, tok: str) -> str:
        key = tok.lower()
        pool = _LAST if key in self.surnames else _FIRST
        out = pool[_h(self.seed, "name", key) % len(pool)]
        if out.lower() == key:
            out = pool[(_h(self.seed, "name", key) + 1) % len(pool)]
        return out

    def name(self, original: str) -> str:
        return re.sub(_NAME_RX, lambda m: self.name_token(m.group()), original)

    def digits(self, original: str, kind: str) -> str:
        out = []
        for i, c in enumerate(original):
            if c.isdigit():
                out.append(str(_h(self.seed, kind, original, str(i)) % 10))
            elif c.isalpha():
                base = "A" if c.isupper() else "a"
                out.append(chr(ord(base) + _h(self.seed, kind, original, str(i)) % 26))
            else:
                out.append(c)
        return "".join(out)

    def date(self, original: str) -> str:
        shifted = _shift_date(original, self.shift)
        return shifted if shifted is not None else "[DATE]"

    def surrogate(self, original: str, typ: str) -> str:
        if typ == "NAME":
            return self.name(original)
        if typ == "DATE":
            return self.date(original)
        if typ == "AGE":
            return "90+"
        if typ == "EMAIL":
            return f"{self.name_token(original.split('@')[0].title()).lower()}@example.org"
        if typ == "URL":
            return "https://example.org/"
        if typ == "IP":
            return f"192.0.2.{_h(self.seed, 'ip', original) % 254 + 1}"
        if typ == "ADDRESS":
            if re.search(r"\d{5}", original) and "," in original:
                return _CITIES[_h(self.seed, "city", original) % len(_CITIES)]
            return _STREETS[_h(self.seed, "street", original) % len(_STREETS)]
        if typ == "ZIP":
            return "00000"
        return self.digits(original, typ)


def _name_tokens(name: str) -> list[str]:
    return re.findall(_NAME_RX, name)


def _shift_date(s: str, days: int) -> str | None:
    """Move a date string by ``days``, keeping its format; None when it cannot be parsed."""
    m = re.fullmatch(r"(\d{1,2})([/\-.])(\d{1,2})\2(\d{2}|\d{4})", s)
    if m:
        mo, d, y = int(m.group(1)), int(m.group(3)), int(m.group(4))
        year = y if len(m.group(4)) == 4 else (2000 + y if y < 50 else 1900 + y)
        new = _safe_date(year, mo, d, days)
        if new is None:
            return None
        ys = f"{new.year}" if len(m.group(4)) == 4 else f"{new.year % 100:02d}"
        fmt_m = f"{new.month:02d}" if len(m.group(1)) == 2 else str(new.month)
        fmt_d = f"{new.day:02d}" if len(m.group(3)) == 2 else str(new.day)
        return f"{fmt_m}{m.group(2)}{fmt_d}{m.group(2)}{ys}"
    m = re.fullmatch(r"(\d{4})([/\-])(\d{1,2})\2(\d{1,2})", s)
    if m:
        new = _safe_date(int(m.group(1)), int(m.group(3)), int(m.group(4)), days)
        return None if new is None else f"{new.year}{m.group(2)}{new.month:02d}{m.group(2)}{new.day:02d}"
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})", s)
    if m:
        new = _safe_date(2001, int(m.group(1)), int(m.group(2)), days)
        return None if new is None else f"{new.month}/{new.day}"
    # month-name forms
    mon = re.search(r"[A-Za-z]+", s)
    if not mon:
        return None
    idx = next((i for i, n in enumerate(_MONTH_NAMES) if n.startswith(mon.group().lower()[:3])), None)
    if idx is None:
        return None
    nums = re.findall(r"\d+", s)
    year = next((int(n) for n in nums if len(n) == 4), None)
    day = next((int(n) for n in nums if len(n) <= 2), None)
    abbreviated = len(mon.group()) <= 4 and mon.group().lower() not in ("may", "june", "july")
    if day is None:  # "March 2023": shift by whole months
        months = round(days / 30.4)
        total = (year or 2001) * 12 + idx + months
        name = _MONTH_NAMES[total % 12].title()
        name = name[:3] if abbreviated else name
        return f"{name} {total // 12}" if year else name
    new = _safe_date(year or 2001, idx + 1, day, days)
    if new is None:
        return None
    name = _MONTH_NAMES[new.month - 1].title()
    name = name[:3] if abbreviated else name
    if re.match(r"\d", s):
        return f"{new.day} {name} {new.year}" if year else f"{new.day} {name}"
    return f"{name} {new.day}, {new.year}" if year else f"{name} {new.day}"


def _safe_date(year: int, month: int, day: int, days: int) -> dt.date | None:
    try:
        return dt.date(year, month, day) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None


def deidentify(
    text: str,
    *,
    seed: int = 0,
    spans: Sequence[PhiSpan] | None = None,
    use_ner: bool = True,
) -> DeidResult:
    """A de-identified copy of ``text`` with consistent surrogates.

    ``spans`` are PHI spans already found (e.g. by :meth:`Guardian.check_input`); when omitted they are
    found with :func:`medslm.safety.find_phi`. The same ``seed`` gives the same surrogates and date shift.
    """
    if spans is None:
        from medslm.safety.phi import find_phi

        spans = find_phi(text, use_ner=use_ner)
    ordered = sorted(spans, key=lambda s: s.start)
    sur = _Surrogates(seed, text, ordered)
    out: list[str] = []
    new_spans: list[Span] = []
    pos = 0
    length = 0
    for s in ordered:
        if s.start < pos:
            continue  # overlapping input spans: keep the first
        chunk = text[pos : s.start]
        out.append(chunk)
        length += len(chunk)
        original = text[s.start : s.end]
        key = f"{s.type}:{original}"
        repl = sur.mapping.get(key)
        if repl is None:
            repl = sur.surrogate(original, s.type)
            sur.mapping[key] = repl
        out.append(repl)
        new_spans.append(Span(start=length, end=length + len(repl), label=s.type))
        length += len(repl)
        pos = s.end
    out.append(text[pos:])
    mapping = {k.split(":", 1)[1]: v for k, v in sur.mapping.items()}
    return DeidResult(
        text="".join(out),
        spans=tuple(ordered),
        surrogate_spans=tuple(new_spans),
        mapping=mapping,
        date_shift_days=sur.shift,
    )


__all__ = ["DeidResult", "date_shift_for", "deidentify", "text_for_endpoint"]


def text_for_endpoint(text: str, *, remote: bool, allow_phi: bool = False, seed: int = 0, spans: Sequence[PhiSpan] | None = None) -> str:
    """What may be sent to a model endpoint: the text itself on this machine, else a de-identified copy.

    ``remote``: the endpoint is not on this machine (``ModelInfo.remote``); ``allow_phi``: the user's
    explicit flag (``Settings.allow_phi_to_remote``) to send identified text anyway.
    """
    if not remote or allow_phi:
        return text
    return deidentify(text, seed=seed, spans=spans).text
