"""Human review through LangGraph ``interrupt``, and resuming a note's graph when its item is resolved.

Inside a graph node (the graph is compiled with a checkpointer and invoked with a ``thread_id``)::

    decision = request_review(queue, note.id, "icd", result, "low_confidence: 0.41 < 0.60")
    # first run: the item is queued and the graph pauses here (the batch moves on to the next note);
    # on resume: `decision` is ReviewItem.resume_value(): {"decision": "correct", "correction": ...}

and later, when a reviewer resolved the item (``medslm review-queue resolve`` or the Python API)::

    resume_item(graph, queue, item_id)      # or resume_resolved(graph, queue) for every resolved item

Pausing never blocks: ``graph.invoke`` returns at once with the pending interrupt in ``__interrupt__``.

The chart-review graph's ``review`` node queues *every* item of a note first and pauses once for all of
them (:func:`request_reviews`); its thread resumes when the last of them is resolved, with each item's
decision (:func:`resume_thread`; :func:`resume_item` and :func:`resume_resolved` handle both kinds).
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


def request_reviews(
    queue: ReviewQueue,
    note_id: str,
    items: list[tuple[str, AgentResult[Any] | dict[str, Any] | None, str]],
    *,
    thread_id: str | None = None,
    job_key: str | None = None,
    note_sha256: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Queue every ``(agent, result, reason)`` of a note, then pause once for all of them.

    Returns ``[(item_id, decision)]`` in the order of ``items`` on resume (each decision is the item's
    :meth:`ReviewItem.resume_value`). Adding is idempotent, so the node re-running on resume finds the
    same ids.
    """
    from langgraph.types import interrupt

    if thread_id is None:
        thread_id = _thread_id()
    ids = [queue.add(note_id, agent, result, reason, thread_id=thread_id, job_key=job_key, note_sha256=note_sha256)
           for agent, result, reason in items]
    value = interrupt({"kind": INTERRUPT_KIND, "review_items": ids, "note_id": note_id,
                       "agents": [a for a, _, _ in items]})
    answers = value if isinstance(value, dict) else {}
    return [(i, dict(answers.get(i) or {})) for i in ids]


def _thread_id() -> str | None:
    try:
        from langgraph.config import get_config

        return (get_config().get("configurable") or {}).get("thread_id")
    except RuntimeError:
        return None


def _items_of(intr: Any) -> list[str]:
    v = intr.value if isinstance(getattr(intr, "value", None), dict) else {}
    if isinstance(v.get("review_items"), list):
        return [str(x) for x in v["review_items"]]
    one = v.get("review_item") or v.get("item_id")
    return [str(one)] if one else []


def pending_interrupts(graph: Any, thread_id: str) -> list[Any]:
    """The interrupts a thread is paused on (``langgraph.types.Interrupt`` objects)."""
    snap = graph.get_state({"configurable": {"thread_id": thread_id}})
    found = list(getattr(snap, "interrupts", ()) or ())
    for task in getattr(snap, "tasks", ()) or ():
        for intr in getattr(task, "interrupts", ()) or ():
            if all(getattr(intr, "id", None) != getattr(f, "id", None) for f in found):
                found.append(intr)
    return found


def resume_thread(graph: Any, queue: ReviewQueue, thread_id: str, **invoke_kwargs: Any) -> Any | None:
    """Resume a paused thread whose review items are all resolved; return the graph's output.

    None when the thread waits on an item still pending (or is not paused). Marks the items resumed.
    """
    from langgraph.types import Command

    config = {"configurable": {"thread_id": thread_id}}
    answers: dict[str, Any] = {}
    resumed: list[str] = []
    for intr in pending_interrupts(graph, thread_id):
        ids = _items_of(intr)
        if not ids:
            continue
        items = [queue.show(i) for i in ids]
        if any(it.status is not ItemStatus.RESOLVED for it in items):
            return None
        v = intr.value
        if isinstance(v.get("review_items"), list):
            answers[intr.id] = {it.id: it.resume_value() for it in items}
        else:  # one item per interrupt (request_review)
            answers[intr.id] = items[0].resume_value()
        resumed.extend(ids)
    if not answers:
        return None
    out = graph.invoke(Command(resume=answers), config, **invoke_kwargs)
    for i in resumed:
        queue.mark_resumed(i)
    return out


def resume_item(graph: Any, queue: ReviewQueue, item_id: str, **invoke_kwargs: Any) -> Any:
    """Resume the paused graph of a resolved item with the reviewer's decision; return the graph's output.

    The graph must have been compiled with a durable checkpointer (e.g. ``SqliteSaver``) so the thread
    survives the process that paused it. When the item's note waits on several items (the chart review
    pauses once per note), it resumes only once every one of them is resolved.
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
    mine = [i for i in intrs if item_id in _items_of(i)]
    if not mine:
        if item.resumed_at is not None:
            return graph.get_state(config).values  # already resumed: nothing to do, nothing twice
        raise ConfigurationError(
            f"thread {item.thread_id} is not paused on review item {item_id}; was it resumed elsewhere?"
        )
    ids = _items_of(mine[0])
    if len(ids) > 1 or isinstance(mine[0].value.get("review_items"), list):
        waiting = [i for i in ids if queue.show(i).status is not ItemStatus.RESOLVED]
        if waiting:
            raise ConfigurationError(
                f"review item {item_id}'s note also waits on {', '.join(waiting)}; resolve those too, then resume"
            )
        out = resume_thread(graph, queue, item.thread_id, **invoke_kwargs)
        return out
    out = graph.invoke(Command(resume={mine[0].id: item.resume_value()}), config, **invoke_kwargs)
    queue.mark_resumed(item_id)
    return out


def resume_resolved(graph: Any, queue: ReviewQueue) -> list[str]:
    """Resume every thread whose items are all resolved and not yet resumed; return the item ids resumed."""
    done: list[str] = []
    threads = dict.fromkeys(str(item.thread_id) for item in queue.pending_resumes())
    for thread in threads:
        waiting = [i for intr in pending_interrupts(graph, thread) for i in _items_of(intr)]
        if waiting and resume_thread(graph, queue, thread) is not None:
            done.extend(waiting)
    return list(dict.fromkeys(done))


__all__ = ["INTERRUPT_KIND", "pending_interrupts", "request_review", "request_reviews", "resume_item",
           "resume_resolved", "resume_thread"]
