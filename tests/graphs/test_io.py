"""Readers and malformed input: every bad record becomes a typed per-note failure, never a crash."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medslm import Note, Settings
from medslm.graphs.builders import triage_rules
from medslm.graphs.io import InputFailure, read_records, write_reviews
from medslm.graphs.runner import review_batch

REASONS = {"bad_json", "bad_record", "missing_id", "bad_id", "duplicate_id", "missing_text", "not_text",
           "bad_encoding", "empty_note", "note_too_large"}
CHEAP = Settings(max_note_chars=20_000).with_models(guardian="rules")


def _jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_jsonl_records_and_failures(tmp_path):
    p = _jsonl(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "text": "Chest pain.", "ward": "ED"}).encode(),
        b"{not json",
        json.dumps({"text": "no id"}).encode(),
        json.dumps({"id": "a", "text": "again"}).encode(),
        json.dumps({"id": 7, "text": "int id"}).encode(),
        json.dumps({"id": "b", "text": ["list"]}).encode(),
        b'{"id": "c", "text": "caf\xe9"}',
        b"[1, 2]",
        json.dumps({"id": ["x"], "text": "t"}).encode(),
    ])
    recs = list(read_records(p))
    assert [i for i, _ in recs] == list(range(9))
    first = recs[0][1]
    assert isinstance(first, Note) and first.id == "a" and first.metadata == {"ward": "ED"}
    codes = [r.reason_code if isinstance(r, InputFailure) else "note" for _, r in recs]
    assert codes == ["note", "bad_json", "missing_id", "duplicate_id", "note", "not_text", "bad_encoding",
                     "bad_record", "bad_id"]
    assert recs[3][1].output_id == "a#record-3"
    assert recs[4][1].id == "7"


def test_csv_and_parquet_with_chosen_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "in.csv"
    csv_path.write_bytes(b'nid,body\nx1,"BP 120/80, no fever"\nx2,\n,orphan\nx4,"caf\xe9"\n')
    recs = list(read_records(csv_path, id_col="nid", text_col="body"))
    assert isinstance(recs[0][1], Note) and recs[0][1].text == "BP 120/80, no fever"
    assert [getattr(r, "reason_code", "note") for _, r in recs] == ["note", "note", "missing_id", "bad_encoding"]
    pq_path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"nid": ["p1", "p2", None], "body": [b"ok text", b"\x00\x01bin", b"t"]}), pq_path)
    recs = list(read_records(pq_path, id_col="nid", text_col="body"))
    assert recs[0][1].text == "ok text"
    assert recs[1][1].reason_code == "not_text" and recs[2][1].reason_code == "missing_id"
    from medslm.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"no column 'text'.*--text-col"):
        list(read_records(pq_path, id_col="nid"))


# --------------------------------------------------------------------------- fuzzing
_ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)

malformed = st.one_of(
    st.binary(min_size=1, max_size=60).map(lambda b: b"\x80" + b.replace(b"\n", b" ")),  # not UTF-8
    st.text(max_size=40).map(lambda s: ("{" + s).replace("\n", " ").encode("utf-8", "surrogatepass")),  # bad JSON
    st.builds(lambda t: json.dumps({"text": t}).encode(), st.text(max_size=30)),  # missing id
    st.builds(lambda i: json.dumps({"id": i, "text": "   \n\t "}).encode(), _ids),  # empty text
    st.builds(lambda i, b: json.dumps({"id": i, "text": "\x00" + b.decode("latin-1")}).encode(), _ids,
              st.binary(min_size=5, max_size=50)),  # binary text
    st.builds(lambda i, n: json.dumps({"id": i, "text": "x" * n}).encode(), _ids,
              st.integers(20_001, 40_000)),  # too large for the job's limit
    st.builds(lambda i, v: json.dumps({"id": i, "text": v}).encode(), _ids,
              st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.none(), st.booleans())),  # not text
    st.builds(lambda i: json.dumps({"id": i, "text": "Héllo wörld"}).encode("utf-16"), _ids),  # wrong encoding
    st.builds(lambda v: json.dumps({"id": v, "text": "text"}).encode(),
              st.one_of(st.lists(st.integers(), max_size=2), st.floats(allow_nan=False), st.just(""))),  # bad id
    st.builds(lambda: json.dumps({"id": "dup", "text": "   "}).encode()),  # duplicate id (and empty)
    st.sampled_from([b"[]", b"null", b"42", b'"just a string"', b"[" * 5000]),  # not objects / deep
)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(malformed, min_size=100, max_size=100))
def test_1000_malformed_inputs_fail_typed_without_crash(tmp_path_factory, lines):
    """10 batches x 100 malformed records = 1,000 inputs through the runner: each one a typed failure."""
    d = tmp_path_factory.mktemp("fuzz")
    lines = [ln for ln in lines if ln.strip()]
    path = _jsonl(d / "in.jsonl", lines)
    t0 = time.perf_counter()
    report = review_batch(path, d / "out.jsonl", graph=triage_rules(CHEAP), settings=CHEAP, progress=False)
    assert time.perf_counter() - t0 < 60  # no hang
    assert len(report.reviews) == len(lines)
    assert all(r.status.value == "failed" for r in report.reviews)
    assert {r.reason.split(":", 1)[0] for r in report.reviews} <= REASONS
    assert len({r.note_id for r in report.reviews}) == len(lines)  # duplicates get their own output id
    out = (d / "out.jsonl").read_bytes().rstrip(b"\n").split(b"\n")  # JSONL: only \n ends a line
    assert len(out) == len(lines)


@given(st.binary(max_size=300))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_reader_never_raises_on_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "in.jsonl"
    path.write_bytes(data)
    recs = list(read_records(path))
    assert len(recs) == sum(1 for ln in data.split(b"\n") if ln.strip())
    assert all(isinstance(r, Note | InputFailure) for _, r in recs)


def test_5mb_empty_and_non_utf8_fail_while_others_are_reviewed(tmp_path):
    path = _jsonl(tmp_path / "in.jsonl", [
        json.dumps({"id": "ok", "text": "BP 85/50, HR 128, SpO2 88% on room air. Short of breath."}).encode(),
        json.dumps({"id": "huge", "text": "word " * 1_000_000}).encode(),
        json.dumps({"id": "empty", "text": ""}).encode(),
        b'{"id": "latin1", "text": "fi\xe8vre"}',
    ])
    report = review_batch(path, tmp_path / "out.jsonl", graph=triage_rules(CHEAP.model_copy(
        update={"max_note_chars": 200_000})), progress=False)
    by = {r.note_id: r for r in report.reviews}
    assert by["ok"].status.value in ("ok", "needs_review") and by["ok"].triage.output.level <= 2
    assert by["huge"].status.value == "failed" and by["huge"].reason.startswith("note_too_large: note 'huge': 5,000,000")
    assert by["empty"].status.value == "failed" and by["empty"].reason.startswith("empty_note")
    assert by["#record-3"].status.value == "failed" and by["#record-3"].reason.startswith("bad_encoding")


def test_write_reviews_is_atomic_and_multi_format(tmp_path):
    from medslm.records import ChartReview, ReviewStatus

    reviews = [ChartReview(note_id=f"n{i}", status=ReviewStatus.OK) for i in range(3)]
    for name in ("o.jsonl", "o.csv", "o.parquet"):
        write_reviews(reviews, tmp_path / name)
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "o.csv").read_text().splitlines()[0].startswith("note_id,status")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "o.parquet").column("note_id").to_pylist() == ["n0", "n1", "n2"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    class Boom(Exception):
        pass

    def bad():
        yield reviews[0]
        raise Boom

    with pytest.raises(Boom):
        write_reviews(bad(), tmp_path / "o.jsonl")
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 3  # the old file is intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_id_taken_by_a_failed_record_makes_the_next_one_a_duplicate(tmp_path):
    # found by the fuzz test: {"id": "0", "text": 0} then {"id": "0", "text": "  "} gave two outputs "0"
    from medslm.graphs.io import read_records

    path = _jsonl(tmp_path / "in.jsonl", [b'{"id": "0", "text": 0}', b'{"id": "0", "text": "   "}'])
    recs = [r for _, r in read_records(path)]
    assert [r.reason_code for r in recs] == ["not_text", "duplicate_id"]
    assert len({r.output_id for r in recs}) == 2


# --------------------------------------------------------------------------- ids and quotes (issue 14)
_any_ids = st.text(min_size=1, max_size=10)  # every code point: controls, lone surrogates, U+FFFF…


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(_any_ids, min_size=1, max_size=12), meta=st.text(max_size=8))
def test_a_bad_id_never_sinks_the_output(tmp_path_factory, ids, meta):
    """Whatever the ids (and metadata) hold, every format is written, one review per record."""
    tmp = tmp_path_factory.mktemp("ids")
    lines = [json.dumps({"id": i, "text": "Chest pain. BP 120/80.", "ward": meta}).encode() for i in ids]
    src = _jsonl(tmp / "in.jsonl", lines)
    for fmt in ("jsonl", "csv", "parquet"):
        rep = review_batch(src, tmp / f"out.{fmt}", graph=triage_rules(CHEAP), settings=CHEAP, progress=False)
        assert len(rep.reviews) == len(ids)
        assert (tmp / f"out.{fmt}").stat().st_size > 0
    out = [json.loads(x) for x in (tmp / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(out) == len(ids)
    for rec in out:
        rec["note_id"].encode("utf-8")  # every id written is valid UTF-8


def _patients_csv(texts: list[str], broken: set[int]) -> bytes:
    import csv as _csv
    import io as _io

    buf = _io.StringIO(newline="")
    w = _csv.writer(buf)
    w.writerow(["id", "text"])
    for k, t in enumerate(texts):
        w.writerow([f"p{k}", t])
    lines = buf.getvalue().split("\r\n")
    for k in broken:  # an unterminated quote opens this patient's text field
        lines[k + 1] = lines[k + 1].replace(f"p{k},", f'p{k},"', 1) if f'p{k},"' not in lines[k + 1] else lines[k + 1]
    return "\r\n".join(lines).encode()


_text = st.text(st.sampled_from(list("abc ,.\n\"'")), max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bodies=st.lists(_text, min_size=2, max_size=12), data=st.data())
def test_an_unterminated_quote_fails_its_record_and_never_merges_patients(tmp_path_factory, bodies, data):
    texts = [f"{b}PATIENT{k:02d}" for k, b in enumerate(bodies)]
    plain = [k for k, b in enumerate(bodies) if not any(c in b for c in ',"\n')]  # written without quotes
    broken = set(data.draw(st.lists(st.sampled_from(plain), max_size=3, unique=True))) if plain else set()
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_bytes(_patients_csv(texts, broken))
    recs = list(read_records(path))
    notes = [r for _, r in recs if isinstance(r, Note)]
    for n in notes:  # no note holds two patients
        assert sum(f"PATIENT{k:02d}" in n.text for k in range(len(texts))) <= 1, n.text
    by_id = {n.id: n.text for n in notes}
    for k in range(len(texts)):
        if k not in broken:  # every intact row is read exactly
            assert by_id.get(f"p{k}") == texts[k], (k, by_id.get(f"p{k}"))
    for k in broken:
        assert f"p{k}" not in by_id or by_id[f"p{k}"].endswith(f"PATIENT{k:02d}")
    assert any(isinstance(r, InputFailure) and r.reason_code == "bad_record" for _, r in recs) or not broken


def test_an_unterminated_quote_example(tmp_path):
    p = tmp_path / "in.csv"
    p.write_bytes(b'id,text\na,"Pt Anna has chest pain\nb,Pt Bert has a cough\nc,"Pt Cleo, fever"\nd,Pt Dan ok\n')
    recs = list(read_records(p))
    got = {r.id: r.text for _, r in recs if isinstance(r, Note)}
    assert got == {"b": "Pt Bert has a cough", "c": "Pt Cleo, fever", "d": "Pt Dan ok"}
    fails = [r for _, r in recs if isinstance(r, InputFailure)]
    assert [f.reason_code for f in fails] == ["bad_record"] and "line 2" in fails[0].message
