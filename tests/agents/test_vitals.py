"""Vital signs read from free text, with the spans they came from."""

from __future__ import annotations

import pytest

from medslm.agents.vitals import extract_vitals

NOTE = ("58 yo F with chest pain for 2 days, pain 7/10. Vitals: T 101.2F, HR 110, BP 100/60, RR 22, "
        "O2 sat 93% on room air. Confused.")


def test_reads_every_vital_with_its_span() -> None:
    v = extract_vitals(NOTE)
    assert v.value("sbp") == 100 and v.value("dbp") == 60
    assert v.value("hr") == 110
    assert v.value("rr") == 22
    assert v.value("spo2") == 93
    assert v.value("temp_c") == pytest.approx(38.4, abs=0.05)  # 101.2 F converted
    assert v.value("pain") == 7
    assert v.value("age") == 58
    assert v.value("sex") == 1
    assert v.value("mental") == 2  # confused -> responds to voice
    assert v.hr is not None and v.hr.span.text_of(NOTE) == "HR 110"
    assert v.spo2 is not None and v.spo2.span.text_of(NOTE).startswith("O2 sat 93")


def test_negated_confusion_and_implausible_values_are_ignored() -> None:
    v = extract_vitals("Alert, not confused. HR 900, SpO2 97%, GCS 15.")
    assert v.value("mental") == 1
    assert v.hr is None  # 900 is not a heart rate
    assert v.value("spo2") == 97 and v.value("gcs") == 15


def test_chest_pain_duration_is_not_a_pain_score() -> None:
    v = extract_vitals("Chest pain 2 days, BP 120/80.")
    assert v.pain is None
    assert v.value("sbp") == 120


def test_unresponsive_and_gcs() -> None:
    v = extract_vitals("Found unresponsive, GCS 6, SpO2 85.")
    assert v.value("mental") == 4 and v.value("gcs") == 6 and v.value("spo2") == 85
