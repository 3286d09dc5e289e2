"""Human review through LangGraph ``interrupt``, and resuming a note's graph when its item is resolved.

Inside a graph node (the graph is compiled with a checkpointer and invoked with a ``thread_id``)::

    decision = request_review(queue, note.id, "icd", result, "low_confidence: 0.41 < 0.60")
    # first run: the item is queued and the graph pauses here (the batch moves on to the next note);
    # on resume: `decision` is ReviewItem.resume_value(): {"decision": "correct", "correction": ...}

and later, when a reviewer resolved the item (``medslm review-queue resolve`` or the Python API)::

    resume_item(graph, queue, item_id)      # or resume_resolved(graph, queue) for every resolved item

Pausing never blocks: ``graph.invoke`` returns at once with the pending interrupt in ``__interrupt__``.
"""

from __future__ import annotations

from typing import Any

from medslm.errors import ConfigurationError
from medslm.records import AgentResult
from medslm.routers.review_queue import ItemStatus, ReviewQueue

INTERRUPT_KIND = "medslm.review"


def request_review(
    queue: ReviewQueue,
    note_id: str,
    agent: str,
    result: AgentResult[Any] | dict[str, Any] | None,
    reason: str,
    *,
    thread_id: str | None = None,
    job_key: str | None = None,
    note_sha256: str | None = None,
) -> dict[str, Any]:
    """Queue a review item and pause the graph with LangGraph ``interrupt``; return the decision on resume.

    Call it from inside a node. Adding is idempotent, so the node re-running on resume does not add the
    item twice. Without a LangGraph run context, pass ``thread_id`` yourself.
    """
    from langgraph.types import interrupt

    if thread_id is None:
        try:
            from langgraph.config import get_config

            thread_id = (get_config().get("configurable") or {}).get("thread_id")
        except RuntimeError:
            thread_id = None
    item_id = queue.add(note_id, agent, result, reason, thread_id=thread_id, job_key=job_key,
                        note_sha256=note_sha256)
    value = interrupt({"kind": INTERRUPT_KIND, "review_item": item_id, "note_id": note_id, "agent": agent,
                       "reason": reason})
    return dict(value) if isinstance(value, dict) else {"decision": value}


def pending_interrupts(graph: Any, thread_id: str) -> list[Any]:
    """The interrupts a thread is paused on (``langgraph.types.Interrupt`` objects)."""
    snap = graph.get_state({"configurable": {"thread_id": thread_id}})
    found = list(getattr(snap, "interrupts", ()) or ())
    for task in getattr(snap, "tasks", ()) or ():
        for intr in getattr(task, "interrupts", ()) or ():
            if all(getattr(intr, "id", None) != getattr(f, "id", None) for f in found):
                found.append(intr)
    return found


def resume_item(graph: Any, queue: ReviewQueue, item_id: str, **invoke_kwargs: Any) -> Any:
    """Resume the paused graph of a resolved item with the reviewer's decision; return the graph's output.

    The graph must have been compiled with a durable checkpointer (e.g. ``SqliteSaver``) so the thread
    survives the process that paused it.
    """
    from langgraph.types import Command

    item = queue.show(item_id)
    if item.status is not ItemStatus.RESOLVED:
        raise ConfigurationError(
            f"review item {item_id} is {item.status.value}; resolve it first (accept, correct or reject)"
        )
    if not item.thread_id:
        raise ConfigurationError(
            f"review item {item_id} has no graph thread (it was not raised through interrupt); nothing to resume"
        )
    config = {"configurable": {"thread_id": item.thread_id}}
    intrs = pending_interrupts(graph, item.thread_id)
    mine = [i for i in intrs if isinstance(i.value, dict)
            and item_id in (i.value.get("review_item"), i.value.get("item_id"))]
    if not mine:
        if item.resumed_at is not None:
            return graph.get_state(config).values  # already resumed: nothing to do, nothing twice
        raise ConfigurationError(
            f"thread {item.thread_id} is not paused on review item {item_id}; was it resumed elsewhere?"
        )
    out = graph.invoke(Command(resume={mine[0].id: item.resume_value()}), config, **invoke_kwargs)
    queue.mark_resumed(item_id)
    return out


def resume_resolved(graph: Any, queue: ReviewQueue) -> list[str]:
    """Resume every resolved, not-yet-resumed item; return the ids resumed."""
    done = []
    for item in queue.pending_resumes():
        resume_item(graph, queue, item.id)
        done.append(item.id)
    return done


__all__ = ["INTERRUPT_KIND", "pending_interrupts", "request_review", "resume_item", "resume_resolved"]
