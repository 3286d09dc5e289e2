"""The durable review queue, its CLI, and review through LangGraph interrupt + resume (SqliteSaver)."""

from __future__ import annotations

import json
import sqlite3
from typing import TypedDict

import pytest
from typer.testing import CliRunner

from medslm.cli.queue import app
from medslm.errors import ConfigurationError
from medslm.records import AgentResult, Route, TriageResult
from medslm.routers import Decision, ItemStatus, ReviewQueue, request_review, resume_item, resume_resolved
from medslm.routers.review_queue import ReviewItemNotFound


def triage_result(level: int = 3, conf: float = 0.41) -> AgentResult[TriageResult]:
    return AgentResult[TriageResult](agent="triage", output=TriageResult(level=level), confidence=conf)


def test_add_is_durable_and_idempotent(tmp_path):
    path = tmp_path / "q.sqlite"
    q = ReviewQueue(path)
    a = q.add("n1", "triage", triage_result(), "low_confidence: 0.41 < 0.70")
    again = q.add("n1", "triage", triage_result(), "low_confidence: 0.41 < 0.70 (rerun)")
    b = q.add("n1", "icd", None, "escalation_failed: EndpointError")
    assert a == again and a != b and a.startswith("rv-")
    q2 = ReviewQueue(path)  # another process / a restart sees the same items
    items = q2.list()
    assert [i.id for i in items] == [a, b]
    assert items[0].confidence == pytest.approx(0.41)
    assert items[0].result["output"]["level"] == 3
    assert q2.counts() == {"pending": 2, "resolved": 0}


def test_resolve_accept_correct_reject(tmp_path):
    q = ReviewQueue(tmp_path / "q.sqlite")
    ids = [q.add(f"n{i}", "triage", triage_result(), "low_confidence") for i in range(3)]
    assert q.resolve(ids[0], "accept").decision is Decision.ACCEPT
    fixed = q.resolve(ids[1], Decision.CORRECT, correction={"level": 2}, reviewer="dr.lee")
    assert fixed.correction == {"level": 2} and fixed.reviewer == "dr.lee" and fixed.resolved_at
    assert q.resolve(ids[2], "reject", comment="no").status is ItemStatus.RESOLVED
    assert q.resolve(ids[0], "accept").decision is Decision.ACCEPT  # same decision again: no-op
    with pytest.raises(ConfigurationError, match="already resolved"):
        q.resolve(ids[0], "reject")
    with pytest.raises(ConfigurationError, match="needs the corrected output"):
        q.resolve(q.add("n9", "icd", None, "x"), "correct")
    with pytest.raises(ReviewItemNotFound, match="no review item 'rv-nope'"):
        q.show("rv-nope")
    assert q.list() == [q.show(q.add("n9", "icd", None, "x"))]


def test_cli_list_show_resolve(tmp_path):
    path = tmp_path / "q.sqlite"
    q = ReviewQueue(path)
    iid = q.add("note-7", "triage", triage_result(4, 0.33), "low_confidence: 0.33 < 0.70")
    run = CliRunner().invoke
    out = run(app, ["list", "--queue", str(path), "--json"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.output.strip())
    assert row["id"] == iid and row["note_id"] == "note-7" and row["status"] == "pending"
    out = run(app, ["show", iid, "--queue", str(path)])
    assert out.exit_code == 0 and json.loads(out.output)["result"]["output"]["level"] == 4
    out = run(app, ["resolve", iid, "correct", "--correction", '{"level": 2}', "--queue", str(path)])
    assert out.exit_code == 0 and "resolved: correct" in out.output
    assert q.show(iid).correction == {"level": 2}
    assert run(app, ["resolve", iid, "maybe", "--queue", str(path)]).exit_code == 2
    assert run(app, ["show", "rv-000000000000", "--queue", str(path)]).exit_code == 1
    out = run(app, ["list", "--queue", str(path), "--status", "all"])
    assert out.exit_code == 0 and iid in out.output


class S(TypedDict, total=False):
    note_id: str
    level: int
    route: str


def _graph(queue: ReviewQueue, checkpoint_db):
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    def review(state: S) -> S:
        result = triage_result(3, 0.4)
        decision = request_review(queue, state["note_id"], "triage", result, "low_confidence: 0.40 < 0.70")
        if decision["decision"] == "correct":
            return {"level": int(decision["correction"]["level"]), "route": Route.ACCEPT.value}
        if decision["decision"] == "accept":
            return {"level": result.output.level, "route": Route.ACCEPT.value}
        return {"route": "rejected"}

    g = StateGraph(S)
    g.add_node("review", review)
    g.add_edge(START, "review")
    g.add_edge("review", END)
    conn = sqlite3.connect(checkpoint_db, check_same_thread=False)
    return g.compile(checkpointer=SqliteSaver(conn)), conn


def test_interrupt_then_resume_after_restart(tmp_path):
    """A batch of 3 notes pauses without waiting; after a 'restart' (new graph, new queue objects on the
    same files) the reviewer's decisions resume each note's thread, once."""
    qpath, ck = tmp_path / "q.sqlite", tmp_path / "ck.sqlite"
    queue = ReviewQueue(qpath)
    graph, conn = _graph(queue, ck)
    for n in ("a", "b", "c"):
        out = graph.invoke({"note_id": n}, {"configurable": {"thread_id": f"t-{n}"}})
        assert out["__interrupt__"][0].value["note_id"] == n  # paused, returned at once
    conn.close()
    assert [i.thread_id for i in queue.list()] == ["t-a", "t-b", "t-c"]

    queue2 = ReviewQueue(qpath)
    graph2, conn2 = _graph(queue2, ck)
    items = {i.note_id: i.id for i in queue2.list()}
    queue2.resolve(items["a"], "correct", correction={"level": 2})
    queue2.resolve(items["b"], "reject")
    with pytest.raises(ConfigurationError, match="resolve it first"):
        resume_item(graph2, queue2, items["c"])
    out = resume_item(graph2, queue2, items["a"])
    assert out["level"] == 2 and out["route"] == "accept"
    assert resume_resolved(graph2, queue2) == [items["b"]]  # a is already resumed
    assert graph2.get_state({"configurable": {"thread_id": "t-b"}}).values["route"] == "rejected"
    assert resume_resolved(graph2, queue2) == []
    assert len(queue2) == 3  # re-running the node on resume added nothing
    assert graph2.get_state({"configurable": {"thread_id": "t-c"}}).next == ("review",)  # still waiting
    conn2.close()


def test_items_are_keyed_by_job_note_content_agent_and_payload(tmp_path):
    """A reused note id for another patient, a rerun with changed text, another job or another result is a
    new item; the same one again is the same item, even once resolved."""
    q = ReviewQueue(tmp_path / "q.sqlite")
    key = {"job_key": "job-1", "note_sha256": "a" * 64}
    first = q.add("note", "triage", triage_result(3), "low_confidence: 0.41", **key)
    q.resolve(first, "accept", reviewer="dr.lee")
    assert q.add("note", "triage", triage_result(3), "low_confidence: 0.41 (rerun)", **key) == first
    other_patient = q.add("note", "triage", triage_result(3), "low_confidence: 0.41", job_key="job-1",
                          note_sha256="b" * 64)
    other_job = q.add("note", "triage", triage_result(3), "low_confidence: 0.41", job_key="job-2",
                      note_sha256="a" * 64)
    other_payload = q.add("note", "triage", triage_result(2), "low_confidence: 0.41", **key)
    ids = {first, other_patient, other_job, other_payload}
    assert len(ids) == 4
    pending = {i.id for i in q.list()}
    assert pending == {other_patient, other_job, other_payload}  # nobody else's decision answers them
    item = q.show(other_patient)
    assert item.note_sha256 == "b" * 64 and item.job_key == "job-1" and item.payload_sha256


def test_a_version_1_queue_file_is_migrated_in_place(tmp_path):
    """A queue written before schema versions (v1 table, user_version 0) keeps its items and gains the
    new columns; a file from a newer medslm is refused."""
    from medslm.routers.review_queue import _V1

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    for stmt in _V1.split(";"):
        con.execute(stmt)
    con.execute("INSERT INTO review_items (id, note_id, agent, reason, status, created_at) "
                "VALUES ('rv-000000000000', 'n1', 'icd', 'low_confidence', 'pending', 1.0)")
    con.commit()
    con.close()
    q = ReviewQueue(path)
    assert [i.id for i in q.list()] == ["rv-000000000000"]
    assert q.show("rv-000000000000").job_key is None
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(ConfigurationError, match="newer than this medslm"):
        ReviewQueue(path)


def test_the_graph_keys_items_by_note_content(tmp_path):
    """Two patients under one note id through the graph: two pending items, not one."""
    from medslm.graphs.builders import ed_queue, review
    from medslm.graphs.context import ReviewContext
    from medslm.records import Note
    from medslm.settings import Settings

    s = Settings().with_models(guardian="rules")
    g = ed_queue(s, use_slm=False)
    q = ReviewQueue(tmp_path / "q.sqlite")
    a = review(Note(id="bed-4", text="Crushing chest pain, BP 82/50, SpO2 86%."), g,
               context=ReviewContext(settings=s, queue=q))
    b = review(Note(id="bed-4", text="Unresponsive, GCS 6, RR 8, SpO2 80%."), g,
               context=ReviewContext(settings=s, queue=q))
    assert a.review_items and b.review_items and set(a.review_items) != set(b.review_items)
    assert len(q.list(note_id="bed-4")) == 2
