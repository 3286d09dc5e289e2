"""The vLLM server killed in the middle of a real batch run (``review_batch`` over a LangGraph pipeline
guard_in → triage → route → escalate → review): the notes after the kill go to the review queue, the
batch finishes, every note is in the output, nothing is lost."""

from __future__ import annotations

import json

import pytest

from medslm.records import ReviewStatus, Route
from medslm.routers import Budget, EscalationPolicy, Escalator, ReviewQueue

pytestmark = pytest.mark.server


def _routed(route: Route):
    def check(state) -> bool:
        return any(r == route for r in (state.get("routes") or {}).values())

    return check


def test_llm_server_killed_mid_batch(vllm_server, data_dir, tmp_path):
    from medslm.evals.triage import read_ktas
    from medslm.graphs.context import ReviewContext
    from medslm.graphs.pipeline import Pipeline
    from medslm.graphs.runner import review_batch
    from medslm.models.openai_compat import OpenAICompatibleModel
    from medslm.settings import Settings

    settings = Settings(escalation_model=vllm_server.spec, cache_dir=tmp_path / "cache")
    graph = (
        Pipeline(name="triage_escalation", settings=settings)
        .add("guard_in")
        .add("triage", use_slm=False)  # rules + fitted acuity model as the first opinion (fast)
        .add("route")
        .add("escalate", when=_routed(Route.ESCALATE))
        .add("review", when=_routed(Route.REVIEW))
        .compile()
    )
    lm = OpenAICompatibleModel(vllm_server.base_url, "smollm2", server="vllm", retries=2, backoff=0.05, timeout=20)
    policy = EscalationPolicy({"triage": 0.999}, Budget(max_escalations=100))  # every result escalates
    queue = ReviewQueue(tmp_path / "queue.sqlite")
    teacher = tmp_path / "teacher.sqlite"
    ctx = ReviewContext(settings=settings, policy=policy, queue=queue,
                        escalator=Escalator(model=lm, settings=settings, teacher_store=teacher))
    rows = read_ktas(data_dir, limit=12)
    done: list[str] = []

    def on_review(review) -> None:
        done.append(review.note_id)
        if len(done) == 6:
            vllm_server.kill()  # SIGKILL to the server process group, between two notes

    out = tmp_path / "out.jsonl"
    report = review_batch([{"id": r["id"], "text": r["note"]} for r in rows], out,
                          graph=graph, context=ctx, on_review=on_review, progress=False, audit=False)
    assert not vllm_server.alive()

    # the batch finished: every note once, in the report and in the output file
    ids = [r["id"] for r in rows]
    assert [r.note_id for r in report.reviews] == ids and done == ids
    written = [json.loads(x)["note_id"] for x in out.read_text().splitlines()]
    assert sorted(written) == sorted(ids)

    reviews = {r.note_id: r for r in report.reviews}
    first, last = ids[:6], ids[6:]
    for nid in first:  # answered by the LLM before the kill
        t = reviews[nid].triage
        assert t is not None and t.provenance.escalated is True and 1 <= t.output.level <= 5
        assert reviews[nid].review_items == ()
    items = {i.note_id: i for i in queue.list()}
    assert sorted(items) == sorted(last)  # exactly the notes after the kill wait for a person
    assert all(i.agent == "triage" and "escalation failed" in i.reason for i in items.values())
    for nid in last:
        rv = reviews[nid]
        assert rv.status is ReviewStatus.NEEDS_REVIEW
        assert rv.review_items == (items[nid].id,)
        assert rv.triage is not None and rv.triage.provenance.escalated is False  # the SLM's answer is kept
        assert items[nid].result["output"]["level"] == rv.triage.output.level

    from medslm.routers import TeacherStore

    assert sorted(lb.note_id for lb in TeacherStore(teacher).labels()) == sorted(first)  # teacher labels, once each
