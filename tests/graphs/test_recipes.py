"""The three pipelines of docs/pipelines.md, run as written, with the real embedded model and agents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import medslm
from medslm import Note

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


def _recipes() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _run(code: str, notes: list[Note]) -> dict:
    ns = {"notes": notes, "medslm": medslm}
    exec(compile(code, str(DOC), "exec"), ns)
    return ns


def test_each_recipe_is_at_most_15_lines():
    recipes = _recipes()
    assert len(recipes) == 3
    for code in recipes:
        lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        assert len(lines) <= 15, code


COHORT = [
    Note(id="p1", text="History of type 2 diabetes mellitus and hypertension. No chest pain. Denies fever."),
    Note(id="p2", text="Admitted with pneumonia. No history of diabetes. Mother had breast cancer."),
]


def test_cohort_recipe_table_is_negation_aware():
    table = _run(_recipes()[0], COHORT)["table"]
    assert set(table.index) <= {"p1", "p2"}
    cols = [c.lower() for c in table.columns]
    p1 = {c.lower() for c in table.columns[table.loc["p1"] == 1]} if "p1" in table.index else set()
    assert any("diabet" in c for c in p1), cols
    p2 = {c.lower() for c in table.columns[table.loc["p2"] == 1]} if "p2" in table.index else set()
    assert not any("diabet" in c for c in p2)  # "No history of diabetes": negated
    assert not any("breast" in c for c in p2)  # family history is not the patient's
    assert not any("chest pain" in c or "fever" in c for c in p1)


ED = [
    Note(id="e1", text="ED triage. 70 yo man, BP 82/50, HR 134, RR 30, SpO2 85% on room air, confused."),
    Note(id="e2", text="ED triage. 25 yo woman, twisted ankle yesterday, walking. BP 120/78, HR 76, SpO2 99%."),
]


def test_ed_queue_recipe_reviews_urgent_notes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSLM_REVIEW_QUEUE", str(tmp_path / "queue.sqlite"))
    ns = _run(_recipes()[1], ED)
    urgent, minor = ns["queue"]
    assert urgent.triage.output.level <= 2
    assert urgent.status.value == "needs_review" and len(urgent.review_items) == 1
    assert minor.triage.output.level >= 3
    if minor.triage.confidence >= 0.6:
        assert minor.status.value == "ok" and minor.review_items == ()
    assert set(ns["graph"].get_graph().nodes) == {"__start__", "guard_in", "triage", "route", "review", "__end__"}


@pytest.mark.slow
def test_chart_review_with_dose_checker(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSLM_REVIEW_QUEUE", str(tmp_path / "queue.sqlite"))
    ns = _run(_recipes()[2], [])
    note = Note(id="d1", text="Clinic note. Type 2 diabetes mellitus. Takes metformin 3000 mg daily and "
                              "lisinopril 20 mg daily. BP 150/95.")
    r = medslm.review(note, ns["graph"])
    assert r.status.value != "failed", r.reason
    assert "dose_check: metformin 3000 mg is over the daily maximum" in r.issues
    assert not any("lisinopril" in i for i in r.issues)
    assert r.codes is not None and r.summary is not None and r.triage is not None
