"""Durable human review across processes: a batch pauses notes for review in a SQLite checkpointer; a
reviewer resolves items with ``medslm review-queue resolve``; ``medslm review-queue resume`` (or rerunning
``medslm review``) in a new process resumes those notes through the real review node, and the output file
carries the decision and the audit file says who decided."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

GRAPH = textwrap.dedent('''
    from medslm.graphs.pipeline import Pipeline
    from medslm.records import Route


    def _review(state):
        return any(r == Route.REVIEW for r in (state.get("routes") or {}).values())


    def build(settings=None):
        """guard_in -> triage (rules + fitted model) -> route -> review -> guard_out"""
        return (Pipeline(name="durable", settings=settings).add("guard_in").add("triage", use_slm=False)
                .add("route").add("review", when=_review).add("guard_out").compile())
''')

NOTES = [
    {"id": "a", "text": "34M fell from a bicycle, painful swollen right wrist. BP 128/80, HR 88, SpO2 99%."},
    {"id": "b", "text": "71F with new confusion since this morning. BP 100/60, HR 112, T 38.9C, RR 24."},
]


def _medslm(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "medslm", *args], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def _reviews(path: Path) -> dict[str, dict]:
    return {r["note_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_interrupt_resolve_resume_across_processes(tmp_path) -> None:
    (tmp_path / "durable_graph.py").write_text(GRAPH)
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps(n) + "\n" for n in NOTES))
    out = tmp_path / "reviews.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "MEDSLM_REVIEW_QUEUE": str(tmp_path / "q.sqlite"),
           "MEDSLM_THRESHOLDS": "triage=1.0", "MEDSLM_MODEL_GUARDIAN": "rules"}
    run = ["review", str(notes), "-o", str(out), "--graph", "durable_graph:build", "-q", "--no-show"]

    # process 1: both notes go to review; the batch does not wait, the notes pause durably
    _medslm(run, env, tmp_path)
    first = _reviews(out)
    assert {k: v["status"] for k, v in first.items()} == {"a": "needs_review", "b": "needs_review"}
    checkpoints = Path(str(out) + ".checkpoints.sqlite")
    assert checkpoints.exists() and (checkpoints.stat().st_mode & 0o777) == 0o600
    items = {v["note_id"]: v["id"] for v in map(json.loads, _medslm(
        ["review-queue", "list", "--json"], env, tmp_path).stdout.splitlines())}
    assert set(items) == {"a", "b"} and items["a"] in first["a"]["review_items"]

    # a reviewer corrects note a (another process)
    _medslm(["review-queue", "resolve", items["a"], "correct", "--correction", '{"level": 2}',
             "--reviewer", "dr.lee"], env, tmp_path)

    # process 2: resume only; note a carries the decision, note b still waits
    _medslm(["review-queue", "resume", str(notes), "-o", str(out), "--graph", "durable_graph:build", "-q"], env,
            tmp_path)
    second = _reviews(out)
    a = second["a"]["results"]["triage"]
    assert second["a"]["status"] == "ok" and a["output"]["level"] == 2 and a["route"] == "accept"
    assert a["human"] == {"item_id": items["a"], "decision": "correct", "reviewer": "dr.lee", "comment": None}
    assert second["b"]["status"] == "needs_review"
    audit = {r["note_id"]: r for r in map(json.loads, Path(str(out) + ".audit.jsonl").read_text().splitlines())}
    assert audit["a"]["reviewer_decisions"] == [{"agent": "triage", "item_id": items["a"], "decision": "correct",
                                                 "reviewer": "dr.lee"}]
    assert "confusion" not in json.dumps(audit)  # the audit holds no note text

    # note b accepted; rerunning the plain review command resumes it and leaves a as it is
    _medslm(["review-queue", "resolve", items["b"], "accept", "--reviewer", "dr.kim"], env, tmp_path)
    third_run = _medslm(run, env, tmp_path)
    assert "1 resumed after human review" in third_run.stdout
    third = _reviews(out)
    assert third["b"]["status"] == "ok" and third["b"]["results"]["triage"]["human"]["reviewer"] == "dr.kim"
    assert third["a"] == second["a"]
    with sqlite3.connect(checkpoints) as c:  # finished notes leave no checkpoint (it holds the note)
        assert c.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0
    listed = [json.loads(x) for x in _medslm(["review-queue", "list", "--status", "all", "--json"], env,
                                             tmp_path).stdout.splitlines()]
    assert len(listed) == 2 and all(x["resumed_at"] for x in listed)  # nothing raised twice, both resumed
