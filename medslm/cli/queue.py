"""``medslm review-queue``: list, show and resolve human review items.

    medslm review-queue list                         pending items (id, note, agent, confidence, reason)
    medslm review-queue list --status resolved --json
    medslm review-queue show rv-0123456789abcdef         one item with the agent's result
    medslm review-queue resolve rv-0123456789abcdef accept
    medslm review-queue resolve rv-0123456789abcdef correct --correction '{"level": 2}' --reviewer dr.lee
    medslm review-queue resolve rv-0123456789abcdef reject --comment "no evidence in the note"

The queue is a SQLite file: ``--queue PATH``, else ``$MEDSLM_REVIEW_QUEUE``, else
``<cache_dir>/review_queue.sqlite``. Resolving records the decision; the paused graph of that note is
resumed by :func:`medslm.routers.resume_resolved` (the batch runner calls it), never by waiting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="review-queue",
    help=__doc__,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

QueueOpt = Annotated[
    Path | None, typer.Option("--queue", "-q", help="The queue's SQLite file (default: $MEDSLM_REVIEW_QUEUE).")
]


def _queue(path: Path | None) -> Any:
    from medslm.routers.review_queue import ReviewQueue, default_queue_path

    p = path or default_queue_path()
    if not p.exists():
        typer.echo(f"no review queue at {p}: nothing has been queued yet (or pass --queue PATH)", err=True)
        raise typer.Exit(1)
    return ReviewQueue(p)


@app.command("list")
def list_items(
    queue: QueueOpt = None,
    status: Annotated[str, typer.Option(help="pending, resolved or all")] = "pending",
    agent: Annotated[str | None, typer.Option(help="only this agent's items")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List review items (pending by default).

    Example: medslm review-queue list --status all --json
    """
    if status not in ("pending", "resolved", "all"):
        typer.echo(f"--status must be pending, resolved or all, not {status!r}", err=True)
        raise typer.Exit(2)
    q = _queue(queue)
    items = q.list(None if status == "all" else status, agent=agent, limit=limit)
    from medslm.display import terminal_safe

    if as_json:
        for it in items:
            typer.echo(terminal_safe(it.model_dump_json(exclude={"result"})))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"review queue ({len(items)} {status})")
    for col in ("id", "note", "agent", "confidence", "status", "reason"):
        table.add_column(col)
    for it in items:
        conf = f"{it.confidence:.2f}" if it.confidence is not None else "-"
        status_s = it.status.value + (f" ({it.decision.value})" if it.decision else "")
        table.add_row(*(escape(terminal_safe(x)) for x in (it.id, it.note_id, it.agent, conf, status_s, it.reason)))
    Console(width=160).print(table)


@app.command("show")
def show(
    item_id: Annotated[str, typer.Argument(help="the item id, e.g. rv-0123456789abcdef")],
    queue: QueueOpt = None,
) -> None:
    """Show one item with the agent's result (may hold PHI: it is the reviewer's screen).

    Example: medslm review-queue show rv-0123456789abcdef
    """
    from medslm.routers.review_queue import ReviewItemNotFound

    try:
        item = _queue(queue).show(item_id)
    except ReviewItemNotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    from medslm.display import terminal_safe

    typer.echo(terminal_safe(json.dumps(item.model_dump(mode="json"), indent=2, ensure_ascii=False)))


@app.command("resolve")
def resolve(
    item_id: Annotated[str, typer.Argument(help="the item id")],
    decision: Annotated[str, typer.Argument(help="accept, correct or reject")],
    queue: QueueOpt = None,
    correction: Annotated[
        str | None, typer.Option(help="the corrected output as JSON (needed for 'correct')")
    ] = None,
    reviewer: Annotated[str | None, typer.Option(help="who decided")] = None,
    comment: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Resolve an item: accept the result, correct it, or reject it.

    Example: medslm review-queue resolve rv-0123456789abcdef correct --correction '{"level": 2}'
    """
    from medslm.errors import ConfigurationError
    from medslm.routers.review_queue import Decision, ReviewItemNotFound

    if decision not in {d.value for d in Decision}:
        typer.echo(f"decision must be accept, correct or reject, not {decision!r}", err=True)
        raise typer.Exit(2)
    value: Any = None
    if correction is not None:
        try:
            value = json.loads(correction)
        except json.JSONDecodeError:
            value = correction  # a plain string (e.g. an ICD code)
    try:
        item = _queue(queue).resolve(item_id, decision, correction=value, reviewer=reviewer, comment=comment)
    except ReviewItemNotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{item.id} resolved: {item.decision.value if item.decision else '?'}")


__all__ = ["app"]
