"""The batch runner: resume, retries, crash safety (SIGKILL x5 over 1,000 notes), audit without note text."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medslm import Note, Pipeline, Settings, load_samples
from medslm.graphs.builders import triage_rules
from medslm.graphs.runner import areview_batch, review_batch

CHEAP = Settings().with_models(guardian="rules")  # real guardian, rules only; triage without the SLM
REPO = Path(__file__).resolve().parents[2]


def _notes(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` synthetic notes: sample notes with varied vitals, so results differ from note to note."""
    rng = random.Random(seed)
    base = load_samples()
    out = []
    for i in range(n):
        b = rng.choice(base).text
        vitals = f" Recheck: HR {rng.randint(50, 150)}, SpO2 {rng.randint(84, 100)}%, RR {rng.randint(10, 32)}."
        out.append({"id": f"n{i:04d}", "text": b + vitals})
    return out


def _short_notes(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` short triage notes (cheap to review), each with its own vitals."""
    rng = random.Random(seed)
    complaints = ["chest pain", "cough and fever", "ankle sprain", "headache, no vomiting", "short of breath"]
    return [{"id": f"n{i:04d}", "text": f"{rng.randint(18, 90)} yo, {rng.choice(complaints)}. HR {rng.randint(50, 150)}, "
             f"SpO2 {rng.randint(84, 100)}%, RR {rng.randint(10, 32)}."} for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _canonical(line: bytes | str) -> str:
    """A review without its timings (latency differs run to run; everything else must not)."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "latency_ms"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return json.dumps(strip(json.loads(line)), sort_keys=True)


def test_rerun_skips_done_and_retries_failed(tmp_path):
    flaky = tmp_path / "fail-once"
    flaky.write_text("")

    def sometimes(state):
        if state["note"].id.endswith("3") and flaky.exists():
            raise RuntimeError("transient")
        return {"issues": [f"seen {state['note'].id}"]}

    graph = Pipeline(name="flaky").add(sometimes, writes=["issues"]).compile()
    rows = _notes(12)
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    first = review_batch(src, tmp_path / "out.jsonl", graph=graph, progress=False)
    assert first.processed == 12 and first.failures == {"sometimes: RuntimeError": 1}
    assert [r.note_id for r in first.reviews] == [r["id"] for r in rows]
    flaky.unlink()
    second = review_batch(src, tmp_path / "out.jsonl", graph=graph, progress=False)
    assert (second.processed, second.skipped) == (1, 11)  # only the failed note ran again
    assert second.counts == {"ok": 12}
    third = review_batch(src, tmp_path / "out.jsonl", graph=graph, progress=False)
    assert (third.processed, third.skipped) == (0, 12)
    with sqlite3.connect(tmp_path / "out.jsonl.store.sqlite") as db:
        assert db.execute("SELECT COUNT(*), SUM(attempts) FROM reviews").fetchone() == (12, 13)
    # a changed text is reviewed again; a different configuration is a different job
    rows[0]["text"] += " Addendum."
    _write_jsonl(src, rows)
    assert review_batch(src, tmp_path / "out.jsonl", graph=graph, progress=False).processed == 1
    other = Settings(seed=1)
    assert review_batch(src, tmp_path / "out.jsonl", graph=graph, settings=other, progress=False).processed == 12


def test_audit_has_provenance_and_no_note_text(tmp_path):
    notes = load_samples()
    report = review_batch(notes, tmp_path / "out.jsonl", graph=triage_rules(CHEAP), settings=CHEAP, progress=False)
    assert report.audit is not None
    audit_text = report.audit.read_text()
    records = [json.loads(x) for x in audit_text.splitlines()]
    assert [r["note_id"] for r in records] == [n.id for n in notes]
    first = records[0]
    assert first["input_sha256"] == notes[0].sha256 and first["config_hash"] == CHEAP.config_hash()
    assert first["job_key"] == report.job_key and first["graph"] == "triage_rules"
    assert first["agents"]["triage"]["route"] is None and first["agents"]["triage"]["latency_ms"] > 0
    assert first["safety_in"]["allowed"] is True
    for n in notes:  # not one 16-character piece of any note reaches the audit file
        pieces = {n.text[i : i + 16] for i in range(0, max(1, len(n.text) - 16), 8)}
        assert not [p for p in pieces if p in audit_text], n.id


def test_async_batch_matches_sync_and_is_quiet_without_tty(tmp_path, capfd):
    notes = [Note(id=r["id"], text=r["text"]) for r in _notes(6)]
    sync = review_batch(notes, graph=triage_rules(CHEAP), settings=CHEAP)
    asyn = asyncio.run(areview_batch(notes, graph=triage_rules(CHEAP), settings=CHEAP))
    assert [_canonical(r.model_dump_json()) for r in sync.reviews] == [
        _canonical(r.model_dump_json()) for r in asyn.reviews]
    assert capfd.readouterr().err == ""  # no progress bar when stderr is not a terminal
    assert "6 notes (6 reviewed, 0 already done)" in sync.summary()


def _store_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _cli(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "from medslm.cli.review import review; import typer; typer.run(review)",
            str(src), "-o", str(out), "--graph", "medslm.graphs.builders:triage_rules", "--quiet", "--no-show"]


def test_sigkill_five_times_over_1000_notes_loses_and_duplicates_nothing(tmp_path):
    rows = _short_notes(1000, seed=7)
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    env = {**os.environ, "MEDSLM_MODEL_GUARDIAN": "rules", "PYTHONPATH": str(REPO)}
    out, store = tmp_path / "out.jsonl", tmp_path / "out.jsonl.store.sqlite"
    rng = random.Random(7)
    targets = sorted(rng.sample(range(20, 980), 5))
    seen = []
    for target in targets:
        proc = subprocess.Popen(_cli(src, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _store_count(store) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(_store_count(store))
        assert not out.exists()  # the output appears only when the job is complete
    assert seen == sorted(seen) and seen[-1] < 1000
    done = subprocess.run(_cli(src, out), env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = out.read_bytes().rstrip(b"\n").split(b"\n")
    ids = [json.loads(x)["note_id"] for x in lines]
    assert ids == [r["id"] for r in rows]  # 0 lost, 0 duplicated, input order
    with sqlite3.connect(store) as db:
        count, attempts = db.execute("SELECT COUNT(*), SUM(attempts) FROM reviews").fetchone()
    assert count == 1000 and attempts == 1000  # no note was written twice
    # the same job uninterrupted gives the same output
    ref = review_batch(src, tmp_path / "ref.jsonl", graph=triage_rules(CHEAP), settings=CHEAP, progress=False)
    assert ref.job_key == json.loads(lines[0])["config_hash"]
    ref_lines = (tmp_path / "ref.jsonl").read_bytes().rstrip(b"\n").split(b"\n")
    assert [_canonical(x) for x in lines] == [_canonical(x) for x in ref_lines]
    print(f"SIGKILL at store counts {seen}; resumed to 1000/1000")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_output_formats(tmp_path, fmt):
    notes = [Note(id=r["id"], text=r["text"]) for r in _notes(3)]
    report = review_batch(notes, tmp_path / f"out.{fmt}", graph=triage_rules(CHEAP), settings=CHEAP)
    if fmt == "csv":
        import csv

        rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["note_id"] for r in rows] == [n.id for n in notes]
    assert [int(r["triage_level"]) for r in rows] == [r.triage.output.level for r in report.reviews]


class _ToyTriage:
    """A user's triage agent (narrow unit test of the counters): level from the text, "esc" marks an escalated result."""

    name = "triage"

    def run(self, note, state):
        from medslm.records import AgentResult, Provenance, TriageResult

        return AgentResult(agent="triage", output=TriageResult(level=2 if "urgent" in note.text else 4),
                           confidence=0.9, provenance=Provenance(escalated="esc" in note.text))


def test_progress_bar_live_counts_and_end_summary(tmp_path, capfd):
    from medslm.graphs.builders import LevelPolicy
    from medslm.graphs.context import ReviewContext

    def boom(state):
        if "boom" in state["note"].text:
            raise RuntimeError(state["note"].text)
        return {"issues": []}

    graph = (Pipeline(name="toy").add("guard_in").add(_ToyTriage(), policy=LevelPolicy(max_level=2))
             .add(boom, writes=["issues"])
             .add("route").add("review").compile())
    texts = ["fine", "urgent", "fine esc", "boom", "urgent esc", "boom", "fine", "", "boom"]
    notes = [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)]
    ctx = ReviewContext(settings=CHEAP, queue_path=tmp_path / "queue.sqlite")
    report = review_batch(notes, graph=graph, context=ctx, progress=True)
    err = capfd.readouterr().err
    bar = [ln for ln in err.splitlines() if ln.startswith("review")][-1]
    assert "9/9" in bar and "notes/min" in bar
    # route sends urgent notes to review; a crashing node and an empty record fail; two results escalated
    assert "escalated 2 · review 2 · blocked 0 · failed 4" in bar
    assert report.counts == {"ok": 3, "needs_review": 2, "failed": 4}
    assert report.failures == {"boom: RuntimeError": 3, "empty_note": 1}
    s = report.summary()
    assert "9 notes (9 reviewed, 0 already done)" in s and " notes/s (" in s
    assert "escalated 2 (22.2%)" in s
    assert "failures by reason: boom: RuntimeError 3, empty_note 1" in s
    assert "boom" not in err.replace("boom: RuntimeError", "").replace("node boom", "")  # no note text in logs
