"""A template grammar of clinical sentences with a marked finding and its assertion, for ``assertion-slm``.

Each frame is a sentence with one or two finding slots and the assertion of each slot, by construction.
The families cover who the finding belongs to and how certain it is:

- the patient's, also when someone else tells it (reporter frames: "wife reports…", "per her mother…",
  "brought in by his son for…", "EMS notes…"; the subject may be "the child" or "her son" when a parent
  reports about a paediatric patient);
- ``family`` (a relative's condition, family history), ``other_person`` (a non-relative's: spouse,
  partner, roommate, coworkers, contacts, "exposure to a friend with…");
- negated (denies, no, without, negative for, "<test> negative", ruled out), possible (r/o, possible,
  likely, suspected, concern for, differential, "X vs Y", cannot exclude), historical (history of, s/p,
  prior, years ago, in <year>, resolved), hypothetical (return if, call if, watch for, risk of, should
  … develop);
- two-finding frames whose findings differ ("denies X but reports Y", "her husband has X; she has Y").

The vocabulary and frames were written for this grammar, not copied from any evaluation set; the
held-out ownership set (``medslm/data/assertion_ownership_test.jsonl``) was written before them and is
never read here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

FINDINGS = (
    "cough", "fever", "chest pain", "shortness of breath", "headache", "nausea", "vomiting", "diarrhea", "rash",
    "dizziness", "syncope", "palpitations", "abdominal pain", "back pain", "sore throat", "fatigue", "weight loss",
    "night sweats", "hematuria", "dysuria", "confusion", "a seizure", "wheezing", "leg swelling", "jaundice",
    "rectal bleeding", "blurry vision", "numbness", "weakness", "joint pain", "chills", "constipation", "insomnia",
    "anxiety", "depression", "hallucinations", "suicidal ideation", "memory loss", "tremor", "ear pain",
    "nasal congestion", "runny nose", "pneumonia", "influenza", "covid-19", "COVID", "strep throat", "tuberculosis",
    "TB", "hepatitis C", "hepatitis B", "HIV", "syphilis", "chlamydia", "gonorrhea", "shingles", "chickenpox",
    "measles", "scabies", "lice", "norovirus", "pink eye", "bronchitis", "sinusitis", "otitis media", "cellulitis",
    "a urinary tract infection", "UTI", "kidney stones", "appendicitis", "pancreatitis", "cholecystitis",
    "diabetes", "type 2 diabetes", "type 1 diabetes", "hypertension", "HTN", "hyperlipidemia", "asthma", "COPD",
    "heart failure", "CHF", "atrial fibrillation", "AFib", "a myocardial infarction", "an MI", "a heart attack",
    "coronary artery disease", "CAD", "a stroke", "a CVA", "a TIA", "a DVT", "deep vein thrombosis",
    "a pulmonary embolism", "a PE", "sepsis", "breast cancer", "colon cancer", "lung cancer", "prostate cancer",
    "ovarian cancer", "pancreatic cancer", "melanoma", "leukemia", "lymphoma", "dementia", "Alzheimer disease",
    "Parkinson disease", "multiple sclerosis", "epilepsy", "migraines", "schizophrenia", "bipolar disorder",
    "alcohol use disorder", "opioid use disorder", "an overdose", "lupus", "rheumatoid arthritis", "gout",
    "osteoporosis", "hypothyroidism", "thyroid disease", "celiac disease", "Crohn disease", "ulcerative colitis",
    "peptic ulcer disease", "GERD", "cirrhosis", "chronic kidney disease", "CKD", "anemia", "sickle cell disease",
    "hemophilia", "cystic fibrosis", "Huntington disease", "an aortic aneurysm", "sudden cardiac death", "glaucoma",
    "obesity", "sleep apnea", "a fracture", "a concussion", "a head injury", "a laceration", "a burn",
)  # fmt: skip
TESTABLE = ("COVID", "covid-19", "influenza", "flu", "strep", "HIV", "hepatitis B", "hepatitis C", "pregnancy",
            "RSV", "chlamydia", "gonorrhea", "syphilis", "TB", "mono")
PROCEDURES = (
    "appendectomy", "cholecystectomy", "CABG", "knee replacement", "hip replacement", "hysterectomy",
    "tonsillectomy", "gastric bypass", "a C-section", "spinal fusion", "a mastectomy", "PCI with stent placement",
)  # fmt: skip
RELATIVES = (
    "mother", "father", "mom", "dad", "brother", "sister", "son", "daughter", "grandmother", "grandfather",
    "maternal grandmother", "paternal grandfather", "aunt", "uncle", "maternal aunt", "paternal uncle", "cousin",
    "twin sister", "twin brother", "half-brother", "niece", "nephew", "older brother", "younger sister",
)  # fmt: skip
RELATIVES_PLURAL = ("both parents", "two siblings", "several relatives", "multiple family members", "her parents",
                    "his parents", "both brothers")
NONRELATIVES = (
    "wife", "husband", "spouse", "partner", "boyfriend", "girlfriend", "fiance", "fiancee", "roommate", "housemate",
    "coworker", "co-worker", "colleague", "classmate", "friend", "best friend", "neighbor", "teammate", "cellmate",
    "landlord", "babysitter", "sexual partner", "ex-husband", "ex-wife",
)  # fmt: skip
NONRELATIVES_PLURAL = ("several coworkers", "multiple classmates", "coworkers", "classmates", "friends",
                       "sick contacts", "close contacts", "household contacts", "other residents of the facility",
                       "kids at daycare", "teammates")
OTHER_REPORTERS = ("EMS", "the nurse", "nursing home staff", "the caregiver", "paramedics", "the school nurse",
                   "a bystander", "police", "the home health aide", "staff at the group home")
REPORT_VERBS = ("reports", "states", "says", "notes", "reported", "stated", "said", "noticed", "relates",
                "is concerned that", "endorses that", "tells us", "adds that", "confirms")
DURATIONS = ("for 3 days", "since yesterday", "for two weeks", "x 2 days", "since this morning", "for a week",
             "overnight", "for several months", "since Monday", "")
YEARS = ("2009", "2012", "2015", "2017", "2018", "2019", "2020", "2021")

# frames: (template, (label of {F}, label of {G} or None)). Slots: {F}, {G} findings; {P} procedure;
# {T} testable; {R} relative; {RS} relatives (plural); {N} non-relative; {NS} non-relatives (plural);
# {REP} reporter (any person); {V} report verb; {S} the patient as subject; {POS} his/her; {D} duration;
# {Y} year; {K} a number
FRAMES: tuple[tuple[str, tuple[str, str | None]], ...] = (
    # the patient's, told by someone else
    ("{Cap_POS} {N} {V} {S} has had {F} {D}.", ("present", None)),
    ("{Cap_POS} {R} {V} {S} has had {F} {D}.", ("present", None)),
    ("{Cap_REP} {V} {F} and {G} {D}.", ("present", "present")),
    ("{Cap_REP} {V} {S} has been having {F}.", ("present", None)),
    ("Per {POS} {N}, {S} has had {F} {D}.", ("present", None)),
    ("Per {POS} {R}, {S} developed {F} {D}.", ("present", None)),
    ("According to {POS} {R}, {S} has had {F}.", ("present", None)),
    ("According to {REP}, the patient had {F} overnight.", ("present", None)),
    ("Brought in by {POS} {R} for {F}.", ("present", None)),
    ("Brought in by {POS} {N} for {F} {D}.", ("present", None)),
    ("{Cap_POS} {R} brought {OBJ} in because of {F}.", ("present", None)),
    ("{Cap_POS} {N} called 911 after {S} had {F}.", ("present", None)),
    ("{Cap_POS} {R} noticed {F} {D}.", ("present", None)),
    ("{Cap_POS} {N} witnessed {F} at home.", ("present", None)),
    ("{Cap_POS} {R} is worried about {POS} {F}.", ("present", None)),
    ("Collateral from {POS} {N}: {S} has had {F} {D}.", ("present", None)),
    ("{Cap_REP} {V} the child has had {F} {D}.", ("present", None)),
    ("Mother {V} her son has had {F} {D}.", ("present", None)),
    ("Dad {V} his daughter has {F}.", ("present", None)),
    ("Parents {V} the baby has had {F} {D}.", ("present", None)),
    ("{Cap_POS} {R} found {OBJ} with {F}.", ("present", None)),
    ("{Cap_REP} {V} {F}.", ("present", None)),
    ("{Cap_POS} {N} {V} {S} has had {F}, but {S} denies {G}.", ("present", "negated")),
    ("Lives with {POS} {N}; presents with {F}.", ("present", None)),
    ("Cares for {POS} elderly {R} and reports {F} {D}.", ("present", None)),
    ("{F} started after visiting {POS} {R}.", ("present", None)),
    # the patient's, plain
    ("Presents with {F} {D}.", ("present", None)),
    ("c/o {F} {D}.", ("present", None)),
    ("Complains of {F} and {G}.", ("present", "present")),
    ("{Cap_F} {D}.", ("present", None)),
    ("Found to have {F}.", ("present", None)),
    ("Diagnosed with {F} today.", ("present", None)),
    ("Positive for {T}.", ("present", None)),
    ("{Cap_T} test positive.", ("present", None)),
    ("Exam notable for {F}.", ("present", None)),
    ("Admitted with {F}.", ("present", None)),
    ("{Cap_S} has {F}, on treatment.", ("present", None)),
    ("Assessment: {F}.", ("present", None)),
    ("Reports {F} but denies {G}.", ("present", "negated")),
    ("No {G}, but has had {F} {D}.", ("present", "negated")),
    ("Denies {G}; endorses {F}.", ("present", "negated")),
    ("{Cap_F}, consistent with the exam.", ("present", None)),
    ("Known {F}, stable.", ("present", None)),
    # family
    ("{Cap_R} has {F}.", ("family", None)),
    ("{Cap_POS} {R} has {F}.", ("family", None)),
    ("{Cap_R} with {F}.", ("family", None)),
    ("{Cap_R} had {F} at age {K}.", ("family", None)),
    ("{Cap_R} died of {F}.", ("family", None)),
    ("{Cap_POS} {R} was diagnosed with {F} last year.", ("family", None)),
    ("Family history of {F}.", ("family", None)),
    ("Family history: {R} with {F}.", ("family", None)),
    ("FHx: {R} with {F}.", ("family", None)),
    ("FH significant for {F} in {POS} {R}.", ("family", None)),
    ("Family history is notable for {F}.", ("family", None)),
    ("Strong family history of {F}.", ("family", None)),
    ("{Cap_RS} have {F}.", ("family", None)),
    ("{Cap_RS} with {F}.", ("family", None)),
    ("{F} in {POS} {R}.", ("family", None)),
    ("{Cap_R} and {R} both with {F}.", ("family", None)),
    ("{Cap_POS} {R} has {F}; {S} has had {G} {D}.", ("family", "present")),
    ("{Cap_POS} {R} had {F}. {Cap_S} denies {G}.", ("family", "negated")),
    ("Family history of {F}; personal history of {G}.", ("family", "historical")),
    ("No family history of {F}.", ("negated", None)),
    # another person's (not a relative)
    ("{Cap_POS} {N} has {F}.", ("other_person", None)),
    ("{Cap_N} has {F}.", ("other_person", None)),
    ("{Cap_N} with {F}.", ("other_person", None)),
    ("{Cap_POS} {N} was recently diagnosed with {F}.", ("other_person", None)),
    ("{Cap_POS} {N} tested positive for {T}.", ("other_person", None)),
    ("{Cap_N} is being treated for {F}.", ("other_person", None)),
    ("{Cap_N} is sick with {F} at home.", ("other_person", None)),
    ("{Cap_POS} {N} recently had {F}.", ("other_person", None)),
    ("{Cap_NS} have had {F} this week.", ("other_person", None)),
    ("{Cap_NS} with {F}.", ("other_person", None)),
    ("Exposure to a {N} with {F}.", ("other_person", None)),
    ("Exposed to {T} through a {N}.", ("other_person", None)),
    ("Close contact with a {N} who has {F}.", ("other_person", None)),
    ("Sick contacts with {F}.", ("other_person", None)),
    ("Sick contacts at home with {F}.", ("other_person", None)),
    ("{Cap_POS} {N}, who has {F}, lives with {OBJ}.", ("other_person", None)),
    ("{Cap_POS} {N} has {F}; {S} has had {G} {D}.", ("other_person", "present")),
    ("{Cap_POS} {N} has {F}; {S} denies {G}.", ("other_person", "negated")),
    ("{Cap_POS} {N} {V} {SP} has had {G} and {PRON} has {F} too.", ("other_person", "present")),
    ("{Cap_N} with similar symptoms of {F}.", ("other_person", None)),
    ("The other driver had {F}.", ("other_person", None)),
    # negated
    ("Denies {F}.", ("negated", None)),
    ("{Cap_S} denies {F} or {G}.", ("negated", "negated")),
    ("No {F}.", ("negated", None)),
    ("No {F} or {G}.", ("negated", "negated")),
    ("Negative for {F}.", ("negated", None)),
    ("{Cap_T} negative.", ("negated", None)),
    ("{Cap_T} test was negative.", ("negated", None)),
    ("Rapid {T} negative.", ("negated", None)),
    ("Without {F}.", ("negated", None)),
    ("No evidence of {F}.", ("negated", None)),
    ("No signs of {F}.", ("negated", None)),
    ("{Cap_F} was ruled out.", ("negated", None)),
    ("Ruled out for {F}.", ("negated", None)),
    ("{Cap_S} has not had any {F}.", ("negated", None)),
    ("Not experiencing {F}.", ("negated", None)),
    ("Free of {F}.", ("negated", None)),
    ("{Cap_F}: none.", ("negated", None)),
    ("ROS negative for {F}.", ("negated", None)),
    ("Imaging shows no {F}.", ("negated", None)),
    # possible
    ("Possible {F}.", ("possible", None)),
    ("r/o {F}.", ("possible", None)),
    ("R/O {F}.", ("possible", None)),
    ("Rule out {F}.", ("possible", None)),
    ("Concern for {F}.", ("possible", None)),
    ("Concerning for {F}.", ("possible", None)),
    ("Suspected {F}.", ("possible", None)),
    ("Suspect {F}.", ("possible", None)),
    ("Likely {F}.", ("possible", None)),
    ("Probable {F}.", ("possible", None)),
    ("Presumed {F}.", ("possible", None)),
    ("{Cap_F} vs {G}.", ("possible", "possible")),
    ("{Cap_F} versus {G}.", ("possible", "possible")),
    ("Differential includes {F} and {G}.", ("possible", "possible")),
    ("Ddx: {F} vs {G}.", ("possible", "possible")),
    ("Cannot exclude {F}.", ("possible", None)),
    ("Cannot rule out {F}.", ("possible", None)),
    ("Questionable {F}.", ("possible", None)),
    ("Query {F}.", ("possible", None)),
    ("Evaluate for {F}.", ("possible", None)),
    ("Work-up for possible {F}.", ("possible", None)),
    ("May represent {F}.", ("possible", None)),
    ("Findings suggestive of {F}.", ("possible", None)),
    ("{Cap_G}, probably {F}.", ("possible", "present")),
    ("Worried about {F}; will test.", ("possible", None)),
    # historical
    ("History of {F}.", ("historical", None)),
    ("Hx of {F}.", ("historical", None)),
    ("h/o {F}.", ("historical", None)),
    ("PMH: {F}.", ("historical", None)),
    ("Past medical history of {F}.", ("historical", None)),
    ("Past history significant for {F}.", ("historical", None)),
    ("s/p {P}.", ("historical", None)),
    ("S/P {P} in {Y}.", ("historical", None)),
    ("Status post {P}.", ("historical", None)),
    ("Prior {F}.", ("historical", None)),
    ("Previous {F}, treated.", ("historical", None)),
    ("Remote history of {F}.", ("historical", None)),
    ("{Cap_F} in {Y}.", ("historical", None)),
    ("Had {F} {K} years ago.", ("historical", None)),
    ("Treated for {F} as a child.", ("historical", None)),
    ("{Cap_F}, resolved.", ("historical", None)),
    ("Previously diagnosed with {F}, now resolved.", ("historical", None)),
    ("Was hospitalized for {F} in {Y}.", ("historical", None)),
    ("{Cap_S} had {F} last year.", ("historical", None)),
    # hypothetical
    ("Return if {F} develops.", ("hypothetical", None)),
    ("Return to the ED for {F}.", ("hypothetical", None)),
    ("Return to the ED if you develop {F} or {G}.", ("hypothetical", "hypothetical")),
    ("Call if {F}.", ("hypothetical", None)),
    ("Call the clinic if {F} worsens.", ("hypothetical", None)),
    ("Seek care if {S} develops {F}.", ("hypothetical", None)),
    ("Watch for {F}.", ("hypothetical", None)),
    ("Monitor for {F}.", ("hypothetical", None)),
    ("If {F} occurs, stop the medication.", ("hypothetical", None)),
    ("Should {S} develop {F}, return immediately.", ("hypothetical", None)),
    ("Risk of {F} discussed.", ("hypothetical", None)),
    ("Counseled on the risk of {F}.", ("hypothetical", None)),
    ("Counseled on signs of {F}.", ("hypothetical", None)),
    ("In case of {F}, call 911.", ("hypothetical", None)),
    ("Return precautions for {F} reviewed.", ("hypothetical", None)),
    ("Warning signs such as {F} reviewed.", ("hypothetical", None)),
)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def generate(n: int, seed: int = 0) -> list[tuple[str, int, int, str]]:
    """``n`` sentences ``(text, start, end, assertion)`` from the frames (each frame about equally often;
    a two-finding frame yields one example per finding)."""
    rng = random.Random(seed)
    out: list[tuple[str, int, int, str]] = []
    while len(out) < n:
        frame, (lab_f, lab_g) = rng.choice(FRAMES)
        female = rng.random() < 0.5
        subj = rng.choice(("she", "the patient", "pt") if female else ("he", "the patient", "pt"))
        slots = {
            "S": subj, "SP": "she" if female else "he", "POS": "her" if female else "his", "OBJ": "her" if female else "him",
            "PRON": "he" if female else "she",  # the other person in "…and she has X too"
            "R": rng.choice(RELATIVES), "RS": rng.choice(RELATIVES_PLURAL),
            "N": rng.choice(NONRELATIVES), "NS": rng.choice(NONRELATIVES_PLURAL),
            "REP": rng.choice(OTHER_REPORTERS + tuple(f"{'her' if female else 'his'} {p}" for p in RELATIVES[:8] + NONRELATIVES[:6])),
            "V": rng.choice(REPORT_VERBS), "D": rng.choice(DURATIONS), "Y": rng.choice(YEARS),
            "K": str(rng.randint(2, 70)), "P": rng.choice(PROCEDURES), "T": rng.choice(TESTABLE),
        }
        f, g = (x.split(" ", 1)[1] if x.startswith(("a ", "an ")) and rng.random() < 0.6 else x
                for x in rng.sample(FINDINGS, 2))
        if "{T}" in frame or "{Cap_T}" in frame:
            f = slots["T"]
        if "{P}" in frame:
            f = slots["P"]
        slots["F"], slots["G"] = f, g
        text = frame
        marks: dict[str, tuple[int, int]] = {}
        # fill left to right so that the finding offsets are known
        out_text = ""
        i = 0
        while i < len(text):
            if text[i] == "{":
                j = text.index("}", i)
                key = text[i + 1 : j]
                cap = key.startswith("Cap_")
                name = key[4:] if cap else key
                val = slots[name]
                val = _cap(val) if cap else val
                if name in ("F", "T", "P"):
                    marks["F"] = (len(out_text), len(out_text) + len(val))
                elif name == "G":
                    marks["G"] = (len(out_text), len(out_text) + len(val))
                out_text += val
                i = j + 1
            else:
                out_text += text[i]
                i += 1
        out_text = " ".join(out_text.split()).replace(" .", ".").replace(" ,", ",")
        # re-find offsets after whitespace normalisation (values are unique words in the sentence)
        for key, lab in (("F", lab_f), ("G", lab_g)):
            if lab is None or key not in marks:
                continue
            val = slots[key] if key == "G" else (slots["F"])
            pos = out_text.lower().find(val.lower())
            if pos < 0 or out_text.lower().count(val.lower()) > 1:
                continue
            out.append((out_text, pos, pos + len(val), lab))
    return out[:n]


def mentions_by_label(rows: Sequence[tuple[str, int, int, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for *_, lab in rows:
        counts[lab] = counts.get(lab, 0) + 1
    return counts


__all__ = ["FINDINGS", "FRAMES", "generate", "mentions_by_label"]
