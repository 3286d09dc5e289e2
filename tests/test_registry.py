"""medslm.registry: a toy agent installed as a package (a dist-info with a ``medslm.agents`` entry point)
is found by the registry and its result reaches ChartReview.results, JSON, the terminal forms, the HTML,
CSV / Parquet rows and ``medslm eval`` without any medslm file knowing it."""

from __future__ import annotations

import json
import textwrap

import pytest

from medslm import registry
from medslm.errors import ConfigurationError, UnknownNameError
from medslm.records import AgentResult, ChartReview, ReviewStatus, TriageResult

TOY_PACKAGE = '''
"""A toy medslm agent: counts the words of a note that name a colour."""
from __future__ import annotations

import html
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from medslm.evals.harness import TaskSpec
from medslm.records import AgentResult, Span
from medslm.registry import AgentSpec

COLOURS = ("red", "green", "blue", "yellow")


class Colours(BaseModel):
    model_config = ConfigDict(frozen=True)
    names: tuple[str, ...]
    spans: tuple[Span, ...]


class ColourAgent:
    name = "colours"

    def __init__(self, model="embedded", **options):
        self.model = model

    def run(self, note, state):
        import re

        found = [m for m in re.finditer(r"[A-Za-z]+", note.text) if m.group().lower() in COLOURS]
        spans = tuple(Span(start=m.start(), end=m.end(), label="colour") for m in found)
        out = Colours(names=tuple(m.group().lower() for m in found), spans=spans)
        return AgentResult(agent="colours", output=out, confidence=0.9 if found else 0.6, evidence=spans)


def text(result, note_text):
    return [f"Colours: {', '.join(result.output.names) or 'none'} (toy plug-in)"]


def html_section(result, note_text):
    return "<h4>Colours</h4><p class='toy-colours'>" + html.escape(" ".join(result.output.names)) + "</p>"


def row(result):
    return {"colours": " ".join(result.output.names), "n_colours": len(result.output.names)}


def cell(result):
    return "toy colours: " + (", ".join(result.output.names) or "none")


def _load(data_dir, n):
    rows = [json.loads(line) for line in (Path(data_dir) / "colours.jsonl").read_text().splitlines()]
    return [(r["id"], r["text"], r["n"]) for r in rows[:n]]


def _pred(review):
    result = review.results.get("colours")
    return len(result.output.names) if result is not None else None


def _score(golds, preds):
    return {"accuracy": sum(g == p for g, p in zip(golds, preds)) / max(1, len(golds))}


TASK = TaskSpec("colours", "colours", "toy colours (written for the test)", None, None, "accuracy",
                _load, _pred, _score)

SPEC = AgentSpec(name="colours", output=Colours, factory=ColourAgent, label="Colours",
                 description="colour words (a toy plug-in)", text=text, html=html_section, row=row,
                 columns=("colours", "n_colours"), cell=cell, eval_task=TASK, train_recipes=("colours-none",))
'''


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """Install the toy package as a distribution on sys.path (what pip would leave in site-packages)."""
    site = tmp_path / "site"
    pkg = site / "toy_colours"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(TOY_PACKAGE))
    dist = site / "toy_colours-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-colours\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[medslm.agents]\ncolours = toy_colours:SPEC\n")
    monkeypatch.syspath_prepend(str(site))
    registry.AGENTS.load_plugins(reload=True)
    yield registry.get("colours")
    registry.AGENTS.unregister("colours")


def _settings():
    from medslm.settings import Settings

    return Settings().with_models(guardian="rules")


NOTE = "Red rash on the left arm, green sputum. Patient wears a blue gown."


def test_entry_point_agent_reaches_every_output(toy_plugin, tmp_path):
    from rich.console import Console

    from medslm.cli.review import review_table
    from medslm.display import review_html, review_text
    from medslm.graphs.builders import chart_review, review
    from medslm.graphs.io import write_reviews

    assert toy_plugin.factory.__module__ == "toy_colours"
    assert "colours" in registry.AGENTS.names()
    graph = chart_review(_settings(), agents=["colours"])
    r = review(NOTE, graph, note_id="toy-1")
    assert r.status in (ReviewStatus.OK, ReviewStatus.NEEDS_REVIEW), r.reason
    got = r.results["colours"]
    assert got.output.names == ("red", "green", "blue")
    assert [NOTE[s.start:s.end] for s in got.output.spans] == ["Red", "green", "blue"]
    assert got.route is not None  # route saw it like a built-in agent

    again = ChartReview.model_validate_json(r.model_dump_json())
    assert again == r and type(again.results["colours"].output).__name__ == "Colours"  # typed by its spec

    assert "Colours: red, green, blue (toy plug-in)" in review_text(r) and str(r) == review_text(r)
    assert "<p class='toy-colours'>red green blue</p>" in review_html(r)
    console = Console(width=200, record=True)
    console.print(review_table(r))
    assert "toy colours: red, green, blue" in console.export_text()

    empty = ChartReview(note_id="n0", status=ReviewStatus.FAILED, reason="empty_note")
    write_reviews([r, empty], tmp_path / "out.csv")
    write_reviews([r, empty], tmp_path / "out.parquet")
    import csv

    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert rows[0]["colours"] == "red green blue" and rows[0]["n_colours"] == "3"
    assert rows[1]["colours"] == ""
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("n_colours").to_pylist() == [3, None]
    assert ChartReview.model_validate_json(table.column("review_json").to_pylist()[0]) == r


def test_entry_point_agent_in_medslm_eval(toy_plugin, tmp_path):
    from typer.testing import CliRunner

    from medslm.cli import app
    from medslm.evals.harness import all_tasks, run_eval

    data = tmp_path / "data"
    data.mkdir()
    notes = [("c1", "red and blue", 2), ("c2", "no colour here", 0), ("c3", "green", 1), ("c4", "Yellow red", 3)]
    (data / "colours.jsonl").write_text("\n".join(json.dumps({"id": i, "text": t, "n": n}) for i, t, n in notes))
    assert "colours" in all_tasks()
    out = run_eval("colours", data, limit=4, probe=4, systems=("slm",), task_eval=False, n_boot=20,
                   settings=_settings())
    slm = out["tasks"]["colours"]["systems"]["slm"]
    assert slm["n"] == 4 and slm["metrics"]["accuracy"] == 0.75  # c4 has 2 colour words, not 3

    res = CliRunner().invoke(app, ["eval", "--task", "colours", "--data", str(data), "--limit", "4", "--probe", "4",
                                   "--system", "slm", "--no-task-eval", "--bootstrap", "20", "--out",
                                   str(tmp_path / "reports"), "--quiet"], env={"MEDSLM_MODEL_GUARDIAN": "rules"})
    assert res.exit_code == 0, res.output
    assert "colours" in res.output and "0.75" in res.output
    assert json.loads((tmp_path / "reports" / "results.json").read_text())["tasks"]["colours"]["systems"]["slm"]["n"] == 4


def test_builtin_specs_and_lookup_errors():
    names = [s.name for s in registry.AGENTS.builtins()]
    assert names[:4] == ["ner", "icd", "triage", "summarize"]
    assert registry.get("icd").field == "codes" and registry.get("icd").reads == ("entities",)
    assert registry.for_field("summary").name == "summarize"
    with pytest.raises(UnknownNameError, match="did you mean 'triage'"):
        registry.get("triag")
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register(registry.with_spec(registry.get("ner"), label="Other"))
    with pytest.raises(ConfigurationError, match="already writes"):
        registry.register(registry.with_spec(registry.get("ner"), name="ner2"))
    assert "ner2" not in registry.AGENTS


def test_broken_plugin_fails_with_its_name(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[medslm.agents]\nbroken = no_such_module_xyz:SPEC\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        with pytest.raises(ConfigurationError, match=r"agent plug-in 'broken' \(no_such_module_xyz:SPEC\) failed"):
            registry.AGENTS.load_plugins(reload=True)
    finally:
        monkeypatch.undo()
        registry.AGENTS.load_plugins(reload=True)


def test_old_single_field_json_still_loads():
    old = {"note_id": "n1", "status": "ok", "triage": {"agent": "triage", "output": {"level": 2, "probabilities":
           {"1": 0.3, "2": 0.7}}, "confidence": 0.7}, "codes": None}
    r = ChartReview.model_validate_json(json.dumps(old))
    assert list(r.results) == ["triage"] and isinstance(r.triage.output, TriageResult)
    assert r.triage.output.probabilities == {1: 0.3, 2: 0.7}
    made = ChartReview(note_id="n1", status="ok", triage=AgentResult(agent="triage", output=TriageResult(level=2),
                                                                      confidence=0.5))
    assert made.results["triage"].output.level == 2 and made.codes is None
    assert ChartReview.model_validate_json(made.model_dump_json()) == made
    assert "triage" not in json.loads(made.model_dump_json())  # written in the new shape only
