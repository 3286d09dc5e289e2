"""FHIR R4 export of the real chart review of the 18 sample notes: every resource validates with
fhir.resources, and the entities and codes in the bundles are those of the JSONL output."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from medslm.export import read_reviews, to_fhir, write_fhir
from medslm.export.fhir import (
    AGENT_TAG_SYSTEM,
    ESI_LOINC,
    EXT_ASSERTION,
    EXT_DERIVATION,
    FhirContext,
    medication_statements,
    read_fhir_ndjson,
)
from medslm.export.vocabularies import concept_id_of_coding
from medslm.records import AgentResult, Assertion, ChartReview, ConceptRef, EntityType, ReviewStatus


@pytest.fixture(scope="module")
def jsonl_reviews(sample_reviews):
    return read_reviews(sample_reviews[1])


@pytest.fixture(scope="module")
def bundles(sample_reviews):
    """Each sample's Bundle as JSON, re-read from that JSON (what a receiving system gets)."""
    return [json.loads(to_fhir(r).model_dump_json()) for r in sample_reviews[0].reviews]


def _agent(res: dict) -> str | None:
    return next((t["code"] for t in res.get("meta", {}).get("tag", []) if t["system"] == AGENT_TAG_SYSTEM), None)


def _span(ext_holder: dict) -> tuple[int, int]:
    d = next(e for e in ext_holder["extension"] if e["url"] == EXT_DERIVATION)
    sub = {e["url"]: e for e in d["extension"]}
    start = sub["offset"]["valueInteger"]
    return start, start + sub["length"]["valueInteger"]


def test_every_resource_validates_with_fhir_resources(bundles) -> None:
    assert len(bundles) == 18
    types: Counter[str] = Counter()
    for b in bundles:
        Bundle.model_validate_json(json.dumps(b))  # the whole bundle
        for e in b["entry"]:
            res = e["resource"]
            get_fhir_model_class(res["resourceType"]).model_validate_json(json.dumps(res))  # each resource alone
            assert e["fullUrl"] == f"urn:uuid:{res['id']}"
            types[res["resourceType"]] += 1
        urls = {e["fullUrl"] for e in b["entry"]}
        refs = {v for e in b["entry"] for v in _references(e["resource"])}
        assert refs <= urls  # every reference resolves inside the bundle
    assert types["Observation"] == 18 and types["Condition"] > 40 and types["FamilyMemberHistory"] >= 1
    assert types["Provenance"] >= 18 * 3


def _references(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from _references(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _references(v)


def test_round_trip_codes_and_entities(bundles, jsonl_reviews) -> None:
    by_id = {r.note_id: r for r in jsonl_reviews}
    for b in bundles:
        review = by_id[b["identifier"]["value"]]
        res = [e["resource"] for e in b["entry"]]
        # ICD-10-CM codes and their evidence spans
        icd = [x for x in res if _agent(x) == "icd" and x["resourceType"] == "Condition"]
        got_codes = {(c["coding"][0]["code"], tuple(_span(ev) for ev in x.get("evidence", [])))
                     for x in icd for c in [x["code"]]}
        want_codes = {(c.code, tuple((s.start, s.end) for s in c.evidence)) for c in (review.codes.output if review.codes else [])}
        assert got_codes == want_codes
        assert all(x["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm" for x in icd)
        # coded problem mentions: Conditions and FamilyMemberHistory, with span, concepts and assertion
        got = Counter()
        for x in res:
            if _agent(x) != "ner" or x["resourceType"] == "Provenance":
                continue
            assertion = next(e["valueCode"] for e in x["extension"] if e["url"] == EXT_ASSERTION)
            if x["resourceType"] == "Condition":
                start, end = _span(x["evidence"][0])
                code = x["code"]
            else:
                start, end = _span(x)
                code = x["condition"][0]["code"]
            concepts = frozenset(concept_id_of_coding(c["system"], c["code"]) for c in code["coding"])
            got[(start, end, code["text"], assertion, concepts)] += 1
        # ICD-10-CM blocks (E08-E13) are hierarchy nodes, not codes: never a FHIR coding
        want = Counter((e.start, e.end, e.text, e.assertion.value, frozenset(codes))
                       for e in (review.entities.output if review.entities else [])
                       for codes in [{c.id for c in e.concepts if not (c.id.startswith("ICD10CM:") and "-" in c.id)}]
                       if e.type == EntityType.PROBLEM and codes and e.assertion != Assertion.HYPOTHETICAL)
        assert got == want
        assert not any("-" in c for k in got for c in k[4] if c.startswith("ICD10CM:"))


def test_verification_status_and_triage_follow_the_review(bundles, jsonl_reviews) -> None:
    by_id = {r.note_id: r for r in jsonl_reviews}
    status = {"present": "confirmed", "possible": "provisional", "negated": "refuted", "historical": "confirmed"}
    seen = set()
    for b in bundles:
        review = by_id[b["identifier"]["value"]]
        for e in b["entry"]:
            x = e["resource"]
            if x["resourceType"] == "Condition" and _agent(x) == "ner":
                a = next(v["valueCode"] for v in x["extension"] if v["url"] == EXT_ASSERTION)
                assert x["verificationStatus"]["coding"][0]["code"] == status[a]
                assert ("clinicalStatus" in x) == (a in ("present", "possible"))
                seen.add(a)
            if x["resourceType"] == "Observation":
                t = review.triage
                assert x["valueCodeableConcept"]["text"] == f"{t.output.scale}-{t.output.level}"
                if t.output.scale == "ESI":
                    assert x["code"]["coding"][0]["code"] == ESI_LOINC
                assert x["status"] == ("final" if t.route.value == "accept" else "preliminary")
                assert [c["code"]["text"] for c in x.get("component", [])] == [f.name for f in t.output.red_flags]
            if x["resourceType"] == "Provenance":
                agent = _agent(x)
                p = review.results[agent].provenance
                names = " ".join(a["who"]["display"] for a in x["agent"])
                assert (p.model_id or "medslm rules") in names and (p.model_revision or "") in names
    assert {"confirmed", "refuted"} <= {status[a] for a in seen} and "negated" in seen


def test_the_note_text_stays_out_unless_asked(sample_reviews) -> None:
    r = sample_reviews[0].reviews[0]
    plain = to_fhir(r).model_dump_json()
    assert r.text[:60] not in plain
    assert "data" not in json.loads(plain)["entry"][0]["resource"]["content"][0]["attachment"]
    with_text = json.loads(to_fhir(r, include_text=True, subject="Patient/42").model_dump_json())
    note = with_text["entry"][0]["resource"]
    import base64

    assert base64.b64decode(note["content"][0]["attachment"]["data"]).decode() == r.text
    assert all(x["resource"].get("subject", {"reference": "Patient/42"}) == {"reference": "Patient/42"}
               for x in with_text["entry"] if x["resource"]["resourceType"] != "Provenance")


def test_ndjson_and_bulk_files(sample_reviews, tmp_path) -> None:
    reviews = sample_reviews[0].reviews
    one = write_fhir(reviews, tmp_path / "bundles.ndjson")
    back = read_fhir_ndjson(tmp_path / "bundles.ndjson")
    assert one.bundles == 18 and [b.identifier.value for b in back] == [r.note_id for r in reviews]
    again = write_fhir(reviews, tmp_path / "again.ndjson")
    assert (tmp_path / "bundles.ndjson").read_text() != "" and again.resources == one.resources
    bulk = write_fhir(reviews, tmp_path / "bulk")
    for path in bulk.paths:
        objs = read_fhir_ndjson(path)
        assert {o.get_resource_type() for o in objs} == {path.stem}
        assert len({o.id for o in objs}) == len(objs)  # a Device shared by notes is written once
    assert bulk.resources["Condition"] == one.resources["Condition"]
    assert bulk.resources["Device"] < one.resources["Device"]


def test_ids_are_stable_and_a_failed_note_says_why(sample_reviews) -> None:
    r = sample_reviews[0].reviews[1]
    ids = [e.resource.id for e in to_fhir(r).entry]
    assert ids == [e.resource.id for e in to_fhir(r).entry]
    failed = ChartReview(note_id="bad-1", status=ReviewStatus.FAILED, reason="not_text: record 3: text is a int")
    b = json.loads(to_fhir(failed).model_dump_json())
    outcome = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]
    assert outcome[0]["issue"][0]["diagnostics"] == "failed: not_text: record 3: text is a int"


def test_medication_statements_from_a_medication_agent() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Med:  # the shape a medication agent will emit (the agent does not exist yet)
        start: int
        end: int
        text: str
        assertion: Assertion
        concepts: tuple
        confidence: float
        dose: str | None = None
        route: str | None = None
        frequency: str | None = None

    text = "On metformin 500 mg BID. No warfarin."
    review = ChartReview(note_id="m-2", status=ReviewStatus.OK, text=text)
    meds = [Med(3, 12, "metformin", Assertion.PRESENT, (ConceptRef(id="RXNORM:6809", label="metformin"),), 0.9,
                "500 mg", "oral", "BID"),
            Med(28, 36, "warfarin", Assertion.NEGATED, (), 0.7)]
    ctx = FhirContext(review, {"display": "p"}, "2026-01-01T00:00:00+00:00")
    out = list(medication_statements(AgentResult[list](agent="medication", output=meds, confidence=0.8), ctx))
    cls = get_fhir_model_class("MedicationStatement")
    parsed = [cls.model_validate(x) for x in out]
    assert [p.status for p in parsed] == ["active", "not-taken"]
    assert out[0]["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809", "display": "metformin"}
    assert out[0]["dosage"][0] == {"text": "500 mg BID", "route": {"text": "oral"}}
    assert _span(out[1]) == (28, 36) and text[28:36] == "warfarin"


def test_without_the_extra_the_error_names_it(monkeypatch, sample_reviews) -> None:
    from medslm.errors import MissingExtraError

    monkeypatch.setitem(__import__("sys").modules, "fhir.resources.R4B", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r'pip install "medslm\[export\]"'):
        to_fhir(sample_reviews[0].reviews[0])
