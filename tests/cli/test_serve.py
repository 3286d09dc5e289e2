"""`medslm serve` on a real socket (127.0.0.1, free port), with the real chart-review graph."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request

import pytest

from medslm.cli.serve import make_server

CANARY = "Zebulon Quixfeather"


@pytest.fixture(scope="module")
def server():
    srv = make_server("127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_review_over_http(server, caplog):
    with urllib.request.urlopen(server + "/health", timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"
    text = (f"Patient {CANARY} presents with chest pain and shortness of breath. BP 150/95, HR 110. "
            "Denies fever. History of hypertension.")
    with caplog.at_level(logging.DEBUG):
        code, body = _post(server + "/review", json.dumps({"id": "n1", "text": text}).encode())
    assert code == 200
    assert body["note_id"] == "n1" and body["status"] in ("ok", "needs_review")
    assert 1 <= body["results"]["triage"]["output"]["level"] <= 5
    assert CANARY not in caplog.text  # the body is never logged


def test_bad_requests_are_typed(server):
    assert _post(server + "/review", b"{not json")[0] == 400
    code, body = _post(server + "/review", json.dumps({"id": "x"}).encode())
    assert code == 400 and "text" in body["message"]
    code, body = _post(server + "/review", json.dumps({"id": "e", "text": "   "}).encode())
    assert code == 200 and body["status"] == "failed" and "empty" in body["reason"]
    assert _post(server + "/nope", b"{}")[0] == 404
