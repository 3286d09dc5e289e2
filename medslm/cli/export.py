"""``medslm export``: a reviews file (JSONL, CSV or Parquet from ``medslm review``) as OMOP NOTE_NLP,
FHIR R4 or tidy tables. ``medslm review --to`` uses the same writers.

Examples::

    medslm export reviews.jsonl --to omop-note-nlp -o notes.duckdb     # or notes.sqlite
    medslm export reviews.jsonl --to fhir -o bundles.ndjson             # one Bundle per note
    medslm export reviews.jsonl --to fhir -o fhir/                      # Bulk Data: one file per type
    medslm export reviews.jsonl --to tables -o tables/                  # tidy Parquet tables
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

TARGET_HELP = ("omop-note-nlp (-o notes.duckdb | notes.sqlite), fhir (-o bundles.ndjson | folder/), "
               "tables (-o folder/ of Parquet, or tables.csv for CSV)")


def check_target(to: str) -> None:
    """Refuse an unknown target before any model loads."""
    from medslm.export import TARGETS

    if to not in TARGETS:
        from medslm.errors import UnknownNameError

        raise typer.BadParameter(str(UnknownNameError("export target", to, list(TARGETS))), param_hint="--to")


def describe(result: Any, path: Path) -> str:
    """One line on what a writer wrote."""
    if hasattr(result, "rows"):
        return f"{result.rows} NOTE_NLP rows for {result.notes} notes in {path}"
    if hasattr(result, "resources"):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.resources.items()))
        return f"FHIR R4: {result.bundles} notes ({counts}) in {path}"
    return f"{len(result)} tables in {path}"


def export_command(
    reviews: Annotated[Path, typer.Argument(help="reviews file from `medslm review` (.jsonl, .csv, .parquet)")],
    to: Annotated[str, typer.Option("--to", help=TARGET_HELP)],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write (see --to)")],
    athena: Annotated[Path | None, typer.Option(
        "--athena", help="OMOP vocabulary (Athena download folder): fills NOTE_NLP concept ids")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="FHIR patient reference for every note, e.g. Patient/123")] = None,
) -> None:
    """Export a reviews file as OMOP CDM NOTE_NLP, FHIR R4 or tidy tables.

    Example: medslm export reviews.jsonl --to omop-note-nlp -o notes.duckdb
    """
    from rich.console import Console

    from medslm.errors import MedslmError
    from medslm.export import export_reviews, read_reviews

    console = Console()
    check_target(to)
    try:
        options: dict[str, Any] = {}
        if to == "omop-note-nlp" and athena is not None:
            from medslm.export import OmopConcepts

            options["concepts"] = OmopConcepts.from_athena(athena)
        if to == "fhir" and subject:
            options["subject"] = subject
        result = export_reviews(read_reviews(reviews), output, to, **options)
    except MedslmError as exc:
        console.print(f"error: {exc}", style="red", soft_wrap=True, markup=False)  # paths unbroken
        raise typer.Exit(2) from None
    console.print(describe(result, output), soft_wrap=True, markup=False)


__all__ = ["check_target", "describe", "export_command"]
