"""Tidy pandas frames of reviews and ``medslm.read_reviews`` on the real review of the 18 sample notes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

import medslm
from medslm.errors import ConfigurationError, ExportError, UnknownNameError
from medslm.graphs.io import write_reviews


def test_read_reviews_gives_back_the_batch_from_jsonl_csv_and_parquet(sample_reviews, tmp_path) -> None:
    report, path = sample_reviews
    assert list(medslm.read_reviews(path)) == report.reviews
    for suffix in (".csv", ".parquet"):
        write_reviews(report.reviews, tmp_path / f"r{suffix}")
        assert list(medslm.read_reviews(tmp_path / f"r{suffix}")) == report.reviews


def test_frames_are_tidy_and_match_the_reviews(sample_reviews) -> None:
    reviews = medslm.Reviews(sample_reviews[0].reviews)
    notes = reviews.to_pandas()
    assert list(notes["note_id"]) == [r.note_id for r in reviews] and notes["note_id"].is_unique
    assert list(notes["triage_level"]) == [r.triage.output.level for r in reviews]
    assert list(notes["status"]) == [r.status.value for r in reviews]

    ents = reviews.to_pandas("entities")
    assert len(ents) == sum(len(r.entities.output) for r in reviews)
    want = Counter((r.note_id, e.type.value, e.assertion.value) for r in reviews for e in r.entities.output)
    assert Counter(zip(ents["note_id"], ents["type"], ents["assertion"], strict=True)) == want
    row = ents[(ents["note_id"] == "ed-001") & (ents["text"] == "chest pain")].iloc[0]
    assert (row["start"], row["end"], row["icd10cm"], row["hpo"]) == (57, 67, "R07.9", "HP:0100749")

    codes = reviews.to_pandas("codes")
    assert set(zip(codes["note_id"], codes["code"], strict=True)) == {
        (r.note_id, c.code) for r in reviews for c in r.codes.output}
    summary = reviews.to_pandas("summary")
    assert set(summary["note_id"]) <= {r.note_id for r in reviews} and summary["supported"].dtype == bool
    assert set(reviews.frames()) == {"notes", "entities", "codes", "triage", "summary", "medications"}
    meds = reviews.to_pandas("medications")  # the medication agent's mentions, one row each
    assert len(meds) == sum(len(r.results["medication"].output.medications) for r in reviews
                            if r.results.get("medication") is not None) > 0
    assert {"note_id", "text", "dose", "route", "frequency"} <= set(meds.columns)
    with pytest.raises(UnknownNameError, match="did you mean 'entities'"):
        reviews.to_pandas("entitys")


def test_a_bad_reviews_file_fails_with_the_line(tmp_path, sample_reviews) -> None:
    good = sample_reviews[1].read_text(encoding="utf-8").splitlines()[0]
    bad = tmp_path / "r.jsonl"
    bad.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ExportError, match=r"r.jsonl record 2: not JSON"):
        medslm.read_reviews(bad)
    bad.write_text('{"note_id": "x"}\n', encoding="utf-8")
    with pytest.raises(ExportError, match=r"record 1: not a medslm review"):
        medslm.read_reviews(bad)
    with pytest.raises(ConfigurationError, match="does not exist"):
        medslm.read_reviews(tmp_path / "missing.jsonl")


def test_import_medslm_and_export_stays_light() -> None:
    code = ("import sys, medslm, medslm.export; medslm.read_reviews; "
            "print(sorted(m for m in ('torch','transformers','pandas','fhir','duckdb','sqlalchemy','omop_cdm','pyarrow')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
