"""Reviews as FHIR R4 resources: one Bundle per note, built and validated with ``fhir.resources``.

``fhir.resources`` 8 carries FHIR R5 at its top level and the R4 line as ``fhir.resources.R4B`` (4.3.0;
its 6.x releases, the last with plain R4 4.0.1, need pydantic 1). HL7's R4B changes only the
medication-definition, evidence and subscription modules and "preserves compatibility across the rest
of the specification" (https://hl7.org/FHIR/r4b-explanation.html): the resources written here -
Bundle, DocumentReference, Condition, FamilyMemberHistory, Observation, MedicationStatement, Device,
Provenance, OperationOutcome - have the same structure in R4 and R4B.

Per note (``to_fhir``): a DocumentReference for the note (its hash and size; the text only with
``include_text=True``); per agent, the renderer in :data:`FHIR_RENDERERS`; a Device per model and a
Provenance per agent naming the model, its revision and backend. Evidence spans point into the note's
DocumentReference with HL7's ``derivation-reference`` extension (offset, length). A failed or blocked
note gets an OperationOutcome with its reason. Resource ids are UUIDs derived from the note id and the
item, so an export run twice gives the same ids.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.errors import ExportError, MissingExtraError
from medslm.export.results import agent_results, medication_attrs, medication_items
from medslm.export.vocabularies import fhir_coding
from medslm.records import (
    AgentResult,
    Assertion,
    ChartReview,
    CodeAssignment,
    Entity,
    EntityType,
    ReviewStatus,
)

FHIR_VERSION = "4.3.0"
#: base of medslm's own FHIR identifiers (extensions, code systems, identifier systems)
MEDSLM_FHIR = "https://example.invalid/medslm/fhir"
EXT_ASSERTION = f"{MEDSLM_FHIR}/StructureDefinition/assertion"
EXT_CONFIDENCE = f"{MEDSLM_FHIR}/StructureDefinition/confidence"
EXT_DERIVATION = "http://hl7.org/fhir/StructureDefinition/derivation-reference"
NOTE_ID_SYSTEM = f"{MEDSLM_FHIR}/note-id"
AGENT_TAG_SYSTEM = f"{MEDSLM_FHIR}/agent"
RED_FLAG_SYSTEM = f"{MEDSLM_FHIR}/CodeSystem/red-flag"
LOINC = "http://loinc.org"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
#: LOINC 75636-1 "Emergency severity index [ESI]" and its answer list LL3056-0 (ESI-1 .. ESI-5)
ESI_LOINC = "75636-1"
ESI_ANSWERS = {1: "LA21567-5", 2: "LA21752-3", 3: "LA21753-1", 4: "LA21754-9", 5: "LA21755-6"}
_NAMESPACE = uuid.UUID("6f1c2d0e-2b9a-5d7e-9c41-7a0e3f5b8d21")

#: assertion -> (Condition.verificationStatus, Condition.clinicalStatus or None)
CONDITION_STATUS: dict[Assertion, tuple[str, str | None]] = {
    Assertion.PRESENT: ("confirmed", "active"),
    Assertion.POSSIBLE: ("provisional", "active"),
    Assertion.NEGATED: ("refuted", None),
    Assertion.HISTORICAL: ("confirmed", None),
}
#: assertion -> MedicationStatement.status
MEDICATION_STATUS: dict[Assertion, str] = {
    Assertion.PRESENT: "active", Assertion.NEGATED: "not-taken", Assertion.HISTORICAL: "completed",
    Assertion.HYPOTHETICAL: "intended", Assertion.POSSIBLE: "unknown",
}


def _require() -> Callable[[str], Any]:
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError as exc:
        raise MissingExtraError(package="fhir.resources", extra="export", feature="FHIR export") from exc
    return get_fhir_model_class


# --------------------------------------------------------------------------- context
@dataclass
class FhirContext:
    """What a FHIR renderer gets besides the agent's result: ids, the subject, the note's reference."""

    review: ChartReview
    subject: dict[str, Any]
    recorded: str
    #: agent name -> its resources' references, filled as renderers run (for each agent's Provenance)
    made: dict[str, list[str]] = field(default_factory=dict)

    def uuid(self, *key: object) -> str:
        """A stable id for an item of this note (the same export run twice gives the same ids)."""
        return str(uuid.uuid5(_NAMESPACE, "|".join(str(k) for k in (self.review.note_id, *key))))

    @property
    def note_ref(self) -> str:
        return f"urn:uuid:{self.uuid('note')}"

    def derivation(self, start: int, end: int) -> dict[str, Any]:
        """HL7 ``derivation-reference``: the span ``[start, end)`` of the note's DocumentReference."""
        return {"url": EXT_DERIVATION, "extension": [
            {"url": "reference", "valueReference": {"reference": self.note_ref}},
            {"url": "offset", "valueInteger": start}, {"url": "length", "valueInteger": end - start}]}

    def evidence(self, start: int, end: int) -> dict[str, Any]:
        return {"extension": [self.derivation(start, end)], "detail": [{"reference": self.note_ref}]}

    def meta(self, agent: str) -> dict[str, Any]:
        return {"tag": [{"system": AGENT_TAG_SYSTEM, "code": agent}]}


def _confidence(value: float) -> dict[str, Any]:
    return {"url": EXT_CONFIDENCE, "valueDecimal": round(float(value), 4)}


def _assertion(a: Assertion) -> dict[str, Any]:
    return {"url": EXT_ASSERTION, "valueCode": Assertion(a).value}


def codable(concepts: Iterable[Any]) -> list[Any]:
    """The concepts that are codes: an ICD-10-CM block (``ICD10CM:E08-E13``, a node of the knowledge
    graph's hierarchy) is not an ICD-10-CM code and stays out of FHIR codings."""
    return [c for c in concepts if not (c.id.startswith("ICD10CM:") and "-" in c.id)]


def _code(concepts: Iterable[Any], text: str) -> dict[str, Any]:
    return {"coding": [fhir_coding(c.id, c.label) for c in codable(concepts)], "text": text}


# --------------------------------------------------------------------------- renderers, one per agent
FhirRenderer = Callable[[AgentResult[Any], FhirContext], Iterable[dict[str, Any]]]


def entity_resources(result: AgentResult[list[Entity]], ctx: FhirContext) -> Iterator[dict[str, Any]]:
    """NER: a Condition per coded problem mention (verification from its assertion), a FamilyMemberHistory
    per family-history problem; hypothetical mentions, another person's findings (``other_person``: not the
    patient's, not a relative's) and uncoded or non-problem entities stay in NOTE_NLP."""
    for i, e in enumerate(result.output):
        if (e.type != EntityType.PROBLEM or not codable(e.concepts)
                or e.assertion in (Assertion.HYPOTHETICAL, Assertion.OTHER_PERSON)):
            continue
        ext = [_assertion(e.assertion), _confidence(e.confidence)]
        if e.assertion == Assertion.FAMILY:
            yield {"resourceType": "FamilyMemberHistory", "id": ctx.uuid("ner", i), "meta": ctx.meta("ner"),
                   "extension": [*ext, ctx.derivation(e.start, e.end)], "status": "partial",
                   "patient": ctx.subject,
                   "relationship": {"coding": [{"system": ROLE_CODE, "code": "FAMMEMB", "display": "family member"}]},
                   "condition": [{"code": _code(e.concepts, e.text)}]}
            continue
        verification, clinical = CONDITION_STATUS[e.assertion]
        res: dict[str, Any] = {
            "resourceType": "Condition", "id": ctx.uuid("ner", i), "meta": ctx.meta("ner"), "extension": ext,
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": verification}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
            "code": _code(e.concepts, e.text), "subject": ctx.subject,
            "evidence": [ctx.evidence(e.start, e.end)],
        }
        if clinical:
            res["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical}]}
        yield res


def code_conditions(result: AgentResult[list[CodeAssignment]], ctx: FhirContext) -> Iterator[dict[str, Any]]:
    """ICD coding: a Condition per ICD-10-CM code, its evidence spans, and the verification status of the
    assertion of the mention its evidence covers (confirmed when none)."""
    ents = ctx.review.entities.output if ctx.review.entities is not None else []
    for c in result.output:
        assertion = next((e.assertion for s in c.evidence for e in ents
                          if e.type == EntityType.PROBLEM and e.start < s.end and s.start < e.end
                          and e.assertion in CONDITION_STATUS), Assertion.PRESENT)
        verification, clinical = CONDITION_STATUS[assertion]
        res: dict[str, Any] = {
            "resourceType": "Condition", "id": ctx.uuid("icd", c.code), "meta": ctx.meta("icd"),
            "extension": [_assertion(assertion), _confidence(c.confidence)],
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": verification}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
            "code": {"coding": [fhir_coding(f"ICD10CM:{c.code}", c.description)], "text": c.description},
            "subject": ctx.subject,
        }
        if clinical:
            res["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical}]}
        if c.evidence:
            res["evidence"] = [ctx.evidence(s.start, s.end) for s in c.evidence]
        yield res


def triage_observation(result: AgentResult[Any], ctx: FhirContext) -> Iterator[dict[str, Any]]:
    """Triage: one Observation of the acuity level (LOINC 75636-1 and its answer for ESI), red flags as
    components; ``final`` when routing accepted the result, else ``preliminary``."""
    t = result.output
    label = f"{t.scale}-{t.level}"
    if t.scale == "ESI":
        code = {"coding": [{"system": LOINC, "code": ESI_LOINC, "display": "Emergency severity index [ESI]"}],
                "text": "Emergency severity index"}
        value = {"coding": [{"system": LOINC, "code": ESI_ANSWERS[t.level], "display": label}], "text": label}
    else:
        code = {"text": "Korean Triage and Acuity Scale (KTAS)"}
        value = {"text": label}
    yield {
        "resourceType": "Observation", "id": ctx.uuid("triage"), "meta": ctx.meta("triage"),
        "extension": [_confidence(result.confidence)],
        "status": "final" if result.route is not None and result.route.value == "accept" else "preliminary",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": code, "subject": ctx.subject, "valueCodeableConcept": value,
        "derivedFrom": [{"reference": ctx.note_ref}],
        "component": [{"code": {"coding": [{"system": RED_FLAG_SYSTEM, "code": f.name}], "text": f.name},
                       "valueInteger": f.max_level} for f in t.red_flags],
    }


def summary_document(result: AgentResult[Any], ctx: FhirContext) -> Iterator[dict[str, Any]]:
    """Summary: a preliminary DocumentReference holding the summary text, transforming the note's."""
    text = result.output.text
    if not text:
        return
    yield {
        "resourceType": "DocumentReference", "id": ctx.uuid("summary"), "meta": ctx.meta("summarize"),
        "extension": [_confidence(result.confidence)], "status": "current", "docStatus": "preliminary",
        "type": {"text": "medslm summary of the note"}, "subject": ctx.subject,
        "relatesTo": [{"code": "transforms", "target": {"reference": ctx.note_ref}}],
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                                    "title": "summary"}}],
    }


def medication_statements(result: AgentResult[Any], ctx: FhirContext) -> Iterator[dict[str, Any]]:
    """A medication agent (:class:`medslm.export.results.MedicationMention` items): a MedicationStatement
    per mention, status from its assertion (negated: not-taken), the dose as dosage text."""
    for i, item in enumerate(medication_items(result.output)):
        m = medication_attrs(item)
        if m["assertion"] in (Assertion.FAMILY, Assertion.OTHER_PERSON):
            continue
        res: dict[str, Any] = {
            "resourceType": "MedicationStatement", "id": ctx.uuid("medication", i), "meta": ctx.meta("medication"),
            "extension": [_assertion(m["assertion"]), _confidence(m["confidence"]), ctx.derivation(m["start"], m["end"])],
            "status": MEDICATION_STATUS[m["assertion"]],
            "medicationCodeableConcept": _code(m["concepts"], m["text"]),
            "subject": ctx.subject, "derivedFrom": [{"reference": ctx.note_ref}],
        }
        dosage_text = " ".join(x for x in (m["dose"], m["frequency"]) if x)
        if dosage_text or m["route"]:
            res["dosage"] = [{k: v for k, v in (("text", dosage_text or None),
                                                ("route", {"text": m["route"]} if m["route"] else None)) if v}]
        yield res


#: agent name -> its FHIR renderer
FHIR_RENDERERS: dict[str, FhirRenderer] = {
    "ner": entity_resources,
    "icd": code_conditions,
    "triage": triage_observation,
    "summarize": summary_document,
    "medication": medication_statements,
}


# --------------------------------------------------------------------------- the bundle
def _note_document(review: ChartReview, ctx: FhirContext, include_text: bool) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": "text/plain; charset=utf-8", "title": f"note {review.note_id}"}
    if review.text is not None:
        data = review.text.encode("utf-8", "surrogatepass")
        attachment["size"] = len(data)
        attachment["hash"] = base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")  # FHIR: SHA-1
        if include_text:
            attachment["data"] = base64.b64encode(data).decode("ascii")
    return {"resourceType": "DocumentReference", "id": ctx.uuid("note"), "status": "current",
            "identifier": [{"system": NOTE_ID_SYSTEM, "value": review.note_id}], "subject": ctx.subject,
            "content": [{"attachment": attachment}]}


def _devices_and_provenance(ctx: FhirContext, results: Mapping[str, AgentResult[Any]]) -> list[dict[str, Any]]:
    from medslm import __version__

    def device_id(*key: str) -> str:  # one id per software / model, whatever the note: Bulk Data files share it
        return str(uuid.uuid5(_NAMESPACE, "|".join(("device", *key))))

    medslm_device = {"resourceType": "Device", "id": device_id("medslm", __version__),
                     "deviceName": [{"name": "medslm", "type": "user-friendly-name"}],
                     "version": [{"value": __version__}], "type": {"text": "clinical NLP software"}}
    out = [medslm_device]
    devices: dict[tuple[str, str, str], str] = {}
    for agent, refs in ctx.made.items():
        if not refs:
            continue
        p = results[agent].provenance
        key = (p.model_id or "medslm rules", p.model_revision or __version__, p.backend or "rules")
        if key not in devices:
            devices[key] = device_id(*key)
            out.append({"resourceType": "Device", "id": devices[key],
                        "deviceName": [{"name": key[0], "type": "model-name"}], "version": [{"value": key[1]}],
                        "type": {"text": f"language model ({key[2]})" if p.model_id else "rules"}})
        prov: dict[str, Any] = {
            "resourceType": "Provenance", "id": ctx.uuid("provenance", agent), "meta": ctx.meta(agent),
            "target": [{"reference": r} for r in refs], "recorded": ctx.recorded,
            "agent": [
                {"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                 "who": {"reference": f"urn:uuid:{devices[key]}", "display": f"{key[0]} {key[1]}"}},
                {"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler"}]},
                 "who": {"reference": f"urn:uuid:{medslm_device['id']}", "display": f"medslm {__version__} {agent}"}},
            ],
            "entity": [{"role": "source", "what": {"reference": ctx.note_ref}}],
        }
        if p.escalated:
            prov["reason"] = [{"text": f"escalated: {p.escalation_reason or 'low confidence'}"}]
        out.append(prov)
    return out


def _subject_of(subject: str | Mapping[str, str] | Callable[[str], str] | None, note_id: str) -> dict[str, Any]:
    if subject is None:
        return {"display": f"the patient of note {note_id}"}
    ref = subject(note_id) if callable(subject) else subject.get(note_id) if isinstance(subject, Mapping) else subject
    return {"reference": ref} if ref else {"display": f"the patient of note {note_id}"}


def to_fhir(
    review: ChartReview,
    *,
    subject: str | Mapping[str, str] | Callable[[str], str] | None = None,
    recorded: dt.datetime | None = None,
    include_text: bool = False,
    renderers: Mapping[str, FhirRenderer] | None = None,
) -> Any:
    """One note's FHIR R4 ``Bundle`` (type collection), every resource validated by ``fhir.resources``.

    ``subject``: the patient reference (``"Patient/123"``; a mapping or function of the note id); by
    default a display-only reference. ``recorded``: Provenance time (default: now, UTC).
    ``include_text``: put the note text in its DocumentReference (default: only its SHA-1 and size).
    Returns a ``fhir.resources.R4B.bundle.Bundle``; ``.model_dump_json()`` gives its JSON.
    """
    model = _require()
    when = (recorded or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    ctx = FhirContext(review, _subject_of(subject, review.note_id), when.isoformat())
    resources = [_note_document(review, ctx, include_text)]
    results = agent_results(review)
    table = FHIR_RENDERERS if renderers is None else renderers
    for agent, result in results.items():
        render = table.get(agent)
        if render is None:
            continue
        made = list(render(result, ctx))
        ctx.made[agent] = [f"urn:uuid:{r['id']}" for r in made]
        resources.extend(made)
    resources.extend(_devices_and_provenance(ctx, results))
    if review.status in (ReviewStatus.FAILED, ReviewStatus.BLOCKED):
        resources.append({"resourceType": "OperationOutcome", "id": ctx.uuid("outcome"), "issue": [{
            "severity": "error", "code": "processing" if review.status == ReviewStatus.FAILED else "security",
            "diagnostics": f"{review.status.value}: {review.reason or 'no reason given'}"}]})
    entries = []
    for res in resources:
        try:
            obj = model(res["resourceType"]).model_validate(res)
        except ValueError as exc:
            raise ExportError(f"note {review.note_id!r}: the {res['resourceType']} built for it is not valid "
                              f"FHIR R4 ({str(exc).splitlines()[0]}); this is a medslm bug, please report it") from None
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": obj})
    return model("Bundle")(id=ctx.uuid("bundle"), type="collection", timestamp=ctx.recorded,
                           identifier={"system": NOTE_ID_SYSTEM, "value": review.note_id},
                           meta={"tag": [{"system": f"{MEDSLM_FHIR}/review-status", "code": review.status.value}]},
                           entry=entries)


def fhir_json(resource: Any) -> str:
    """Compact JSON of a ``fhir.resources`` object (no nulls), one line."""
    return resource.model_dump_json(exclude_none=True)


@dataclass(frozen=True)
class FhirFiles:
    """What :func:`write_fhir` wrote: the files, and resources per type."""

    paths: list[Path]
    bundles: int
    resources: dict[str, int]


def write_fhir(reviews: ChartReview | Iterable[ChartReview], path: str | Path, **options: Any) -> FhirFiles:
    """Write FHIR NDJSON: ``*.ndjson`` -> one Bundle per line (one per note); a folder -> FHIR Bulk Data
    layout, one ``<ResourceType>.ndjson`` per type. Files are replaced atomically. ``options``: as
    :func:`to_fhir`."""
    items = [reviews] if isinstance(reviews, ChartReview) else list(reviews)
    path = Path(path)
    bulk = path.suffix.lower() != ".ndjson"
    lines: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for review in items:
        bundle = to_fhir(review, **options)
        for e in bundle.entry or []:
            rtype = e.resource.get_resource_type()
            if bulk and (rtype, e.resource.id) in seen:  # a Device shared by many notes: once
                continue
            seen.add((rtype, e.resource.id))
            counts[rtype] = counts.get(rtype, 0) + 1
            if bulk:
                lines.setdefault(rtype, []).append(fhir_json(e.resource))
        if not bulk:
            lines.setdefault("", []).append(fhir_json(bundle))
    if bulk:
        path.mkdir(parents=True, exist_ok=True)
        targets = {path / f"{t}.ndjson": ls for t, ls in sorted(lines.items())}
    else:
        targets = {path: lines.get("", [])}
    for target, ls in targets.items():
        _atomic_write(target, "".join(line + "\n" for line in ls))
    return FhirFiles(list(targets), len(items), counts)


def _atomic_write(path: Path, text: str) -> None:
    from medslm.graphs.io import atomic_file

    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def read_fhir_ndjson(path: str | Path) -> list[Any]:
    """Every line of an NDJSON file as a validated ``fhir.resources`` R4B object (Bundles or resources)."""
    model = _require()
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                data = json.loads(line)
                try:
                    out.append(model(data["resourceType"]).model_validate(data))
                except (ValueError, KeyError) as exc:
                    raise ExportError(f"{Path(path).name} line {n}: not a valid FHIR R4 resource "
                                      f"({type(exc).__name__})") from None
    return out


__all__ = [
    "CONDITION_STATUS",
    "FHIR_RENDERERS",
    "FHIR_VERSION",
    "MEDICATION_STATUS",
    "FhirContext",
    "FhirFiles",
    "code_conditions",
    "entity_resources",
    "fhir_json",
    "medication_statements",
    "read_fhir_ndjson",
    "summary_document",
    "to_fhir",
    "triage_observation",
    "write_fhir",
]
