"""``medslm distill AGENT``: retrain an agent's component on its train split plus what was escalated.

Examples::

    medslm distill triage --notes notes.jsonl --queue ~/.cache/medslm/review_queue.sqlite --out my_artifacts/
    medslm distill triage --notes notes.jsonl --teacher ~/.cache/medslm/teacher_labels.sqlite --out my_artifacts/

Then run with ``--artifacts my_artifacts/`` (refit the agent's calibration too:
``medslm train calibration-triage --data ../shared/data --out my_artifacts/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def distill_command(
    agent: Annotated[str, typer.Argument(help="the agent to distill into (triage)")],
    notes: Annotated[Path, typer.Option("--notes", help="the job's notes file (texts are matched by hash)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write the new component into")],
    data: Annotated[Path | None, typer.Option("--data", help="public data folder (default: $MEDSLM_DATA_DIR)")] = None,
    teacher: Annotated[Path | None, typer.Option("--teacher", help="teacher store (LLM answers to escalations)")] = None,
    queue: Annotated[Path | None, typer.Option("--queue", help="review queue (reviewers' decisions)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Retrain AGENT's component on its train split plus teacher labels and reviewer decisions.

    Example: medslm distill triage --notes notes.jsonl --queue review_queue.sqlite --out my_artifacts/
    """
    import os

    from medslm.errors import MedslmError
    from medslm.training.distill import distill

    data_dir = data or Path(os.environ.get("MEDSLM_DATA_DIR") or "../shared/data")
    try:
        rep = distill(agent, data_dir=data_dir, out_dir=out, notes=notes, teacher=teacher, queue=queue, seed=seed)
    except MedslmError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{rep.component}: refitted with {rep.teacher_examples} teacher labels and {rep.reviewer_examples} "
               f"reviewer decisions -> {out / rep.component} (manifest {rep.manifest.fingerprint})")
    typer.echo(f"run with --artifacts {out}; refit the calibration: medslm train calibration-{agent} --out {out}")


__all__ = ["distill_command"]
