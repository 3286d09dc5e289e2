"""OMOP CDM v5.4 NOTE_NLP export of the real chart review of the 18 sample notes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from medslm.errors import ConfigurationError, ExportError
from medslm.export import read_reviews
from medslm.export.note_nlp import (
    COLUMNS,
    NoteNlpContext,
    OmopConcepts,
    assign_note_ids,
    medication_terms,
    note_nlp_table,
    read_note_nlp,
    to_note_nlp,
    write_note_nlp,
)
from medslm.records import AgentResult, Assertion, ChartReview, ConceptRef, ReviewStatus

#: NOTE_NLP in the OHDSI v5.4 DDL (OHDSI/CommonDataModel inst/ddl/5.4/duckdb/OMOPCDM_duckdb_5.4_ddl.sql):
#: (column, type, nullable)
OHDSI_V54 = [
    ("note_nlp_id", "integer", False), ("note_id", "integer", False), ("section_concept_id", "integer", True),
    ("snippet", "varchar(250)", True), ("offset", "varchar(50)", True), ("lexical_variant", "varchar(250)", False),
    ("note_nlp_concept_id", "integer", True), ("note_nlp_source_concept_id", "integer", True),
    ("nlp_system", "varchar(250)", True), ("nlp_date", "date", False), ("nlp_datetime", "timestamp", True),
    ("term_exists", "varchar(1)", True), ("term_temporal", "varchar(50)", True),
    ("term_modifiers", "varchar(2000)", True),
]


@pytest.fixture(scope="module")
def jsonl_reviews(sample_reviews):
    """The reviews as read back from the JSONL output (what the exports must agree with)."""
    return read_reviews(sample_reviews[1])


def test_schema_from_omop_cdm_is_the_ohdsi_v54_ddl() -> None:
    table = note_nlp_table()
    got = [(c.name, str(c.type).lower().replace("datetime", "timestamp"), c.nullable) for c in table.columns]
    assert got == OHDSI_V54
    assert [c.name for c in table.primary_key.columns] == ["note_nlp_id"]
    assert {ix.name for ix in table.indexes} == {"idx_note_nlp_note_id_1", "idx_note_nlp_concept_id_1"}
    assert list(COLUMNS) == [c for c, _, _ in OHDSI_V54]


def _entities_from_rows(rows, ids):
    """Entities as NOTE_NLP carries them: one row per concept, grouped back into mentions."""
    groups: dict[tuple, set[str]] = {}
    for r in rows:
        m = r.modifiers
        if m["agent"] != "ner":
            continue
        key = (ids[r.note_id], int(r.offset), int(m["end"]), r.lexical_variant, m["type"], m["assertion"])
        groups.setdefault(key, set())
        if "concept" in m:
            groups[key].add(m["concept"])
    return Counter((*k, frozenset(v)) for k, v in groups.items())


def _entities_from_jsonl(reviews):
    return Counter((r.note_id, e.start, e.end, e.text, e.type.value, e.assertion.value, frozenset(c.id for c in e.concepts))
                   for r in reviews if r.entities is not None for e in r.entities.output)


@pytest.mark.parametrize("suffix", [".duckdb", ".sqlite"])
def test_sample_rows_load_into_the_omop_table_and_round_trip(sample_reviews, jsonl_reviews, tmp_path, suffix) -> None:
    report, _ = sample_reviews
    path = tmp_path / f"notes{suffix}"
    written = write_note_nlp(report.reviews, path)
    rows, ids = read_note_nlp(path)
    assert written.rows == len(rows) > 100 and written.notes == 18 == len(ids)

    # the table is the OHDSI one: columns in order, and the primary key holds
    if suffix == ".duckdb":
        import duckdb

        con = duckdb.connect(str(path))
        assert [c[0] for c in con.execute("DESCRIBE note_nlp").fetchall()] == list(COLUMNS)
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO note_nlp (note_nlp_id, note_id, lexical_variant, nlp_date) VALUES (1, 1, 'x', DATE '2026-01-01')")
        con.close()
    else:
        import sqlite3

        con = sqlite3.connect(path)
        assert [c[1] for c in con.execute("PRAGMA table_info(note_nlp)")] == list(COLUMNS)
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO note_nlp (note_nlp_id, note_id, lexical_variant, nlp_date) VALUES (1, 1, 'x', '2026-01-01')")
        con.close()

    # round trip: the entities and codes in NOTE_NLP are those of the JSONL output
    assert _entities_from_rows(rows, ids) == _entities_from_jsonl(jsonl_reviews)
    codes = {(ids[r.note_id], r.modifiers["concept"], int(r.offset), int(r.modifiers["end"]))
             for r in rows if r.modifiers["agent"] == "icd"}
    assert codes == {(r.note_id, f"ICD10CM:{c.code}", s.start, s.end)
                     for r in jsonl_reviews if r.codes is not None for c in r.codes.output for s in c.evidence}
    # the lexical variant is the note's text at the offset; every row names its system and date
    text = {r.note_id: r.text for r in jsonl_reviews}
    for r in rows:
        start, end = int(r.offset), int(r.modifiers["end"])
        assert text[ids[r.note_id]][start:end] == r.lexical_variant
        assert " ".join(r.lexical_variant.split()) in (r.snippet or "")
        assert r.nlp_system.startswith("medslm ") and r.note_nlp_concept_id == 0 and r.nlp_date is not None


def test_assertions_map_to_omop_term_fields(sample_reviews) -> None:
    rows = [r for r in to_note_nlp(sample_reviews[0].reviews) if r.modifiers["agent"] == "ner"]
    seen = Counter(r.modifiers["assertion"] for r in rows)
    # the samples carry every assertion but another person's (checked through assertion_terms below)
    assert set(seen) | {"other_person"} == {a.value for a in Assertion}
    expected = {"present": ("Y", "present"), "negated": ("N", "present"), "possible": ("N", "present"),
                "historical": ("Y", "past"), "family": ("N", "present"), "hypothetical": ("N", "present")}
    for r in rows:
        m = r.modifiers
        assert (r.term_exists, r.term_temporal) == expected[m["assertion"]]
        assert m["negation"] == str(m["assertion"] == "negated").lower()
        assert m["subject"] == {"family": "family_member", "other_person": "other"}.get(m["assertion"], "patient")
        assert m["conditional"] == str(m["assertion"] == "hypothetical").lower()
        assert m["history"] == str(m["assertion"] == "historical").lower()
        assert m["uncertain"] == str(m["assertion"] == "possible").lower()
    fever = next(r for r in rows if r.lexical_variant == "fever" and r.modifiers["concept"] == "ICD10CM:R50.9")
    assert fever.term_exists == "N" and fever.modifiers["negation"] == "true"  # "Denies fever" in ed-001


def test_rerunning_an_export_replaces_its_notes_rows(sample_reviews, tmp_path) -> None:
    reviews = sample_reviews[0].reviews
    path = tmp_path / "notes.duckdb"
    first = write_note_nlp(reviews, path)
    again = write_note_nlp(reviews[:3], path)
    rows, ids = read_note_nlp(path)
    assert len(rows) == first.rows  # no row twice
    assert again.note_ids == {r.note_id: first.note_ids[r.note_id] for r in reviews[:3]}  # same note_ids
    assert len({r.note_nlp_id for r in rows}) == len(rows)
    assert Counter(ids[r.note_id] for r in rows) == Counter(ids[r.note_id] for r in to_note_nlp(reviews, note_ids=first.note_ids))


def test_note_ids_keep_integers_and_number_the_rest() -> None:
    assert assign_note_ids(["12", "a", "12", "b"], {"c": 40}) == {"c": 40, "12": 12, "a": 41, "b": 42}
    assert assign_note_ids(["7", "x"], {"y": 7}) == {"y": 7, "7": 8, "x": 9}  # 7 is taken: numbered


def test_a_failed_note_is_in_the_note_map_without_rows(tmp_path) -> None:
    failed = ChartReview(note_id="n-9", status=ReviewStatus.FAILED, reason="empty_note: note 'n-9': empty")
    out = write_note_nlp([failed], tmp_path / "n.sqlite")
    assert out.rows == 0
    import sqlite3

    con = sqlite3.connect(tmp_path / "n.sqlite")
    assert con.execute("SELECT medslm_note_id, status, reason FROM medslm_note").fetchall() == [
        ("n-9", "failed", "empty_note: note 'n-9': empty")]


def test_bad_targets_and_duplicates_fail_with_their_reason(sample_reviews, tmp_path) -> None:
    r = sample_reviews[0].reviews[0]
    with pytest.raises(ExportError, match="appears twice"):
        to_note_nlp([r, r])
    with pytest.raises(ConfigurationError, match=r"\.duckdb or \.sqlite"):
        write_note_nlp([r], tmp_path / "notes.csv")
    with pytest.raises(ExportError, match="no OMOP note_id"):
        to_note_nlp([r], note_ids={"other": 1})


def test_athena_concept_ids_fill_source_and_standard_concepts(sample_reviews, tmp_path) -> None:
    # a two-concept Athena extract written for this test (ids are made up, not Athena's)
    (tmp_path / "CONCEPT.csv").write_text(
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\t"
        "valid_start_date\tvalid_end_date\tinvalid_reason\n"
        "900001\tChest pain, unspecified\tCondition\tICD10CM\t5-char billing code\t\tR07.9\t20070101\t20991231\t\n"
        "900002\tChest pain\tCondition\tSNOMED\tClinical Finding\tS\t29857009\t20020131\t20991231\t\n",
        encoding="utf-8")
    (tmp_path / "CONCEPT_RELATIONSHIP.csv").write_text(
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
        "900001\t900002\tMaps to\t20070101\t20991231\t\n", encoding="utf-8")
    concepts = OmopConcepts.from_athena(tmp_path)
    rows = to_note_nlp(sample_reviews[0].reviews[:1], concepts=concepts)
    chest = [r for r in rows if r.modifiers.get("concept") == "ICD10CM:R07.9"]
    assert chest and all((r.note_nlp_concept_id, r.note_nlp_source_concept_id) == (900002, 900001) for r in chest)
    others = [r for r in rows if r.modifiers.get("concept") != "ICD10CM:R07.9"]
    assert others and all(r.note_nlp_concept_id == 0 == r.note_nlp_source_concept_id for r in others)
    with pytest.raises(ConfigurationError, match="CONCEPT.csv"):
        OmopConcepts.from_athena(tmp_path / "nothing")


@dataclass(frozen=True)
class _Med:
    """A record of the shape a medication agent will emit (the agent does not exist yet)."""

    start: int
    end: int
    text: str
    assertion: Assertion
    concepts: tuple[ConceptRef, ...]
    confidence: float
    dose: str | None
    route: str | None
    frequency: str | None


def test_medication_renderer_writes_dose_and_rxnorm_concept() -> None:
    text = "Takes metformin 500 mg BID by mouth. Stopped warfarin."
    review = ChartReview(note_id="m-1", status=ReviewStatus.OK, text=text)
    meds = [_Med(6, 15, "metformin", Assertion.PRESENT, (ConceptRef(id="RXNORM:6809", label="metformin"),), 0.9,
                 "500 mg", "by mouth", "BID"),
            _Med(45, 53, "warfarin", Assertion.NEGATED, (), 0.8, None, None, None)]
    result = AgentResult[list](agent="medication", output=meds, confidence=0.85)
    terms = list(medication_terms(result, NoteNlpContext(review)))
    assert [t["lexical_variant"] for t in terms] == ["metformin", "warfarin"]
    assert terms[0]["term_exists"] == "Y" and terms[1]["term_exists"] == "N"
    from medslm.export.note_nlp import parse_term_modifiers

    m = parse_term_modifiers(terms[0]["term_modifiers"])
    assert (m["concept"], m["dose"], m["frequency"], m["route"]) == ("RXNORM:6809", "500 mg", "BID", "by mouth")
    assert "concept" not in parse_term_modifiers(terms[1]["term_modifiers"])


def test_without_the_extra_the_error_names_it(monkeypatch, tmp_path) -> None:
    import sys

    from medslm.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "duckdb", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r'pip install "medslm\[export\]"'):
        write_note_nlp([], tmp_path / "n.duckdb")
    monkeypatch.setitem(sys.modules, "omop_cdm.regular.cdm54", None)
    with pytest.raises(MissingExtraError, match="omop-cdm"):
        note_nlp_table()


def test_another_persons_finding_is_not_the_patients_in_note_nlp() -> None:
    from medslm.export.note_nlp import assertion_terms

    exists, temporal, mods = assertion_terms(Assertion.OTHER_PERSON)  # "wife has covid"
    assert (exists, temporal) == ("N", "present") and mods["subject"] == "other" and mods["negation"] == "false"
