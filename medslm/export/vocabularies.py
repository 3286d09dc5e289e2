"""Where a knowledge-graph concept id (``ICD10CM:I21.4``, ``HP:0002094``) goes in OMOP and in FHIR.

A medslm concept id is ``PREFIX:code``. OMOP names the source vocabulary by its ``vocabulary_id``
(Athena: ``ICD10CM``, ``HPO``, ``SNOMED``, ``RxNorm``…); FHIR names it by a code-system URI. Only
vocabularies with a published identifier are listed; any other prefix keeps its own name in OMOP and a
``urn:medslm:kg:PREFIX`` system in FHIR, so nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeSystem:
    """One source vocabulary: the medslm id prefix, OMOP's vocabulary_id and FHIR's system URI."""

    prefix: str
    omop_vocabulary: str
    fhir_system: str
    #: FHIR codes of this system carry the prefix (HPO's codes are written ``HP:0002094``)
    fhir_code_has_prefix: bool = False


#: medslm id prefix -> code system. FHIR URIs: HL7 terminology (ICD-10-CM, ICD-10, ICD-9-CM, SNOMED CT,
#: LOINC, RxNorm, UMLS); HPO's as used by HL7's genomics guides (http://human-phenotype-ontology.org).
SYSTEMS: dict[str, CodeSystem] = {
    s.prefix: s
    for s in (
        CodeSystem("ICD10CM", "ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm"),
        CodeSystem("ICD10WHO", "ICD10", "http://hl7.org/fhir/sid/icd-10"),
        CodeSystem("ICD9CM", "ICD9CM", "http://hl7.org/fhir/sid/icd-9-cm"),
        CodeSystem("HP", "HPO", "http://human-phenotype-ontology.org", fhir_code_has_prefix=True),
        CodeSystem("SNOMEDCT", "SNOMED", "http://snomed.info/sct"),
        CodeSystem("LOINC", "LOINC", "http://loinc.org"),
        CodeSystem("RXNORM", "RxNorm", "http://www.nlm.nih.gov/research/umls/rxnorm"),
        CodeSystem("UMLS", "UMLS", "http://www.nlm.nih.gov/research/umls"),
    )
}


def split_concept_id(concept_id: str) -> tuple[str, str]:
    """``"ICD10CM:I21.4"`` -> ``("ICD10CM", "I21.4")``; ``"HP:0002094"`` -> ``("HP", "0002094")``."""
    prefix, sep, code = concept_id.partition(":")
    if not sep or not prefix or not code:
        return "", concept_id
    return prefix.upper(), code


def system_of(concept_id: str) -> CodeSystem:
    """The code system of a concept id; an unlisted prefix gets a ``urn:medslm:kg:`` system."""
    prefix, _ = split_concept_id(concept_id)
    known = SYSTEMS.get(prefix)
    if known is not None:
        return known
    name = prefix or "UNKNOWN"
    return CodeSystem(name, name, f"urn:medslm:kg:{name}")


def omop_source(concept_id: str) -> tuple[str, str]:
    """``(vocabulary_id, concept_code)`` as OMOP's CONCEPT table would hold it: ``("HPO", "HP:0002094")``."""
    system = system_of(concept_id)
    _, code = split_concept_id(concept_id)
    return system.omop_vocabulary, f"{system.prefix}:{code}" if system.fhir_code_has_prefix else code


def fhir_coding(concept_id: str, display: str | None = None) -> dict[str, str]:
    """A FHIR Coding (as JSON) for a concept id."""
    system = system_of(concept_id)
    _, code = split_concept_id(concept_id)
    coding = {"system": system.fhir_system, "code": f"{system.prefix}:{code}" if system.fhir_code_has_prefix else code}
    if display:
        coding["display"] = display
    return coding


def concept_id_of_coding(system: str, code: str) -> str:
    """The medslm concept id of a FHIR Coding: the inverse of :func:`fhir_coding`."""
    for s in SYSTEMS.values():
        if s.fhir_system == system:
            return code if s.fhir_code_has_prefix else f"{s.prefix}:{code}"
    if system.startswith("urn:medslm:kg:"):
        return f"{system.removeprefix('urn:medslm:kg:')}:{code}"
    raise KeyError(system)


__all__ = ["SYSTEMS", "CodeSystem", "concept_id_of_coding", "fhir_coding", "omop_source", "split_concept_id",
           "system_of"]
