"""``medslm export`` and ``medslm review --to`` (the CLI over medslm.export)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medslm.cli import app


def test_export_a_reviews_file_to_each_target(sample_reviews, tmp_path) -> None:
    jsonl = str(sample_reviews[1])
    res = CliRunner().invoke(app, ["export", jsonl, "--to", "fhir", "-o", str(tmp_path / "b.ndjson")])
    assert res.exit_code == 0, res.output
    assert "FHIR R4: 18 notes" in res.output
    lines = (tmp_path / "b.ndjson").read_text().splitlines()
    assert [json.loads(x)["identifier"]["value"] for x in lines] == [r.note_id for r in sample_reviews[0].reviews]
    res = CliRunner().invoke(app, ["export", jsonl, "--to", "omop-note-nlp", "-o", str(tmp_path / "n.sqlite")])
    assert res.exit_code == 0 and "NOTE_NLP rows for 18 notes" in res.output
    res = CliRunner().invoke(app, ["export", jsonl, "--to", "tables", "-o", str(tmp_path / "t")])
    assert res.exit_code == 0 and (tmp_path / "t" / "entities.parquet").is_file()


def test_an_unknown_target_fails_before_any_work(tmp_path) -> None:
    res = CliRunner().invoke(app, ["review", "--samples", "--to", "fhri", "-o", str(tmp_path / "x.ndjson")])
    assert res.exit_code == 2 and "did you mean 'fhir'" in res.output
    assert not list(tmp_path.iterdir())
    res = CliRunner().invoke(app, ["export", str(tmp_path / "none.jsonl"), "--to", "fhir", "-o", str(tmp_path / "x.ndjson")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_review_to_omop_note_nlp_resumes_without_doubling_rows(tmp_path) -> None:
    import duckdb

    out = tmp_path / "notes.duckdb"
    # the cohort graph (guard_in -> ner) keeps this CLI check short; the full review is exported in tests/export
    args = ["review", "--samples", "--limit", "2", "--graph", "medslm.graphs.builders:cohort",
            "--to", "omop-note-nlp", "-o", str(out), "-q", "--no-show"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2 notes (2 reviewed" in res.output and "NOTE_NLP rows for 2 notes" in res.output
    reviews = (tmp_path / "notes.duckdb.reviews.jsonl").read_text().splitlines()
    assert [json.loads(x)["note_id"] for x in reviews] == ["ed-001", "ed-002"]
    con = duckdb.connect(str(out))
    n = con.execute("SELECT COUNT(*) FROM note_nlp").fetchone()[0]
    con.close()
    res = CliRunner().invoke(app, args)  # the same command again: resumes, re-exports, doubles nothing
    assert res.exit_code == 0 and "2 notes (0 reviewed, 2 already done)" in res.output
    con = duckdb.connect(str(out))
    assert con.execute("SELECT COUNT(*) FROM note_nlp").fetchone()[0] == n > 0
    con.close()
