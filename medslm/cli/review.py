"""``medslm review``: chart review of one file of notes (or the bundled samples), resumable.

Examples::

    medslm review --samples                                  # the 18 sample notes, tables + JSONL
    medslm review notes.jsonl -o reviews.jsonl               # a batch job; rerun to resume
    medslm review notes.csv -o out.parquet --text-col body --id-col note_id
    medslm review notes.jsonl -o out.jsonl --graph mypkg.graphs:build --engine ray
    medslm review notes.jsonl --to omop-note-nlp -o notes.duckdb    # reviews also in notes.duckdb.reviews.jsonl
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medslm import registry
from medslm.records import ChartReview


def review(
    input: Annotated[Path | None, typer.Argument(help="notes file: .jsonl, .csv or .parquet", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="reviews file (.jsonl, .csv, .parquet)")] = None,
    samples: Annotated[bool, typer.Option("--samples", help="review the bundled synthetic sample notes")] = False,
    format: Annotated[str | None, typer.Option("--format", help="input format: jsonl, csv, parquet (default: by suffix)")] = None,
    id_col: Annotated[str, typer.Option("--id-col", help="column / key holding the note id")] = "id",
    text_col: Annotated[str, typer.Option("--text-col", help="column / key holding the note text")] = "text",
    engine: Annotated[str, typer.Option("--engine", help="local or ray (Ray Data; extra 'ray')")] = "local",
    graph: Annotated[str | None, typer.Option("--graph", help="graph builder 'module:function' (default: chart review)")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="results store (SQLite; default: <output>.store.sqlite)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="review only the first N records")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="notes in flight (threads): local models batch their calls, remote ones overlap")] = 1,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="AGENT=VALUE: confidence under which that agent's result escalates or goes to review "
        "(repeatable; default 0.5; also MEDSLM_THRESHOLDS=icd=0.3,triage=0.4)")] = None,
    artifacts: Annotated[Path | None, typer.Option(
        "--artifacts", help="folder of retrained artifacts (medslm train --out); default: $MEDSLM_ARTIFACTS, "
        "else the ones shipped with medslm")] = None,
    show: Annotated[bool | None, typer.Option("--show/--no-show", help="print a table per note (default: up to 25 notes)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    to: Annotated[str | None, typer.Option("--to", help="export the reviews to -o as: omop-note-nlp (.duckdb/.sqlite), "
                                           "fhir (.ndjson or folder/), tables (folder/); the reviews go to <-o>.reviews.jsonl")] = None,
) -> None:
    """Chart review of a notes file: entities, ICD-10-CM codes, triage, summary, safety, per note.

    Example: medslm review notes.jsonl -o reviews.jsonl   (or: medslm review --samples)
    """
    from rich.console import Console
    from rich.text import Text

    from medslm.display import terminal_safe
    from medslm.errors import MedslmError
    from medslm.graphs.runner import review_batch
    from medslm.settings import Settings, parse_thresholds

    console = Console()
    if samples == (input is not None):
        raise typer.BadParameter("give an INPUT file or --samples (one of them)")
    export_to = None
    if to is not None:  # the export goes to -o; the reviews beside it (the store and audit follow them)
        from medslm.cli.export import check_target
        from medslm.export import TARGETS

        check_target(to)
        if output is None and not samples:
            raise typer.BadParameter("--to needs -o (where to write the export)")
        export_to = output or Path("samples" + TARGETS[to])
        output = Path(str(export_to) + ".reviews.jsonl")
    if samples:
        from medslm.samples import load_samples

        inputs: Any = load_samples(limit)
        output = output or Path("samples.reviews.jsonl")
    else:
        inputs = input
    try:
        settings = Settings.from_env(**({"artifacts": artifacts} if artifacts is not None else {}))
        if threshold:
            settings = settings.model_copy(update={"thresholds": {**settings.thresholds,
                                                                  **parse_thresholds(threshold)}})
    except MedslmError as exc:
        console.print(Text("error: ", style="red") + Text(terminal_safe(str(exc))))
        raise typer.Exit(2) from None
    try:
        report = review_batch(
            inputs, output, graph=graph, settings=settings, store=store, format=format, id_col=id_col,
            text_col=text_col, engine=engine, limit=None if samples else limit, progress=False if quiet else None,
            concurrency=concurrency,
        )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished notes are in the store; rerun the same command to resume")
        raise typer.Exit(130) from None
    except MedslmError as exc:
        console.print(Text("error: ", style="red") + Text(terminal_safe(str(exc))))
        raise typer.Exit(2) from None
    if show or (show is None and len(report.reviews) <= 25):
        for r in report.reviews:
            print_review(r, console)
    console.print(report.summary(), soft_wrap=True, markup=False)  # one line: greppable, paths unbroken
    if report.output is not None:
        console.print(f"reviews: {report.output}" + (f"   audit: {report.audit}" if report.audit else ""),
                      soft_wrap=True, markup=False)
    if export_to is not None and to is not None:
        from medslm.cli.export import describe
        from medslm.export import export_reviews

        try:
            console.print(describe(export_reviews(report.reviews, export_to, to), export_to), soft_wrap=True, markup=False)
        except MedslmError as exc:
            console.print(f"error: {exc}", style="red", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None


def print_review(r: ChartReview, console: Any) -> None:
    """``medslm.display.review_text`` when the display module is there, else a rich table."""
    try:
        from medslm.display import review_text, terminal_safe
    except ImportError:
        console.print(review_table(r))
        return
    # note text in a review is data: no rich markup ("[/]" in a note), no control sequences
    console.print(terminal_safe(review_text(r)), markup=False, highlight=False, emoji=False)


def review_table(r: ChartReview) -> Any:
    """One rich table for one review: each agent's output with confidence and provenance."""
    from rich.markup import escape as _escape
    from rich.table import Table

    from medslm.display import terminal_safe

    def escape(x: str) -> str:
        return _escape(terminal_safe(x))

    colour = {"ok": "green", "needs_review": "yellow", "blocked": "red", "failed": "red"}[r.status.value]
    t = Table(title=f"{escape(r.note_id)}  [{colour}]{r.status.value}[/]" + (f"  ({escape(r.reason)})" if r.reason else ""),
              title_justify="left", show_lines=True, expand=False)
    t.add_column("part", style="bold")
    t.add_column("result", overflow="fold", max_width=90)
    t.add_column("conf", justify="right")
    t.add_column("provenance / route", overflow="fold", max_width=40)

    def prov(res: Any) -> str:
        p = res.provenance
        bits = [p.model_id or p.backend or "rules", f"{p.latency_ms:.0f} ms"]
        if p.escalated:
            bits.append(f"escalated: {p.escalation_reason}")
        if res.route is not None:
            bits.append(f"route={res.route.value}")
        return ", ".join(bits)

    for name, result in r.results.items():
        spec = registry.find(name)
        cell = spec.renderer("cell") if spec is not None else None
        value = cell(result) if cell is not None else _generic_cell(result)
        t.add_row(escape(spec.label if spec is not None else name), escape(value or "-"), f"{result.confidence:.2f}",
                  escape(prov(result)))
    for name, v in (("safety in", r.safety_in), ("safety out", r.safety_out)):
        if v is not None:
            cats = ", ".join(sorted({f"{f.category}/{f.severity.value}" for f in v.findings})) or "no findings"
            t.add_row(name, f"{'allowed' if v.allowed else 'BLOCKED'}: {cats}; PHI spans {len(v.phi)}; fenced {len(v.fenced)}",
                      "", "guardian")
    if r.issues:
        t.add_row("verify", escape("\n".join(r.issues[:8]) + (f"\n(+{len(r.issues) - 8})" if len(r.issues) > 8 else "")), "", "")
    if r.review_items:
        t.add_row("review items", escape(", ".join(r.review_items)), "", "queue")
    return t


# The built-in agents' cells in the table (their registry specs name these).
def entities_cell(result: Any) -> str:
    ents = result.output
    shown = "; ".join(f"{e.text} [{e.type.value}{'' if e.assertion.value == 'present' else ', ' + e.assertion.value}]"
                      for e in ents[:12])
    return shown + (f" (+{len(ents) - 12})" if len(ents) > 12 else "")


def codes_cell(result: Any) -> str:
    return "; ".join(f"{c.code} {c.description} ({c.confidence:.2f})" for c in result.output)


def triage_cell(result: Any) -> str:
    flags = ", ".join(f.name for f in result.output.red_flags)
    return f"level {result.output.level} ({result.output.scale})" + (f"; red flags: {flags}" if flags else "")


def summary_cell(result: Any) -> str:
    return str(result.output.text)


def _generic_cell(result: Any) -> str:
    import json

    out = result.output
    data = [o.model_dump(mode="json") if hasattr(o, "model_dump") else o for o in out] if isinstance(
        out, list | tuple) else (out.model_dump(mode="json") if hasattr(out, "model_dump") else out)
    raw = json.dumps(data, default=str)
    return raw if len(raw) <= 300 else raw[:297] + "..."


__all__ = ["codes_cell", "entities_cell", "review", "review_table", "summary_cell", "triage_cell"]
