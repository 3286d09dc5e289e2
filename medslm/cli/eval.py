"""``medslm eval``: quality next to cost on the public datasets, several systems side by side."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["eval_command"]


def eval_command(
    task: Annotated[list[str], typer.Option("--task", "-t", help="all, an agent's task (ner, icd, triage, "
                                            "summarize, medication, a plug-in's) or safety (repeatable).")] = ["all"],  # noqa: B006
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Folder of the public data sets "
                                              "(default: $MEDSLM_DATA_DIR or ../shared/data).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Items per task for the task "
                                              "evaluations (a subset for CI).")] = 20,
    probe: Annotated[int | None, typer.Option("--probe", help="Items per system in the side-by-side probe "
                                              "(default: min(limit, 10); 0 turns it off).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where report.md, results.json and the PNGs go.")]
    = Path("reports"),
    system: Annotated[list[str] | None, typer.Option("--system", "-s", help="rules, slm, llm, cascade "
                                                     "(repeat; default all).")] = None,
    task_eval: Annotated[bool, typer.Option("--task-eval/--no-task-eval", help="Also run each task's own "
                                            "evaluation function (its baselines table).")] = True,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the CIs.")] = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Run the evaluation tasks and write a Markdown report, PNG plots and a JSON of every number.

    Example: medslm eval --task all --data ../shared/data --limit 10 --out reports/
    """
    from medslm.evals.harness import SYSTEMS, run_eval
    from medslm.evals.report import headline_table, write_report

    if not quiet:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("medslm.evals").setLevel(logging.INFO)
    result = run_eval(task, data, limit=limit, probe=probe, systems=tuple(system or SYSTEMS),
                      task_eval=task_eval, n_boot=bootstrap)
    files = write_report(result, out)
    typer.echo(headline_table(result))
    typer.echo(f"\nreport: {files['markdown']}\njson:   {files['json']}")
    for key, path in files.items():
        if key not in ("markdown", "json"):
            typer.echo(f"plot:   {path}")
