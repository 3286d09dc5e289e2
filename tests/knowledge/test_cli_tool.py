"""The ``medslm kg`` CLI (through Typer's runner) and the LangGraph node / tool."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medslm.knowledge import KnowledgeGraph
from medslm.knowledge.tool import kg_tool, make_kg_lookup_node

runner = CliRunner()


def test_cli_lookup(kg: KnowledgeGraph) -> None:
    from medslm.cli.kg import app

    res = runner.invoke(app, ["lookup", "heart attack", "-s", "ICD10CM", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows[0]["id"] == "ICD10CM:I21.9" and rows[0]["score"] == 1.0 and rows[0]["billable"] is True
    assert len(rows) == 3
    res = runner.invoke(app, ["lookup", "SOB", "-s", "HPO", "-k", "1"])
    assert res.exit_code == 0 and "HP:0002094" in res.output and "Dyspnea" in res.output


def test_cli_show(kg: KnowledgeGraph) -> None:
    from medslm.cli.kg import app

    res = runner.invoke(app, ["show", "I21.4", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["label"] == "Non-ST elevation (NSTEMI) myocardial infarction"
    assert info["billable"] is True and info["parents"] == ["ICD10CM:I21"] and info["categories"] == ["CCSR:CIR009"]
    assert info["excludes1_codes"] == []
    e119 = json.loads(runner.invoke(app, ["show", "E11.9", "--json"]).output)
    assert {"E10", "E11.A", "O24.4"} <= set(e119["excludes1_codes"])  # its own note and E11's
    res = runner.invoke(app, ["show", "E11.9X"])
    assert res.exit_code == 1
    assert "nearest valid codes: E11.9" in res.output


def test_cli_build_with_fixture_sources(tmp_path, kg: KnowledgeGraph) -> None:
    from pathlib import Path

    from medslm.cli.kg import app

    fixtures = Path(__file__).parent / "fixtures"
    opts = ["--umls", str(fixtures / "umls"), "--snomed", str(fixtures / "snomed"), "--cache-dir", str(tmp_path),
            "--no-embedded"]
    res = runner.invoke(app, ["build", *opts])
    assert res.exit_code == 0, res.output
    assert "built in" in res.output and "SNOMEDCT 3" in res.output and "UMLS 3" in res.output
    assert list((tmp_path / "kg").glob("graph-*.signed"))
    res = runner.invoke(app, ["show", "SNOMEDCT:900000101", "--json", *opts])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["label"] == "Fixture myocardial infarction"
    assert {"ICD10CM:I21.9", "UMLS:C9000001"} <= set(info["crosswalks"])


def test_lookup_node_grounds_text(kg: KnowledgeGraph) -> None:
    from medslm.records import Note

    node = make_kg_lookup_node(kg, systems=("ICD10CM",))
    text = "Known HTN. Presents with chest pain."
    out = node({"note": Note(id="n1", text=text)})
    ents = out["entities"].output
    assert [(e.text, e.start, e.end) for e in ents] == [("HTN", 6, 9), ("chest pain", 25, 35)]
    assert ents[0].concepts[0].id == "ICD10CM:I10" and ents[1].concepts[0].id == "ICD10CM:R07.9"
    assert out["entities"].agent == "kg_lookup" and 0.8 <= out["entities"].confidence <= 1.0


def test_lookup_node_grounds_entities(kg: KnowledgeGraph) -> None:
    from medslm.records import AgentResult, ConceptRef, Entity, EntityType

    ner = AgentResult[list[Entity]](agent="ner", confidence=0.9, output=[
        Entity(start=0, end=12, text="heart attack", type=EntityType.PROBLEM, confidence=0.9),
        Entity(start=20, end=23, text="xyz", type=EntityType.PROBLEM, confidence=0.5,
               concepts=(ConceptRef(id="ICD10CM:R69", label="Illness, unspecified"),)),
    ])
    out = make_kg_lookup_node(kg, systems=("ICD10CM",))({"entities": ner})["entities"]
    assert out.agent == "ner"
    assert out.output[0].concepts[0].id == "ICD10CM:I21.9"
    assert out.output[1].concepts[0].id == "ICD10CM:R69"  # already grounded: kept


def test_tool(kg: KnowledgeGraph) -> None:
    tool = kg_tool(kg, k=2)
    assert tool.name == "lookup_concepts" and "text" in tool.args
    out = tool.invoke({"text": "shortness of breath", "system": "HPO"})
    assert [r["id"] for r in out][0] == "HP:0002094" and len(out) == 2
