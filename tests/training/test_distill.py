"""``medslm distill``: teacher labels and reviewers' decisions become training data for the next component."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from medslm.artifacts import verify
from medslm.records import AgentResult, Note, TriageResult
from medslm.routers.escalation import TeacherLabel, TeacherStore
from medslm.routers.review_queue import ReviewQueue
from medslm.training.distill import TriageDistiller, collect, distill, texts_by_hash

NOTES = [Note(id="n1", text="80M syncope at home, now alert. BP 90/50, HR 48."),
         Note(id="n2", text="25F sore throat for two days, afebrile, eating and drinking."),
         Note(id="n3", text="60M ankle sprain playing football, walking with a limp.")]


def _result(level: int) -> AgentResult[TriageResult]:
    return AgentResult[TriageResult](agent="triage", output=TriageResult(level=level), confidence=0.3)


def _stores(tmp_path):
    teacher = TeacherStore(tmp_path / "teacher.sqlite")
    for note, level in ((NOTES[0], 2), (NOTES[1], 4)):
        teacher.put(TeacherLabel(key=f"k-{note.id}", note_id=note.id, note_sha256=note.sha256, agent="triage",
                                 model_id="qwen-1.5b", result_json=_result(level).model_dump_json(),
                                 created_at=time.time()))
    queue = ReviewQueue(tmp_path / "q.sqlite")
    a = queue.add("n2", "triage", _result(4), "low_confidence: 0.3", note_sha256=NOTES[1].sha256)
    b = queue.add("n3", "triage", _result(3), "low_confidence: 0.3", note_sha256=NOTES[2].sha256)
    c = queue.add("n1", "triage", _result(3), "low_confidence: 0.3", note_sha256=NOTES[0].sha256, job_key="other")
    queue.resolve(a, "correct", correction={"level": 5}, reviewer="dr.lee")  # the reviewer overrides the teacher
    queue.resolve(b, "accept", reviewer="dr.kim")
    queue.resolve(c, "reject", reviewer="dr.kim")  # a rejection teaches nothing: n1 keeps the teacher's label
    return teacher, queue


def test_examples_come_from_teachers_and_reviewers_reviewers_first(tmp_path) -> None:
    teacher, queue = _stores(tmp_path)
    ex = {e.note_id: e for e in collect(TriageDistiller(), texts_by_hash(NOTES), teacher=teacher, queue=queue)}
    assert {k: (e.label, e.source) for k, e in ex.items()} == {
        "n1": (2, "teacher:qwen-1.5b"), "n2": (5, "reviewer:dr.lee"), "n3": (3, "reviewer:dr.kim")}
    assert ex["n3"].text == NOTES[2].text
    # notes the stores refer to but that are not given: skipped (their texts are unknown)
    assert len(collect(TriageDistiller(), texts_by_hash(NOTES[:1]), teacher=teacher, queue=queue)) == 1


def test_distill_writes_a_new_component_with_the_extra_data_in_its_manifest(tmp_path, data_dir) -> None:
    from medslm.evals.triage import fit_triage_model, read_ktas

    teacher, queue = _stores(tmp_path)
    base = read_ktas(data_dir, limit=150)
    rep = distill("triage", data_dir=data_dir, out_dir=tmp_path / "arts", notes=NOTES, teacher=teacher,
                  queue=queue, base_rows=base)
    assert (rep.teacher_examples, rep.reviewer_examples) == (1, 2)
    m = verify(tmp_path / "arts" / "triage-acuity")
    extra = [d for d in m.data if d.path == "distill:triage"]
    assert extra and "1 teacher labels, 2 reviewer decisions" in extra[0].split
    assert m.hyperparameters["distilled_rows"] == 3 and m.hyperparameters["rows"] == 153
    fitted = json.loads((tmp_path / "arts" / "triage-acuity" / "model.json").read_text())
    assert fitted != fit_triage_model(base)  # the extra rows changed the model
    # the CLI: same round from a notes file and the two stores, the public KTAS as the train split
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": n.id, "text": n.text}) + "\n" for n in NOTES))
    out = CliRunner().invoke(_app(), ["distill", "triage", "--notes", str(notes), "--data", str(data_dir),
                                      "--teacher", str(tmp_path / "teacher.sqlite"), "--queue",
                                      str(tmp_path / "q.sqlite"), "--out", str(tmp_path / "cli")])
    assert out.exit_code == 0, out.output
    assert "1 teacher labels and 2 reviewer decisions" in out.output
    assert verify(tmp_path / "cli" / "triage-acuity").hyperparameters["distilled_rows"] == 3


def _app():
    from medslm.cli import app

    return app
