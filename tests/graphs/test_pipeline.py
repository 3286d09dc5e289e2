"""The composition API: contract checks before any model loads, nodes of every kind, compiled graphs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medslm import GraphContractError, Note, Pipeline
from medslm.errors import UnknownNameError
from medslm.graphs.builders import chart_review_pipeline
from medslm.records import AgentResult, Route


def test_missing_input_names_node_and_field():
    pipe = Pipeline().add("guard_in").add("icd")  # icd reads entities; nobody writes them
    with pytest.raises(GraphContractError, match=r"node 'icd' reads 'entities', but no node writes it"):
        pipe.compile()


def test_read_written_only_later_is_reported():
    pipe = Pipeline().add("guard_in").add("icd").add("ner")
    with pytest.raises(GraphContractError, match=r"'icd' reads 'entities', but only 'ner' writes it, later"):
        pipe.check()


def test_conflicting_parallel_writes_without_reducer():
    def a(state):
        return {"text": "x"}

    def b(state):
        return {"text": "y"}

    pipe = Pipeline().add("guard_in").add(a, b, writes=["text"])
    with pytest.raises(GraphContractError, match=r"nodes 'a' and 'b' run in parallel and both write 'text'"):
        pipe.compile()


def test_parallel_writes_with_a_reducer_are_fine():
    def a(state):
        return {"issues": ["a"]}

    def b(state):
        return {"issues": ["b"]}

    graph = Pipeline().add(a, b, writes=["issues"]).compile()
    out = graph.invoke({"note": Note(id="n1", text="t")})
    assert sorted(out["issues"]) == ["a", "b"]


def test_unknown_node_did_you_mean():
    with pytest.raises(UnknownNameError, match=r"unknown node 'trige'; did you mean 'triage'\?"):
        Pipeline().add("guard_in").add("trige")
    with pytest.raises(UnknownNameError, match=r"did you mean 'ner'"):
        chart_review_pipeline().insert(lambda s: {}, after="nerr", name="x", writes=["issues"])


def test_function_node_must_declare_writes():
    def check(state):
        return {}

    with pytest.raises(GraphContractError, match=r"function node 'check' must declare what it writes"):
        Pipeline().add(check)


def test_building_is_instant_and_loads_no_model():
    code = (
        "import sys, time; t = time.perf_counter(); import medslm; g = medslm.chart_review(); "
        "p = medslm.graphs.builders.chart_review_pipeline(); p.mermaid(); "
        "print(round(time.perf_counter() - t, 2), sorted(m for m in ('torch', 'transformers', 'ray', 'spacy', 'outlines') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert out[1].strip() == "[]"
    assert float(out[0]) < 10  # import of langgraph included; no model, no KG


def test_chart_review_shape_mermaid_and_summary():
    pipe = chart_review_pipeline()
    graph = pipe.compile()
    assert set(graph.get_graph().nodes) >= {"guard_in", "ner", "icd", "triage", "summarize", "verify", "route",
                                            "escalate", "review", "guard_out"}
    mermaid = pipe.mermaid()
    # local models: the three agents run one after the other (branches only add LangGraph's thread pool)
    assert "ner --> icd;" in mermaid and "icd --> triage;" in mermaid and "triage --> summarize;" in mermaid
    fanned = chart_review_pipeline(parallel=True).mermaid()
    assert "ner --> icd;" in fanned and "ner --> triage;" in fanned and "ner --> summarize;" in fanned
    remote = chart_review_pipeline(summarize="openai:http://127.0.0.1:9/v1#m").mermaid()
    assert "ner --> summarize;" in remote  # an endpoint among them: parallel by default
    assert "guard_in -.-> __end__;" in mermaid  # blocked / failed notes stop after guard_in
    assert "route -.-> escalate;" in mermaid and "route -.-> review;" in mermaid
    assert "summarize --> medication;" in mermaid  # a registered agent (chart_review=True) joins by itself
    lines = pipe.describe().splitlines()
    assert len(lines) == 11
    assert lines[2].startswith("icd [builtin] model=settings: reads note, entities")
    assert "writes codes" in lines[2]


def test_per_node_model_and_policy_in_summary():
    class Strict:
        def decide(self, result):
            return Route.REVIEW

    pipe = Pipeline().add("guard_in").add("triage", model="transformers:/models/x", policy=Strict()).add("route")
    line = pipe.describe().splitlines()[1]
    assert line == "triage [builtin] model=transformers:/models/x policy=Strict: reads note, text?, entities? -> writes triage"


class _Echo:
    """A user's agent (fits the Agent protocol without inheriting)."""

    name = "echo"

    def run(self, note, state):
        return AgentResult(agent="echo", output=len(note.text), confidence=1.0)


def test_agent_object_and_function_nodes_with_gate_and_new_fields():
    def shout(state):
        return {"loud": state["echo"].output * 2}

    calls = []

    def never(state):
        calls.append(1)
        return {"issues": ["ran"]}

    graph = (
        Pipeline(name="demo")
        .add(_Echo())
        .add(shout, reads=["echo"], writes=["loud"], gate=lambda s: s["loud"] < 10)
        .add(never, writes=["issues"])
        .compile()
    )
    out = graph.invoke({"note": Note(id="n", text="abcdefgh")})
    assert out["echo"].output == 8 and out["loud"] == 16
    assert calls == []  # the gate ended the run
    out = graph.invoke({"note": Note(id="n", text="ab")})
    assert out["loud"] == 4 and out["issues"] == ["ran"]


def test_when_skips_a_stage():
    def a(state):
        return {"issues": ["a"]}

    def b(state):
        return {"issues": ["b"]}

    def c(state):
        return {"issues": ["c"]}

    graph = Pipeline().add(a, writes=["issues"]).add(b, writes=["issues"], when=lambda s: False) \
        .add(c, writes=["issues"]).compile()
    assert graph.invoke({"note": Note(id="n", text="t")})["issues"] == ["a", "c"]


def test_a_crashing_node_fails_only_its_note_without_text_in_reason():
    def boom(state):
        raise ValueError(f"secret {state['note'].text}")

    from medslm.graphs.builders import review

    graph = Pipeline().add(boom, writes=["issues"]).compile()
    r = review(Note(id="n9", text="PATIENT JOHN SMITH"), graph)
    assert r.status.value == "failed"
    assert r.reason.startswith("boom: ValueError") and "JOHN" not in r.reason


KG_NOTE = "Essential hypertension. Type 2 diabetes mellitus without complications. Denies fever."


def test_kg_lookup_alone_grounds_lexicon_matches_in_the_embedded_kg():
    from medslm.graphs.builders import review

    graph = Pipeline(name="kg").add("guard_in").add("kg_lookup").compile()
    r = review(Note(id="k1", text=KG_NOTE), graph)
    assert r.status.value == "ok", r.reason
    assert r.entities.agent == "kg_lookup"
    got = {KG_NOTE[e.start : e.end]: {c.id for c in e.concepts} for e in r.entities.output}
    assert "ICD10CM:I10" in got["Essential hypertension"]
    assert "ICD10CM:E11.9" in got["Type 2 diabetes mellitus without complications"]
    assert {"ICD10CM:R50.9", "HP:0001945"} <= got["fever"]


class _BareNer:
    """A user's NER without concepts: kg_lookup after it fills them in, keeping spans and assertions."""

    name = "ner"

    def run(self, note, state):
        from medslm.records import Entity

        spans = [("Essential hypertension", "present"), ("fever", "negated"), ("zorblax", "present")]
        ents = [Entity(start=note.text.index(w), end=note.text.index(w) + len(w), text=w, type="problem",
                       assertion=a, confidence=0.9) for w, a in spans if w in note.text]
        return AgentResult(agent="ner", output=ents, confidence=0.9)


def test_kg_lookup_after_ner_fills_concepts_and_keeps_assertions():
    from medslm.graphs.builders import review

    text = KG_NOTE + " Zorblax noted."
    graph = Pipeline().add(_BareNer()).add("kg_lookup").compile()
    r = review(Note(id="k2", text=text.replace("Zorblax", "zorblax")), graph)
    assert r.status.value == "ok", r.reason
    by_text = {e.text: e for e in r.entities.output}
    assert [e.text for e in r.entities.output] == ["Essential hypertension", "fever", "zorblax"]
    assert "ICD10CM:I10" in {c.id for c in by_text["Essential hypertension"].concepts}
    assert by_text["fever"].assertion.value == "negated" and by_text["fever"].concepts
    assert by_text["zorblax"].concepts == ()  # no such concept: nothing invented


def test_kg_lookup_beside_ner_is_a_conflicting_parallel_write():
    with pytest.raises(GraphContractError, match=r"nodes 'ner' and 'kg_lookup' run in parallel and both write 'entities'"):
        Pipeline().add("guard_in").add("ner", "kg_lookup").compile()


def test_cli_runs_a_users_graph_module(tmp_path, monkeypatch):
    """``medslm review IN -o OUT --graph mymodule:build`` with a module of the user's, unchanged."""
    import json

    from typer.testing import CliRunner

    from medslm.cli import app

    (tmp_path / "mygraphs.py").write_text(
        "from medslm import Pipeline\n\n"
        "def word_count(state):\n"
        "    return {'issues': [f\"words: {len(state['note'].text.split())}\"]}\n\n"
        "def build(settings):\n"
        "    return Pipeline(name='mine', settings=settings).add('guard_in').add(word_count, writes=['issues']).compile()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MEDSLM_MODEL_GUARDIAN", "rules")
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "one two three"}\n{"id": "b", "text": ""}\n{"id": "c", "text": "four five"}\n')
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["review", str(src), "-o", str(out), "--graph", "mygraphs:build", "--quiet", "--no-show"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["note_id"], r["status"]) for r in rows] == [("a", "ok"), ("b", "failed"), ("c", "ok")]
    assert rows[0]["issues"] == ["words: 3"] and rows[2]["issues"] == ["words: 2"]
    assert "3 notes (3 reviewed" in res.output and "failures by reason: " in res.output
