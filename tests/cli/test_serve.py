"""`medslm serve` (Starlette on uvicorn) on a real socket: the real chart-review graph over HTTP, typed JSON
errors without note text, the bearer token and Origin checks, and a small load test (concurrent, idle,
slow and malformed clients: every request answered, the server alive). ``bench/serve.py`` is the full one."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import httpx
import pytest
from typer.testing import CliRunner

from medslm.cli.serve import ServeOptions, ServerThread, create_app
from medslm.graphs.builders import triage_rules
from medslm.settings import Settings

CANARY = "Zebulon Quixfeather"
TOKEN = "test-token"
H = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CHEAP = Settings(max_note_chars=20_000).with_models(guardian="rules")


@pytest.fixture(scope="module")
def full_server():
    with ServerThread(create_app(Settings(), options=ServeOptions(token=TOKEN))) as srv:
        yield srv


@pytest.fixture(scope="module")
def cheap_server():
    opts = ServeOptions(token=TOKEN, max_body=50_000, concurrency=2, queue=64, read_timeout=1.5)
    with ServerThread(create_app(CHEAP, graph=triage_rules(CHEAP), options=opts)) as srv:
        yield srv


def test_health_and_review_over_http(full_server, caplog):
    assert httpx.get(full_server.url + "/health").json()["status"] == "ok"
    text = (f"Patient {CANARY} presents with chest pain and shortness of breath. BP 150/95, HR 110. "
            "Denies fever. History of hypertension.")
    with caplog.at_level(logging.DEBUG):
        r = httpx.post(full_server.url + "/review", headers=H, content=json.dumps({"id": "n1", "text": text}),
                       timeout=600)
    body = r.json()
    assert r.status_code == 200
    assert body["note_id"] == "n1" and body["status"] in ("ok", "needs_review")
    assert 1 <= body["results"]["triage"]["output"]["level"] <= 5
    assert body["text"] is None  # serve keeps no note text by default
    assert CANARY not in caplog.text  # the body is never logged


def test_bad_requests_get_typed_json_errors_without_note_text(cheap_server):
    u = cheap_server.url + "/review"
    cases = {
        b"{not json " + CANARY.encode(): (400, "bad_json"),
        json.dumps({"id": "x", "note": CANARY}).encode(): (400, "bad_request"),
        b"[" * 40_000: (400, "bad_json"),
        b'{"id": "s", "text": "\\ud800 ' + CANARY.encode() + b'"}': (400, "bad_encoding"),
        b'{"id": "a\\u0001b", "text": "pain"}': (400, "bad_id"),
        b'{"text": "' + b"a" * 60_000 + b'"}': (413, "too_large"),
    }
    for body, (code, err) in cases.items():
        r = httpx.post(u, headers=H, content=body)
        assert (r.status_code, r.json()["error"]) == (code, err), body[:40]
        assert CANARY not in r.text
    r = httpx.post(u, headers=H, content=json.dumps({"id": "e", "text": "   "}))
    assert r.status_code == 200 and r.json()["status"] == "failed" and "empty" in r.json()["reason"]
    assert httpx.post(cheap_server.url + "/nope", headers=H, content=b"{}").json()["error"] == "not_found"


def test_token_origin_and_content_type_are_enforced(cheap_server):
    u = cheap_server.url + "/review"
    ok = json.dumps({"text": "Chest pain."})
    assert httpx.post(u, content=ok, headers={"Content-Type": "application/json"}).status_code == 401
    assert httpx.post(u, content=ok, headers={**H, "Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(u, content=ok, headers={**H, "Origin": "https://evil.example"}).status_code == 403
    assert httpx.post(u, content=ok, headers={**H, "Content-Type": "text/plain"}).status_code == 415
    a = httpx.post(u, content=ok, headers=H).json()["note_id"]
    b = httpx.post(u, content=ok, headers=H).json()["note_id"]
    assert a.startswith("srv-") and b.startswith("srv-") and a != b  # generated ids are unique


def test_serve_refuses_a_public_interface_without_a_token(monkeypatch):
    from medslm.cli import app

    monkeypatch.delenv("MEDSLM_SERVE_TOKEN", raising=False)
    res = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert res.exit_code == 2 and "without a token" in res.output


async def _status(port: int, head: bytes, body: bytes = b"", trickle: float = 0.0) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def feed() -> None:
        try:
            writer.write(head)
            for i in range(len(body)):
                writer.write(body[i : i + 1] if trickle else body[i:])
                await writer.drain()
                if not trickle:
                    break
                await asyncio.sleep(trickle)
            await writer.drain()
        except (ConnectionError, OSError):
            pass

    task = asyncio.create_task(feed())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        task.cancel()
        writer.close()
    return int(line.split()[1]) if line else -2


def _head(body: bytes, length: str | None = None) -> bytes:
    return (f"POST /review HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {length or len(body)}\r\n\r\n").encode()


def test_small_load_concurrent_idle_slow_and_malformed_clients(cheap_server):
    port = cheap_server.port
    good = json.dumps({"text": "72M chest pain, BP 88/50, SpO2 89%."}).encode()

    async def scenario() -> dict[str, list[int]]:
        idle = []
        for _ in range(40):  # half a header each, held open: they cost the server no thread
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /review HTTP/1.1\r\nHost: x\r\n")
            idle.append(w)
        out = {
            "concurrent": await asyncio.gather(*[_status(port, _head(good), good) for _ in range(40)]),
            "slow": await asyncio.gather(*[_status(port, _head(good), good, trickle=1.0) for _ in range(4)]),
            "malformed": await asyncio.gather(
                _status(port, _head(good, "-1"), good), _status(port, _head(good, "abc"), good),
                _status(port, _head(b"{}", "99999999999"), b"{}"), _status(port, _head(b"[" * 30_000), b"[" * 30_000),
                _status(port, _head(b'{"text": "caf\xe9"}'), b'{"text": "caf\xe9"}')),
        }
        for w in idle:
            w.close()
        return out

    out = asyncio.run(scenario())
    assert out["concurrent"] == [200] * 40
    assert out["slow"] == [408] * 4
    assert out["malformed"] == [400, 400, 413, 400, 400]
    assert httpx.get(cheap_server.url + "/health").status_code == 200  # still up
    with socket.create_connection(("127.0.0.1", port)):
        pass
