"""A second PHI test set, from a generator unlike the one the rules were written on.

:func:`medslm.safety.corpora.synthetic_phi_notes` uses Faker (en_US phones, addresses, SSNs, names from
ten locales) in five fixed note layouts. This generator shares none of it: hand-written name lists
(Irish, Spanish, Portuguese, Vietnamese, Chinese, Korean, Japanese, Arabic, Dutch, German, Nordic,
Polish, Yoruba/Igbo, Indian, Greek), lower-case and upper-case renderings, international phone numbers
and addresses (UK, France, Germany, Canada, Australia, Netherlands), day-first and dotted dates,
identifiers with dashes and spaces (``MRN#: 99-887766``, NHS numbers), nurses and relatives named
without a title, and its own note templates (ED triage, nursing, discharge, telephone encounter,
referral letter, dialogue transcript). Each PHI value is recorded with its span while the note is
built, so gold spans are exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GIVEN = (
    "Siobhan Aoife Ciaran Niamh Tadhg María José Joaquín Inés Rocío João Conceição Thu Minh Lan Huong Wei "
    "Xiaoling Jun Hye-jin Min-seo Haruto Yuki Sakura Fatima Youssef Layla Omar Noor Sven Ingrid Astrid "
    "Bjørn Freya Małgorzata Wojciech Agnieszka Chukwuemeka Adaeze Oluwaseun Folake Priyanka Arjun Lakshmi "
    "Rohan Eleni Dimitrios Anneke Maarten Jürgen Käthe Dieter Mateo Lucía Tomás Chiara Giulia"
).split()
FAMILY = tuple(
    "O'Sullivan MacNamara García-Núñez Fernández Gonçalves Nguyen Tran Pham Zhang Liu Huang Park Choi "
    "Nakamura Takahashi Haddad Schröder Müller Lindqvist Håkansson Kowalczyk Wiśniewska Okonkwo Adeyemi "
    "Balogun Venkataraman Iyer Chatterjee Papadopoulos Konstantinou Rossi Esposito Dubois Lefèvre Sørensen"
    .split()
)
# multi-word family names kept whole
FAMILY_MULTI = ("Ní Bhriain", "de la Cruz", "van der Berg", "de Vries", "El-Amin", "Al-Rashid")
SHORT = ("Li", "Wu", "Ng", "Xu", "Ho", "Ma")
CONDITIONS = (
    ("community-acquired pneumonia", "amoxicillin"), ("heart failure with reduced ejection fraction", "furosemide"),
    ("type 2 diabetes", "metformin"), ("atrial fibrillation", "apixaban"), ("COPD exacerbation", "prednisolone"),
    ("cellulitis of the left leg", "flucloxacillin"), ("urinary tract infection", "nitrofurantoin"),
    ("asthma", "salbutamol"), ("hypertension", "amlodipine"), ("migraine", "sumatriptan"),
)
CLINICAL = (
    "Obs: T 38.2, HR 104, BP 132/84, RR 20, sats 95% on air.",
    "Chest clear, heart sounds dual, abdomen soft and non-tender.",
    "Mild pitting oedema to mid-shin bilaterally.",
    "Bloods: Hb 118, WCC 13.2, CRP 86, creatinine 94.",
    "Denies chest pain, no haemoptysis, no calf tenderness.",
    "GCS 15, alert and oriented, moving all four limbs.",
)


@dataclass(frozen=True)
class GoldNote:
    id: str
    text: str
    spans: tuple[tuple[int, int, str], ...]  # (start, end, type)


class _B:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.spans: list[tuple[int, int, str]] = []

    def t(self, s: str) -> _B:
        self.parts.append(s)
        self.n += len(s)
        return self

    def p(self, s: str, typ: str) -> _B:
        self.spans.append((self.n, self.n + len(s), typ))
        return self.t(s)


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1931, 2025), rng.randint(1, 12), rng.randint(1, 28)
    months = ("January February March April May June July August September October November December").split()
    mon = months[m - 1]
    return rng.choice([
        f"{d:02d}.{m:02d}.{y}", f"{d}/{m}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d} {mon} {y}", f"{d}-{mon[:3]}-{y}",
        f"{d:02d}{mon[:3].upper()}{y}", f"{mon} {d}, {y}", f"{mon[:3]}. {d} {y}", f"{d}{_th(d)} {mon} {y}",
        f"{y}/{m:02d}/{d:02d}", f"{d:02d}-{mon[:3].upper()}-{y % 100:02d}",
    ])


def _th(d: int) -> str:
    return "th" if 11 <= d <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")


def _phone(rng: random.Random) -> str:
    r = rng.randint
    return rng.choice([
        f"+44 20 {r(7000, 7999)} {r(1000, 9999)}", f"+44 7700 {r(900000, 900999)}", f"07700 {r(900000, 900999)}",
        f"+33 1 {r(10, 99)} {r(10, 99)} {r(10, 99)} {r(10, 99)}", f"+49 30 {r(100000, 999999)}",
        f"+61 2 {r(8000, 9999)} {r(1000, 9999)}", f"+1 (416) {r(200, 999)}-{r(1000, 9999)}",
        f"+31 20 {r(100, 999)} {r(1000, 9999)}", f"555-{r(1000, 9999)}", f"(02) {r(8000, 9999)} {r(1000, 9999)}",
        f"+353 1 {r(100, 999)} {r(1000, 9999)}",
    ])


def _address(rng: random.Random) -> str:
    r = rng.randint
    return rng.choice([
        f"Flat {r(1, 20)}, {r(1, 200)} Baker Street, London NW1 {r(1, 9)}XE",
        f"{r(1, 90)} rue de la Paix, 750{r(10, 20)} Paris",
        f"Hauptstraße {r(1, 120)}, 10{r(100, 999)} Berlin",
        f"Apt {r(1, 30)}B, {r(100, 2000)} Rue Sainte-Catherine, Montréal, QC H3B 1K{r(1, 9)}",
        f"{r(1, 300)} George Street, Sydney NSW 2000",
        f"Keizersgracht {r(1, 700)}, 1015 CJ Amsterdam",
        f"{r(1, 99)} Kings Road, Dublin 6",
        f"Unit {r(1, 40)}, {r(1, 99)} Victoria Parade, Fitzroy VIC 3065",
    ])


def _mrn(rng: random.Random) -> tuple[str, str]:
    r = rng.randint
    cue, value = rng.choice([
        ("MRN#: ", f"{r(10, 99)}-{r(100000, 999999)}"), ("Hospital no. ", f"H{r(1000000, 9999999)}"),
        ("NHS number ", f"{r(100, 999)} {r(100, 999)} {r(1000, 9999)}"), ("UR number: ", f"{r(100000, 999999)}"),
        ("mrn ", f"{r(1000000, 9999999)}"), ("MRN - ", f"{r(10, 99)}-{r(100, 999)}-{r(100, 999)}"),
        ("Patient ID: ", f"PT-{r(100000, 999999)}"), ("Chart #", f"{r(100000, 999999)}"),
    ])
    return cue, value


def _name(rng: random.Random, *, full: bool = True) -> str:
    given = rng.choice(GIVEN)
    if rng.random() < 0.25:
        given = f"{given} {rng.choice(GIVEN)}" if rng.random() < 0.5 else given
    family = rng.choice(FAMILY_MULTI) if rng.random() < 0.15 else rng.choice(FAMILY)
    return f"{given} {family}" if full else family


def _case(rng: random.Random, s: str, lower: float = 0.15, upper: float = 0.1) -> str:
    x = rng.random()
    if x < lower:
        return s.lower()
    if x < lower + upper:
        return s.upper()
    return s


def heldout_phi_notes(n: int = 400, *, seed: int = 0) -> list[GoldNote]:
    """``n`` notes with gold PHI spans (types NAME, DATE, AGE, PHONE, ADDRESS, MRN, EMAIL, ID, SSN)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        b = _B()
        pt = _name(rng)
        fam = pt.split(" ", 1)[1] if " " in pt else pt
        cond, med = rng.choice(CONDITIONS)
        kind = rng.randrange(6)
        cue, mrn = _mrn(rng)
        if kind == 0:  # ED triage note
            b.t("ED TRIAGE  ").p(_date(rng), "DATE").t("\npt name - ").p(_case(rng, pt, 0.4, 0.1), "NAME")
            b.t("  ").t(cue).p(mrn, "MRN").t("\n")
            age = rng.randint(90, 103) if rng.random() < 0.4 else rng.randint(18, 89)
            b.t("Age ").p(str(age), "AGE").t(" yrs. ") if age >= 90 else b.t(f"Age {age} yrs. ")
            b.t(f"Presenting with {cond}. {rng.choice(CLINICAL)}\n")
            b.t("Triaged by nurse ").p(rng.choice(SHORT) if rng.random() < 0.5 else _name(rng), "NAME")
            b.t(". NOK: ").p(_name(rng), "NAME").t(" (").t(rng.choice(["daughter", "son", "partner", "niece"]))
            b.t(") ").p(_phone(rng), "PHONE").t("\n")
        elif kind == 1:  # nursing progress note, lower case
            b.t("nursing note ").p(_date(rng), "DATE").t("\n")
            b.p(_case(rng, pt.split()[0], 0.5, 0.0), "NAME").t(" settled overnight, ").t(rng.choice(CLINICAL).lower())
            b.t(" husband ").p(_case(rng, _name(rng), 0.5, 0.0), "NAME").t(" visited, contact ").p(_phone(rng), "PHONE")
            b.t(". handover given to nurse ").p(rng.choice(SHORT), "NAME").t(".\n")
        elif kind == 2:  # discharge summary
            b.t("DISCHARGE SUMMARY\nSURNAME: ").p(fam.upper(), "NAME").t("   FORENAME: ").p(pt.split()[0].upper(), "NAME")
            b.t("\nD.O.B.: ").p(_date(rng), "DATE").t("   ").t(cue).p(mrn, "MRN").t("\n")
            b.t("Home address: ").p(_address(rng), "ADDRESS").t("\n")
            b.t(f"Diagnosis: {cond}. Discharged on {med}. ")
            b.t("Follow-up with Dr ").p(_name(rng, full=False), "NAME").t(" on ").p(_date(rng), "DATE").t(".\n")
            if rng.random() < 0.5:
                b.t("Email for results: ").p(f"{pt.split()[0].lower()}.{rng.randint(1, 99)}@mail.example.net", "EMAIL").t("\n")
        elif kind == 3:  # telephone encounter
            b.t("Telephone encounter, ").p(_date(rng), "DATE").t(". Spoke to ").p(pt, "NAME").t(" on ")
            b.p(_phone(rng), "PHONE").t(f" regarding {cond}. ")
            b.t("Identity confirmed with date of birth ").p(_date(rng), "DATE").t(" and ").t(cue).p(mrn, "MRN").t(". ")
            b.t(f"Advised to continue {med}.\n")
            if rng.random() < 0.5:
                b.t("SSN on file ").p(f"{rng.randint(100, 665)} {rng.randint(10, 99)} {rng.randint(1000, 9999)}", "SSN").t(".\n")
        elif kind == 4:  # referral letter
            b.t("Dear Dr ").p(_name(rng, full=False), "NAME").t(",\nRe: ").p(pt, "NAME").t(", born ").p(_date(rng), "DATE")
            b.t(", of ").p(_address(rng), "ADDRESS").t(".\n")
            b.t(f"Thank you for seeing this patient with {cond}. ")
            age = rng.randint(90, 101)
            b.t("At ").p(str(age), "AGE").t(" she remains independent. ")
            b.t(f"{rng.choice(CLINICAL)}\nInsurance: passport no. ").p(f"X{rng.randint(1000000, 9999999)}", "ID").t("\n")
            b.t("Kind regards,\n").p(_name(rng), "NAME").t(", consultant physician\n")
        else:  # dialogue transcript
            b.t("[doctor] good morning, can you confirm your name?\n[patient] it's ").p(_case(rng, pt, 0.6, 0.0), "NAME")
            b.t(".\n[doctor] and your date of birth?\n[patient] ").p(_date(rng), "DATE").t(".\n")
            b.t(f"[doctor] what brings you in?\n[patient] my {cond} is worse. my son ")
            b.p(_name(rng).split()[0], "NAME").t(" brought me.\n[doctor] best number to reach you?\n[patient] ")
            b.p(_phone(rng), "PHONE").t(".\n")
        out.append(GoldNote(id=f"heldout-{seed}-{i:04d}", text="".join(b.parts), spans=tuple(b.spans)))
    return out


def score(notes: list[GoldNote], predict) -> dict[str, dict[str, float]]:
    """Per-type recall (a gold span counts when a predicted span of any PHI type overlaps it: it is removed
    either way) and precision (a predicted span counts when it overlaps a gold span)."""
    per: dict[str, dict[str, float]] = {}
    tp_pred = n_pred = 0
    for note in notes:
        pred = predict(note.text)
        for s, e, typ in note.spans:
            d = per.setdefault(typ, {"gold": 0, "found": 0, "typed": 0})
            d["gold"] += 1
            d["found"] += any(p.start < e and s < p.end for p in pred)
            d["typed"] += any(p.start < e and s < p.end and p.type == typ for p in pred)
        for p in pred:
            n_pred += 1
            tp_pred += any(p.start < e and s < p.end for s, e, _ in note.spans)
    for d in per.values():
        d["recall"] = d["found"] / d["gold"]
        d["typed_recall"] = d["typed"] / d["gold"]
    per["_all"] = {"gold": sum(d["gold"] for d in per.values()), "found": sum(d["found"] for d in per.values()),
                   "pred": n_pred, "precision": tp_pred / n_pred if n_pred else 1.0}
    per["_all"]["recall"] = per["_all"]["found"] / per["_all"]["gold"]
    return per
