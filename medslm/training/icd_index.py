"""Recipe ``icd-index``: the ICD-10-CM Alphabetic Index to Diseases and Injuries as a compact artifact.

Reads ``icd10cm-index/ICD10CM_2025_Index.csv`` (CDC/NCHS, US public domain; one row per index term with its
indentation level), rebuilds each term's path from the main term down ("Sprain" > "ankle"), resolves
"see" cross-references to the coded path they name, and keeps every path that ends in a code that exists
in the ICD-10-CM **2026** tabular list the knowledge graph embeds (the index is the FY2025 edition: a code
retired since would be dropped and counted). A code written with a trailing ``-`` ("S93.40-") is kept as a
*category pointer*: the ICD agent completes it from the note (laterality, 7th character, specificity).

Writes ``index.json`` (``{"format", "edition", "tabular", "entries": [[terms], code, pointer, see]}``),
read at run time by :class:`medslm.knowledge.icd_index.AlphabeticIndex`. Nothing is fitted or tuned: the
figures say how much of CodiEsp dev's gold codes the index names (dev is only reported on).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

INDEX_FILE = "icd10cm-index/ICD10CM_2025_Index.csv"
LICENCE = "US public domain (ICD-10-CM FY2025 Alphabetic Index, CDC/NCHS)"
_CODE = re.compile(r"^[A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?(?:\.?-)?$")


def parse_index(path: Path) -> tuple[list[list[Any]], dict[str, int]]:
    """``(entries, counts)`` from the index CSV: entries ``[terms, code, pointer, see]`` (code dotted, no "-")."""
    import warnings

    with warnings.catch_warnings():  # the package reads its data with a deprecated importlib call
        warnings.simplefilter("ignore")
        import simple_icd_10_cm as icd

    coded: list[list[Any]] = []
    refs: list[tuple[list[str], str]] = []
    stack: list[str] = []
    counts = {"rows": 0, "coded_rows": 0, "not_in_tabular": 0, "malformed": 0, "see_rows": 0, "see_resolved": 0}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            counts["rows"] += 1
            level = int(row["Level"])
            term = row["Term"].strip()
            stack = [*stack[:level], term]
            code = row["Code"].strip()
            if code:
                counts["coded_rows"] += 1
                if not _CODE.match(code):
                    counts["malformed"] += 1
                    continue
                bare = code.rstrip("-").rstrip(".")
                if not icd.is_valid_item(bare):
                    counts["not_in_tabular"] += 1
                    continue
                coded.append([list(stack), bare, int(code.endswith("-")), 0])
            elif row["See"].strip():
                counts["see_rows"] += 1
                refs.append((list(stack), row["See"].strip()))
    by_path: dict[str, list[Any]] = {}
    for e in coded:
        by_path.setdefault(", ".join(e[0]).lower(), e)
    out = list(coded)
    for terms, target in refs:
        key = re.sub(r"\s*\([^)]*\)", "", target).strip().lower()
        hit = by_path.get(key) or by_path.get(re.sub(r"\s+NEC$", "", key, flags=re.IGNORECASE))
        if hit is not None:
            out.append([terms, hit[1], hit[2], 1])
            counts["see_resolved"] += 1
    counts["entries"] = len(out)
    counts["pointers"] = sum(e[2] for e in out)
    return out, counts


@recipe("icd-index", agent="icd", description="ICD-10-CM Alphabetic Index paths -> codes (checked against the "
        "2026 tabular), a concept source of the knowledge graph", data=("icd10cm-index",))
def build_icd_index(ctx: TrainContext) -> TrainResult:
    from importlib import metadata

    from medslm.knowledge.icd_index import FORMAT
    from medslm.training.icd_data import read_split

    src = ctx.data_file(INDEX_FILE, split="all", use="fit", licence=LICENCE)
    entries, counts = parse_index(src)
    # a quick run converts the whole index too (seconds): the same file, so the same knowledge-graph cache
    doc = {"format": FORMAT, "edition": "ICD-10-CM FY2025 Alphabetic Index to Diseases and Injuries",
           "tabular": f"simple-icd-10-cm=={metadata.version('simple-icd-10-cm')} (ICD-10-CM April 2026)",
           "entries": entries}
    (ctx.out / "index.json").write_text(json.dumps(doc, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    # how much of the coding target the index reaches (CodiEsp dev: reported, never fitted on)
    dev = read_split(ctx, "dev", "report")
    named = {e[1] for e in entries}
    pointers = {e[1] for e in entries if e[2]}
    gold = [c for d in dev for c in d.codes]
    exact = sum(c in named for c in gold)
    via_pointer = sum(c not in named and any(c.startswith(p) for p in _prefixes(c, pointers)) for c in gold)
    return TrainResult(
        hyperparameters={**counts, "quick": ctx.quick},
        tuning="none: a deterministic conversion of the index (nothing fitted or tuned)",
        figures={"codiesp_dev_gold_named_by_index": exact / max(1, len(gold)),
                 "codiesp_dev_gold_under_index_pointer": via_pointer / max(1, len(gold))},
    )


def _prefixes(code: str, pointers: set[str]) -> list[str]:
    """The category pointers that ``code`` completes ("S93.401A" -> ["S93.40", "S93.4"] if pointers)."""
    flat = code.replace(".", "")
    out = []
    for n in range(3, len(flat)):
        p = flat[:n] if n <= 3 else f"{flat[:3]}.{flat[3:n]}"
        if p in pointers:
            out.append(p)
    return out


__all__ = ["build_icd_index", "parse_index"]
