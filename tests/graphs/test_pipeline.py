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
    assert "ner --> icd;" in mermaid and "ner --> triage;" in mermaid and "ner --> summarize;" in mermaid
    assert "guard_in -.-> __end__;" in mermaid  # blocked / failed notes stop after guard_in
    assert "route -.-> escalate;" in mermaid and "route -.-> review;" in mermaid
    lines = pipe.describe().splitlines()
    assert len(lines) == 10
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
