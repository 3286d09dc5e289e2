"""Small real sources for fast tests: a handful of ICD-10-CM codes instead of a 20-second full build."""

from __future__ import annotations

from collections.abc import Sequence

from medslm.knowledge.builder import GraphBuilder


class IcdSubset:
    """Some ICD-10-CM 2026 codes (labels and billable flags from ``simple-icd-10-cm``), owning the system
    like the embedded source does, so cross-walks to other codes are dropped."""

    def __init__(self, codes: Sequence[str] = ("I21.9", "E11.9", "I25.9", "I10")) -> None:
        self.codes = tuple(codes)
        self.name = "icd10cm-subset"

    def version(self) -> str:
        return ",".join(self.codes)

    def load(self, builder: GraphBuilder) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import simple_icd_10_cm as icd

        for code in self.codes:
            builder.add_concept("ICD10CM", code, icd.get_description(code), kind="subcategory",
                                billable=icd.is_leaf(code))
        builder.closed.add("ICD10CM")


#: the default subset (I21.9, E11.9, I25.9, I10)
FewIcdCodes = IcdSubset

__all__ = ["FewIcdCodes", "IcdSubset"]
