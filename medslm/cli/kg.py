"""``medslm kg``: look up, show and build the knowledge graph.

    medslm kg lookup "heart attack"                      ranked ICD-10-CM and HPO concepts
    medslm kg lookup "SOB" -s HPO -k 3 --json
    medslm kg show I21.4                                 a concept: notes, hierarchy, cross-walks
    medslm kg build --umls ~/umls/META --snomed ~/SnomedCT_US/Snapshot   add your licensed sources

Sources given to ``build`` are cached on disk; pass the same options to ``lookup`` / ``show`` to query
that graph (a warm load).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(name="kg", help=__doc__, no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})

UmlsOpt = Annotated[Path | None, typer.Option("--umls", help="UMLS META directory (MRCONSO.RRF…)")]
UmlsSabOpt = Annotated[list[str] | None, typer.Option("--umls-source", help="UMLS SAB to keep (repeatable)")]
SnomedOpt = Annotated[Path | None, typer.Option("--snomed", help="SNOMED CT RF2 release or Snapshot folder")]
OboOpt = Annotated[list[Path] | None, typer.Option("--obo", help="an OBO file: DOID, MONDO, HPO… (repeatable)")]
SssomOpt = Annotated[list[Path] | None, typer.Option("--sssom", help="an SSSOM TSV file or folder (repeatable)")]
DoidOpt = Annotated[Path | None, typer.Option("--doid", help="Disease Ontology TSV reports folder")]
RdfOpt = Annotated[list[Path] | None, typer.Option("--rdf", help="an RDF/OWL/SKOS file (repeatable)")]
CacheOpt = Annotated[Path | None, typer.Option("--cache-dir", help="cache folder (default: settings)")]
NoEmbeddedOpt = Annotated[bool, typer.Option("--no-embedded", help="only the sources given (no ICD-10-CM/HPO/CCSR)")]


def _graph(umls: Path | None = None, umls_source: list[str] | None = None, snomed: Path | None = None,
           obo: list[Path] | None = None, sssom: list[Path] | None = None, doid: Path | None = None,
           rdf: list[Path] | None = None, cache_dir: Path | None = None, no_embedded: bool = False) -> Any:
    from medslm.knowledge import KnowledgeGraph, embedded_sources

    sources: list[Any] = [] if no_embedded else embedded_sources()
    if umls is not None:
        from medslm.knowledge.umls import UmlsRrfSource

        sources.append(UmlsRrfSource(umls, sources=umls_source) if umls_source else UmlsRrfSource(umls))
    if snomed is not None:
        from medslm.knowledge.snomed import SnomedRf2Source

        sources.append(SnomedRf2Source(snomed))
    for path in obo or ():
        from medslm.knowledge.obo import OboSource

        sources.append(OboSource(path))
    if doid is not None:
        from medslm.knowledge.doid import DoidReports

        sources.append(DoidReports(doid))
    for path in sssom or ():
        from medslm.knowledge.sssom import SssomSource

        sources.append(SssomSource(path, name=f"sssom-{path.stem}"))
    for path in rdf or ():
        from medslm.knowledge.rdf import RdfSource

        sources.append(RdfSource(path))
    if not sources:
        raise typer.BadParameter("--no-embedded needs at least one source (--umls, --snomed, --obo…)")
    if not no_embedded and len(sources) == 3 and cache_dir is None:
        return KnowledgeGraph.default()
    return KnowledgeGraph(sources, cache_dir=cache_dir)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def lookup(
    text: Annotated[str, typer.Argument(help='what to look up, e.g. "heart attack"')],
    system: Annotated[list[str] | None, typer.Option("--system", "-s", help="ICD10CM, HPO, … (repeatable)")] = None,
    k: Annotated[int, typer.Option("-k", help="how many candidates")] = 10,
    embedding: Annotated[bool, typer.Option("--embedding", help="embedding search (MiniLM) instead")] = False,
    billable: Annotated[bool, typer.Option("--billable", help="billable ICD-10-CM codes only")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
    umls: UmlsOpt = None, umls_source: UmlsSabOpt = None, snomed: SnomedOpt = None, obo: OboOpt = None,
    sssom: SssomOpt = None, doid: DoidOpt = None, rdf: RdfOpt = None, cache_dir: CacheOpt = None,
    no_embedded: NoEmbeddedOpt = False,
) -> None:
    """Ranked concepts for a text: exact, normalized, abbreviation and fuzzy matches (or --embedding)."""
    from medslm.errors import MedslmError

    kg = _graph(umls, umls_source, snomed, obo, sssom, doid, rdf, cache_dir, no_embedded)
    systems = tuple(system) if system else ("ICD10CM", "HPO")
    try:
        if embedding:
            cands = kg.search(text, k=k, systems=systems)
        else:
            cands = kg.lookup(text, systems=systems, k=k, billable_only=billable)
    except MedslmError as exc:
        _fail(exc)
    for c in cands:
        if as_json:
            typer.echo(json.dumps({"id": c.id, "label": c.concept.label, "score": c.score, "method": c.method,
                                   "matched": c.matched, "billable": c.concept.billable}))
        else:
            flag = "" if c.concept.billable is None else (" [billable]" if c.concept.billable else "")
            typer.echo(f"{c.score:.3f}  {c.id:<22} {c.concept.label}{flag}  ({c.method})")
    if not cands:
        typer.echo("no match", err=True)


@app.command()
def show(
    code: Annotated[str, typer.Argument(help="I21.4, ICD10CM:I21.4, HP:0002094, DOID:9352 …")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON")] = False,
    umls: UmlsOpt = None, umls_source: UmlsSabOpt = None, snomed: SnomedOpt = None, obo: OboOpt = None,
    sssom: SssomOpt = None, doid: DoidOpt = None, rdf: RdfOpt = None, cache_dir: CacheOpt = None,
    no_embedded: NoEmbeddedOpt = False,
) -> None:
    """One concept: label, synonyms, billable, ICD notes, parents, children and cross-walks."""
    from dataclasses import asdict

    from medslm.errors import MedslmError
    from medslm.knowledge import Relation

    kg = _graph(umls, umls_source, snomed, obo, sssom, doid, rdf, cache_dir, no_embedded)
    try:
        c = kg.validate(code) if ":" not in code else (kg.get(code) or kg.validate(code))
    except MedslmError as exc:
        _fail(exc)
    info: dict[str, Any] = asdict(c)
    info["parents"] = [p.id for p in kg.parents(c.id)]
    info["children"] = [x.id for x in kg.children(c.id)]
    info["categories"] = [x.id for x in kg.related(c.id, Relation.IN_CATEGORY)]
    if c.system == "ICD10CM":
        info["excludes1_codes"] = kg.excludes1(c.id)  # its own notes and its ancestors'
    info["crosswalks"] = sorted(x.id for x in kg.related(c.id, Relation.MAPS_TO))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{c.id}  {c.label}")
    for key, value in info.items():
        if key in ("id", "label") or value in ((), [], "", None):
            continue
        if isinstance(value, (list, tuple)):
            shown = list(value)[:12]
            more = f" … (+{len(value) - 12})" if len(value) > 12 else ""
            typer.echo(f"  {key}: " + "; ".join(str(v) for v in shown) + more)
        else:
            typer.echo(f"  {key}: {value}")


@app.command()
def build(
    umls: UmlsOpt = None, umls_source: UmlsSabOpt = None, snomed: SnomedOpt = None, obo: OboOpt = None,
    sssom: SssomOpt = None, doid: DoidOpt = None, rdf: RdfOpt = None, cache_dir: CacheOpt = None,
    no_embedded: NoEmbeddedOpt = False,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if cached")] = False,
) -> None:
    """Build the graph (embedded ICD-10-CM + HPO + CCSR, plus the sources given) into the disk cache."""
    from medslm.errors import MedslmError

    kg = _graph(umls, umls_source, snomed, obo, sssom, doid, rdf, cache_dir, no_embedded)
    if force:
        kg.cache_path.unlink(missing_ok=True)
    t = time.perf_counter()
    try:
        kg.load()
    except MedslmError as exc:
        _fail(exc)
    counts = {s: kg.count(s) for s in kg.systems}
    typer.echo(f"{'built' if kg.built else 'loaded from cache'} in {time.perf_counter() - t:.1f} s: "
               f"{len(kg):,} concepts, {kg.graph.number_of_edges():,} edges")
    typer.echo("  " + ", ".join(f"{s} {n:,}" for s, n in counts.items()))
    typer.echo(f"  cache: {kg.cache_path}")


__all__ = ["app"]
