"""Readers for the public evaluation sets in ``../shared/data`` → typed, frozen records.

The folder comes from an argument, ``Settings.data_dir`` or ``$MEDSLM_DATA_DIR``, else ``../shared/data``
beside the current directory (or beside the repository). Nothing is copied into the project.

=================  ===========================================  ============================
set                reader                                       record
=================  ===========================================  ============================
NCBI-disease       ``read_ncbi_disease(split, format=...)``     :class:`TaggedSentence` /
                                                                :class:`AnnotatedDocument`
BC5CDR             ``read_bc5cdr(split)``                       :class:`TaggedSentence`
CodiEsp            ``read_codiesp(split)``                      :class:`CodingCase`
KTAS               ``read_ktas_visits()``                       :class:`TriageVisit`
MTS-Dialog         ``read_mts_dialog(split)``                   :class:`SummaryPair`
ACI-Bench          ``read_aci_bench(split)``                    :class:`SummaryPair`
MeQSum             ``read_meqsum()``                            :class:`SummaryPair`
MedSafetyBench     ``read_medsafetybench(source)``              :class:`SafetyPrompt`
PubMedQA           ``read_pubmedqa()``                          :class:`QAItem`
=================  ===========================================  ============================
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError, UnknownNameError

__all__ = [
    "DATASETS",
    "AnnotatedDocument",
    "CodingCase",
    "CodingEvidence",
    "GoldSpan",
    "QAItem",
    "SafetyPrompt",
    "SummaryPair",
    "TaggedSentence",
    "TriageVisit",
    "clinical_texts",
    "dataset_path",
    "ktas_note",
    "read_aci_bench",
    "read_bc5cdr",
    "read_codiesp",
    "read_ktas",
    "read_ktas_visits",
    "read_medsafetybench",
    "read_meqsum",
    "read_mts_dialog",
    "read_ncbi_disease",
    "read_pubmedqa",
    "resolve_data_dir",
]

DATASETS = ("ncbi-disease", "bc5cdr", "codiesp", "ktas", "mts-dialog", "aci-bench", "meqsum",
            "medsafetybench", "pubmedqa")


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class TaggedSentence:
    """One sentence of a CoNLL/IOB file: tokens with their IOB2 tags (``B-Disease``, ``I-Chemical``, ``O``)."""

    id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def spans(self) -> list[tuple[int, int, str]]:
        """Entities as half-open character spans into :attr:`text` with their type."""
        offsets, pos = [], 0
        for tok in self.tokens:
            offsets.append((pos, pos + len(tok)))
            pos += len(tok) + 1
        out: list[tuple[int, int, str]] = []
        for s, e, t in _iob_chunks(self.tags):
            out.append((offsets[s][0], offsets[e - 1][1], t))
        return out


@dataclass(frozen=True, slots=True)
class GoldSpan:
    start: int
    end: int
    text: str
    type: str
    concept: str | None = None


@dataclass(frozen=True, slots=True)
class AnnotatedDocument:
    """A document with gold character spans (NCBI-disease PubTator files: title + abstract)."""

    id: str
    text: str
    spans: tuple[GoldSpan, ...]


@dataclass(frozen=True, slots=True)
class CodingEvidence:
    code: str
    kind: str  # "diagnosis" or "procedure"
    text: str
    spans: tuple[tuple[int, int], ...]  # offsets into the *Spanish* original, not the English text


@dataclass(frozen=True, slots=True)
class CodingCase:
    """A CodiEsp clinical case (English machine translation) with its gold ICD-10 codes (upper case)."""

    id: str
    text: str
    diagnoses: tuple[str, ...]
    procedures: tuple[str, ...] = ()
    evidence: tuple[CodingEvidence, ...] = ()


@dataclass(frozen=True, slots=True)
class TriageVisit:
    """A KTAS emergency visit: the triage-time note, expert and nurse levels (1 most urgent - 5)."""

    id: str
    text: str
    level: int  # KTAS_expert
    nurse_level: int | None
    row: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SummaryPair:
    """Source text and its reference summary (a note section, a full note, a question summary)."""

    id: str
    source: str
    reference: str
    section: str | None = None
    dataset: str = ""


@dataclass(frozen=True, slots=True)
class SafetyPrompt:
    """A request to the assistant; MedSafetyBench holds only harmful ones (``harmful=True``)."""

    id: str
    text: str
    harmful: bool
    category: str = ""
    safe_response: str = ""


@dataclass(frozen=True, slots=True)
class QAItem:
    id: str
    question: str
    contexts: tuple[str, ...]
    answer: str  # yes / no / maybe
    long_answer: str = ""


# ------------------------------------------------------------------------------------------ paths
def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The public data folder: the argument, else ``$MEDSLM_DATA_DIR``, else ``../shared/data``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("MEDSLM_DATA_DIR")
    if env:
        return Path(env)
    for base in (Path.cwd(), *Path.cwd().parents[:2]):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return Path.cwd().parent / "shared" / "data"


def dataset_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of one data set; raises a :class:`ConfigurationError` that says what to set."""
    if name not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    root = resolve_data_dir(data_dir)
    path = root / name
    if not path.is_dir():
        raise ConfigurationError(
            f"data set {name!r} not found at {path}; pass --data / data_dir=, or set MEDSLM_DATA_DIR "
            "to the folder that holds the public data sets"
        )
    return path


def _limit(it: Iterator[Any], limit: int | None) -> list[Any]:
    out = []
    for i, x in enumerate(it):
        if limit is not None and i >= limit:
            break
        out.append(x)
    return out


def _pick(name: str, split: str, choices: dict[str, str]) -> str:
    if split not in choices:
        raise UnknownNameError(f"{name} split", split, list(choices))
    return choices[split]


# ------------------------------------------------------------------------------------------ NER
def _iob_chunks(tags: tuple[str, ...] | list[str]) -> list[tuple[int, int, str]]:
    """IOB2 tags → ``(first token, one past last token, type)``; a stray ``I-`` opens a chunk."""
    out: list[tuple[int, int, str]] = []
    start, typ = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        pre, _, t = tag.partition("-")
        if start >= 0 and (pre in ("O", "B") or t != typ):
            out.append((start, i, typ))
            start = -1
        if pre == "B" or (pre == "I" and start < 0):
            start, typ = i, t
    return out


def _read_conll(path: Path, prefix: str, default_type: str | None = None) -> Iterator[TaggedSentence]:
    toks: list[str] = []
    tags: list[str] = []
    n = 0
    with path.open(encoding="utf-8") as fh:
        for line in [*fh, ""]:
            line = line.rstrip("\n")
            if not line.strip():
                if toks:
                    yield TaggedSentence(f"{prefix}-{n}", tuple(toks), tuple(tags))
                    n += 1
                    toks, tags = [], []
                continue
            tok, _, tag = line.partition("\t")
            tag = tag.strip() or "O"
            if default_type and tag in ("B", "I"):
                tag = f"{tag}-{default_type}"
            toks.append(tok)
            tags.append(tag)


def read_ncbi_disease(data_dir: str | os.PathLike[str] | None = None, split: str = "test",
                      limit: int | None = None, format: str = "conll") -> list[Any]:
    """NCBI-disease: ``format="conll"`` → :class:`TaggedSentence` (tags ``B-Disease``…);
    ``format="pubtator"`` → :class:`AnnotatedDocument` with MeSH/OMIM ids."""
    root = dataset_path("ncbi-disease", data_dir)
    if format == "conll":
        fname = _pick("ncbi-disease", split, {"train": "train.tsv", "dev": "devel.tsv", "devel": "devel.tsv",
                                              "test": "test.tsv"})
        return _limit(_read_conll(root / "conll" / fname, f"ncbi-{split}", default_type="Disease"), limit)
    if format == "pubtator":
        fname = _pick("ncbi-disease", split, {"train": "NCBItrainset_corpus.txt",
                                              "dev": "NCBIdevelopset_corpus.txt",
                                              "devel": "NCBIdevelopset_corpus.txt",
                                              "test": "NCBItestset_corpus.txt"})
        return _limit(_read_pubtator(root / "original" / fname), limit)
    raise UnknownNameError("NCBI-disease format", format, ["conll", "pubtator"])


def _read_pubtator(path: Path) -> Iterator[AnnotatedDocument]:
    pmid, title, abstract = "", "", ""
    spans: list[GoldSpan] = []
    with path.open(encoding="utf-8") as fh:
        for line in [*fh, "\n"]:
            line = line.rstrip("\n")
            if not line.strip():
                if pmid:
                    yield AnnotatedDocument(pmid, f"{title} {abstract}", tuple(spans))
                pmid, title, abstract, spans = "", "", "", []
                continue
            m = re.match(r"^(\d+)\|([ta])\|(.*)$", line)
            if m:
                pmid = m.group(1)
                if m.group(2) == "t":
                    title = m.group(3)
                else:
                    abstract = m.group(3)
                continue
            parts = line.split("\t")
            if len(parts) >= 5:
                pmid = parts[0]
                spans.append(GoldSpan(int(parts[1]), int(parts[2]), parts[3], parts[4],
                                      parts[5] if len(parts) > 5 else None))


def read_bc5cdr(data_dir: str | os.PathLike[str] | None = None, split: str = "devel",
                limit: int | None = None) -> list[TaggedSentence]:
    """BC5CDR (IOB): tags ``B-Chemical``, ``I-Disease``…; splits ``train`` and ``devel``."""
    root = dataset_path("bc5cdr", data_dir)
    fname = _pick("bc5cdr", split, {"train": "train.tsv", "dev": "devel.tsv", "devel": "devel.tsv"})
    return _limit(_read_conll(root / fname, f"bc5cdr-{split}"), limit)


# ------------------------------------------------------------------------------------------ coding
def read_codiesp(data_dir: str | os.PathLike[str] | None = None, split: str = "dev",
                 limit: int | None = None) -> list[CodingCase]:
    """CodiEsp (English text): gold diagnosis codes (upper case, with dot), procedures and evidence."""
    root = dataset_path("codiesp", data_dir)
    split = _pick("codiesp", split, {"train": "train", "dev": "dev"})
    folder = root / split
    diag: dict[str, list[str]] = {}
    proc: dict[str, list[str]] = {}
    ev: dict[str, list[CodingEvidence]] = {}
    for fname, bucket in ((f"{split}D.tsv", diag), (f"{split}P.tsv", proc)):
        with (folder / fname).open(encoding="utf-8") as fh:
            for row in csv.reader(fh, delimiter="\t"):
                if len(row) >= 2:
                    bucket.setdefault(row[0], []).append(row[1].strip().upper())
    with (folder / f"{split}X.tsv").open(encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 5:
                continue
            spans = tuple(
                (int(a), int(b)) for a, b in (p.split() for p in row[4].split(";") if len(p.split()) == 2)
            )
            kind = "diagnosis" if row[1].upper().startswith("DIAG") else "procedure"
            ev.setdefault(row[0], []).append(CodingEvidence(row[2].strip().upper(), kind, row[3], spans))
    files = sorted((folder / "text_files_en").glob("*.txt"))

    def gen() -> Iterator[CodingCase]:
        for f in files:
            cid = f.stem
            yield CodingCase(cid, f.read_text(encoding="utf-8"), tuple(dict.fromkeys(diag.get(cid, []))),
                             tuple(dict.fromkeys(proc.get(cid, []))), tuple(ev.get(cid, [])))

    return _limit(gen(), limit)


# ------------------------------------------------------------------------------------------ triage
_ARRIVAL = {1: "walked in", 2: "arrived by public ambulance (119)", 3: "arrived by private vehicle",
            4: "arrived by private ambulance", 5: "arrived by other transport", 6: "arrived by other transport",
            7: "arrived by other transport"}
_MENTAL = {1: "alert", 2: "responds to verbal stimuli", 3: "responds to pain only", 4: "unresponsive"}


def _num(x: Any) -> float | None:
    try:
        v = float(str(x).replace(",", "."))
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def ktas_note(row: dict[str, Any]) -> str:
    """A short triage note from one KTAS row (triage-time columns only)."""
    age = _num(row.get("Age"))
    sex = {1: "female", 2: "male"}.get(int(row.get("Sex") or 0), "patient")
    parts = [f"{int(age)}-year-old {sex}" if age is not None else f"Adult {sex}"]
    parts[0] += ", " + _ARRIVAL.get(int(row.get("Arrival mode") or 0), "arrived") + "."
    if int(row.get("Injury") or 1) == 2:
        parts.append("Injury-related visit.")
    cc = str(row.get("Chief_complain") or "").strip()
    parts.append(f"Chief complaint: {cc}." if cc else "Chief complaint: not recorded.")
    parts.append(f"Mental status: {_MENTAL.get(int(row.get('Mental') or 1), 'alert')}.")
    nrs = _num(row.get("NRS_pain"))
    if int(row.get("Pain") or 0) == 1:
        parts.append(f"Pain present, NRS {int(nrs)}/10." if nrs is not None else "Pain present.")
    else:
        parts.append("No pain.")
    vit = []
    sbp, dbp = _num(row.get("SBP")), _num(row.get("DBP"))
    if sbp is not None and dbp is not None:
        vit.append(f"BP {int(sbp)}/{int(dbp)}")
    for col, label, fmt in (("HR", "HR", "{:.0f}"), ("RR", "RR", "{:.0f}"), ("BT", "BT", "{:.1f} C"),
                            ("Saturation", "SpO2", "{:.0f}%")):
        x = _num(row.get(col))
        if x is not None:
            vit.append(f"{label} " + fmt.format(x))
    if vit:
        parts.append("Vitals: " + ", ".join(vit) + ".")
    return " ".join(parts)


def read_ktas(data_dir: str | os.PathLike[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of ``ktas/data_dev.csv`` as dicts with ``note``, ``expert`` and ``nurse`` added."""
    import pandas as pd

    path = resolve_data_dir(data_dir) / "ktas" / "data_dev.csv"
    df = pd.read_csv(path, sep=";", encoding="latin-1", dtype=str, keep_default_na=False)
    rows = []
    for i, r in enumerate(df.to_dict("records")):
        r = {k: (v if v != "" else None) for k, v in r.items()}
        r["id"] = f"ktas-{i}"
        r["note"] = ktas_note(r)
        r["expert"] = int(r["KTAS_expert"])
        r["nurse"] = int(r["KTAS_RN"])
        rows.append(r)
    return rows[:limit] if limit else rows


def read_ktas_visits(data_dir: str | os.PathLike[str] | None = None,
                     limit: int | None = None) -> list[TriageVisit]:
    """KTAS visits with the triage-time note the triage eval uses (:func:`ktas_note`)."""
    root = dataset_path("ktas", data_dir)
    return [TriageVisit(str(r["id"]), str(r["note"]), int(r["expert"]), r.get("nurse"), dict(r))
            for r in read_ktas(root.parent, limit=limit)]


# ------------------------------------------------------------------------------------------ summaries
def read_mts_dialog(data_dir: str | os.PathLike[str] | None = None, split: str = "valid",
                    limit: int | None = None) -> list[SummaryPair]:
    """MTS-Dialog: dialogue → note section (``section`` is the header: GENHX, ROS, PASTMEDICALHX…)."""
    root = dataset_path("mts-dialog", data_dir)
    fname = _pick("mts-dialog", split, {
        "train": "MTS-Dialog-TrainingSet.csv", "valid": "MTS-Dialog-ValidationSet.csv",
        "dev": "MTS-Dialog-ValidationSet.csv", "test1": "MTS-Dialog-TestSet-1-MEDIQA-Chat-2023.csv",
        "test2": "MTS-Dialog-TestSet-2-MEDIQA-Sum-2023.csv"})

    def gen() -> Iterator[SummaryPair]:
        with (root / fname).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                yield SummaryPair(f"mts-{split}-{row.get('ID', '')}", row["dialogue"], row["section_text"],
                                  row.get("section_header"), "mts-dialog")

    return _limit(gen(), limit)


def read_aci_bench(data_dir: str | os.PathLike[str] | None = None, split: str = "valid",
                   limit: int | None = None) -> list[SummaryPair]:
    """ACI-Bench: doctor-patient dialogue → full clinical note (``train`` 67, ``valid`` 20)."""
    root = dataset_path("aci-bench", data_dir)
    fname = _pick("aci-bench", split, {"train": "train.csv", "valid": "valid.csv", "dev": "valid.csv"})

    def gen() -> Iterator[SummaryPair]:
        with (root / fname).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                yield SummaryPair(row["encounter_id"], row["dialogue"], row["note"], None, "aci-bench")

    return _limit(gen(), limit)


def clinical_texts(data_dir: str | os.PathLike[str] | None = None, split: str = "train",
                   limit: int | None = None) -> list[str]:
    """Real clinical text: ACI-Bench notes, then MTS-Dialog section texts, of ``split`` (empty ones left out).

    ``limit`` caps the texts taken from each data set; a data set that is not there is skipped.
    """
    texts: list[str] = []
    for read in (read_aci_bench, read_mts_dialog):
        try:
            pairs = read(data_dir, split)
        except (ConfigurationError, FileNotFoundError):
            continue
        texts += [p.reference for p in pairs if p.reference][:limit]
    return texts


def read_meqsum(data_dir: str | os.PathLike[str] | None = None, limit: int | None = None) -> list[SummaryPair]:
    """MeQSum: consumer health question → expert one-line summary (1,000 pairs; needs openpyxl)."""
    root = dataset_path("meqsum", data_dir)
    try:
        import openpyxl
    except ImportError as exc:  # pragma: no cover - openpyxl is in the eval extra
        from medslm.errors import MissingExtraError

        raise MissingExtraError(package="openpyxl", extra="eval", feature="reading MeQSum") from exc
    path = next(iter(sorted(root.glob("*.xlsx"))))
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = wb.active.iter_rows(values_only=True)  # type: ignore[union-attr]
        header = [str(h).strip() if h is not None else "" for h in next(rows)]
        i_file, i_q, i_s = header.index("File"), header.index("CHQ"), header.index("Summary")

        def gen() -> Iterator[SummaryPair]:
            for r in rows:
                if r[i_q] is None or r[i_s] is None:
                    continue
                yield SummaryPair(str(r[i_file]), str(r[i_q]), str(r[i_s]), None, "meqsum")

        return _limit(gen(), limit)
    finally:
        wb.close()


# ------------------------------------------------------------------------------------------ safety, QA
def read_medsafetybench(data_dir: str | os.PathLike[str] | None = None, source: str = "gpt4",
                        limit: int | None = None) -> list[SafetyPrompt]:
    """MedSafetyBench train split: harmful medical requests (categories 1-9) with safe responses.

    ``source`` is ``gpt4``, ``llama2`` or ``all``. With ``limit`` the rows are taken round-robin over
    the nine categories so that a small subset still covers all of them.
    """
    root = dataset_path("medsafetybench", data_dir) / "train"
    sources = ["gpt4", "llama2"] if source == "all" else [_pick("medsafetybench", source,
                                                                {"gpt4": "gpt4", "llama2": "llama2"})]
    per_cat: list[list[SafetyPrompt]] = []
    for src in sources:
        for f in sorted((root / src).glob("category_*.csv"), key=lambda p: int(p.stem.split("_")[1])):
            cat = f.stem
            with f.open(encoding="utf-8", newline="") as fh:
                per_cat.append([
                    SafetyPrompt(f"{src}-{cat}-{row.get('') or i}", row["harmful_medical_request"], True, cat,
                                 row.get("safe_response", ""))
                    for i, row in enumerate(csv.DictReader(fh))
                ])
    out: list[SafetyPrompt] = []
    depth = max((len(c) for c in per_cat), default=0)
    for i in range(depth):  # round-robin over categories
        for c in per_cat:
            if i < len(c):
                out.append(c[i])
    return out[:limit] if limit is not None else out


def read_pubmedqa(data_dir: str | os.PathLike[str] | None = None, split: str = "all",
                  limit: int | None = None) -> list[QAItem]:
    """PubMedQA expert-labelled (PQA-L, 1,000): ``split="test"`` keeps the 500 ids of the test ground truth."""
    root = dataset_path("pubmedqa", data_dir)
    data: dict[str, dict[str, Any]] = json.loads((root / "ori_pqal.json").read_text(encoding="utf-8"))
    keep: set[str] | None = None
    if split == "test":
        keep = set(json.loads((root / "test_ground_truth.json").read_text(encoding="utf-8")))
    elif split != "all":
        raise UnknownNameError("PubMedQA split", split, ["all", "test"])
    items = (QAItem(pid, d["QUESTION"], tuple(d.get("CONTEXTS", ())), d["final_decision"], d.get("LONG_ANSWER", ""))
             for pid, d in data.items() if keep is None or pid in keep)
    return _limit(iter(items), limit)
