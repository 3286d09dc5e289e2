"""De-identification with consistent, keyed surrogates, and the way back to the original note.

The same name maps to the same surrogate everywhere (and "Smith" alone maps to the surrogate surname of
"John Smith"); every date moves by one offset so intervals stay true; ages over 89 become "90+"; numbers
keep their shape (a phone stays a phone-like string). Clinical text between PHI spans is copied
unchanged: "Mild", lab values and doses survive.

Every surrogate choice and the date shift are HMAC-SHA256 values keyed by the per-installation secret
(:mod:`medslm.secret`), never by a public seed: without the key file a surrogate cannot be reversed by
trying candidates. ``seed`` only namespaces the keyed values (two seeds give two surrogate sets).

A :class:`DeidResult` maps back: :meth:`DeidResult.to_original` turns an offset range of the
de-identified text into the range of the original note (a range inside a surrogate covers the whole
original PHI span), and :meth:`DeidResult.reidentify` puts the original strings back into text a model
wrote from the de-identified copy.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from medslm.records import PhiSpan, Span
from medslm.secret import keyed_int

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
    """A de-identified copy of a text, with what maps it back to the original."""

    text: str
    #: PHI spans replaced in the original text (offsets into the original), in order
    spans: tuple[PhiSpan, ...]
    #: where each surrogate lies in ``text`` (offsets into the de-identified copy), label = PHI type;
    #: ``surrogate_spans[i]`` replaced ``spans[i]``
    surrogate_spans: tuple[Span, ...]
    #: original surface string -> surrogate (holds PHI: never log it)
    mapping: dict[str, str] = field(default_factory=dict)
    #: days every date was moved by
    date_shift_days: int = 0
    #: surrogate name token -> original token ("Abbott" -> "Smith"), for names a model shortened
    token_mapping: dict[str, str] = field(default_factory=dict)

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The range of the original text that ``[start, end)`` of the de-identified text stands for.

        Outside surrogates, offsets move by the length changes before them; a boundary inside a
        surrogate moves to the edge of the original PHI span (so the range covers the whole of it).
        """
        if end < start:
            raise ValueError(f"range [{start}, {end}) is reversed")
        return self._map(start, left=True), self._map(end, left=False)

    def _map(self, pos: int, *, left: bool) -> int:
        starts = [s.start for s in self.surrogate_spans]
        i = bisect.bisect_right(starts, pos) - 1
        if i < 0:
            return pos
        sur, orig = self.surrogate_spans[i], self.spans[i]
        if pos >= sur.end:  # after surrogate i: shift by the length change so far
            return orig.end + (pos - sur.end)
        if pos == sur.start:
            return orig.start
        return orig.start if left else orig.end  # inside the surrogate: widen to the whole PHI span

    def reverse_mapping(self) -> dict[str, str]:
        """Surrogate -> original (the first original wins where two share a surrogate)."""
        out: dict[str, str] = {}
        for orig, sur in self.mapping.items():
            out.setdefault(sur, orig)
        for sur, orig in self.token_mapping.items():
            out.setdefault(sur, orig)
        return out

    def reidentify(self, text: str) -> str:
        """``text`` (written from the de-identified copy) with every surrogate replaced by its original."""
        return reidentify(text, self.reverse_mapping())


def reidentify(text: str, reverse: dict[str, str]) -> str:
    """Replace whole-word occurrences of each surrogate in ``text`` by its original (longest first)."""
    keys = [k for k in sorted(reverse, key=len, reverse=True) if k]
    if not keys or not text:
        return text
    rx = re.compile(r"(?<![\w])(?:" + "|".join(re.escape(k) for k in keys) + r")(?![\w])")
    return rx.sub(lambda m: reverse[m.group()], text)


def _h(seed: int, *parts: str) -> int:
    """A keyed (HMAC, installation secret) 64-bit value: the only source of surrogate choices."""
    return keyed_int("deid", str(seed), *parts)


def date_shift_for(seed: int = 0) -> int:
    """This installation's date shift in days: between 30 and 729 days into the past, never 0."""
    return -(30 + _h(seed, "date-shift") % 700)


class _Surrogates:
    def __init__(self, seed: int, text: str, spans: Sequence[PhiSpan]) -> None:
        self.seed = seed
        self.shift = date_shift_for(seed)
        self.mapping: dict[str, str] = {}
        self.tokens: dict[str, str] = {}  # surrogate name token -> original token
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
        self.tokens.setdefault(out, tok)
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
    found with :func:`medslm.safety.find_phi`. Surrogates are keyed by the installation secret; the same
    ``seed`` on the same installation gives the same surrogates and date shift.
    """
    if spans is None:
        from medslm.safety.phi import find_phi

        spans = find_phi(text, use_ner=use_ner)
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    sur = _Surrogates(seed, text, ordered)
    out: list[str] = []
    used: list[PhiSpan] = []
    new_spans: list[Span] = []
    pos = 0
    length = 0
    for s in ordered:
        if s.start < pos or s.end <= s.start:
            continue  # overlapping or empty input spans: keep the first
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
        used.append(s)
        new_spans.append(Span(start=length, end=length + len(repl), label=s.type))
        length += len(repl)
        pos = s.end
    out.append(text[pos:])
    mapping = {k.split(":", 1)[1]: v for k, v in sur.mapping.items()}
    return DeidResult(
        text="".join(out),
        spans=tuple(used),
        surrogate_spans=tuple(new_spans),
        mapping=mapping,
        date_shift_days=sur.shift,
        token_mapping=dict(sur.tokens),
    )


def text_for_endpoint(text: str, *, remote: bool, allow_phi: bool = False, seed: int = 0,
                      spans: Sequence[PhiSpan] | None = None) -> str:
    """What may be sent to a model endpoint: the text itself on this machine, else a de-identified copy.

    ``remote``: the endpoint is not on this machine (``ModelInfo.remote``); ``allow_phi``: the user's
    explicit flag (``Settings.allow_phi_to_remote``) to send identified text anyway.
    """
    if not remote or allow_phi:
        return text
    return deidentify(text, seed=seed, spans=spans).text


__all__ = ["DeidResult", "date_shift_for", "deidentify", "reidentify", "text_for_endpoint"]
