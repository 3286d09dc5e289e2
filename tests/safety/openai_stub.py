"""A recording OpenAI-compatible server on 127.0.0.1 (stdlib), for tests of what bytes leave the process.

It keeps every request body it receives (``.bodies``) and answers each request in the format its
constraint asks for, so agents run through: a JSON-schema ``response_format`` gets the smallest instance
of the schema, a choice (vLLM ``structured_outputs.choice``, OpenAI enum schema, llama.cpp grammar) gets
its first option, a vLLM regex gets ``sentence`` when it matches, and every answer carries token
log-probabilities. It is not a language model: only the *requests* are under test.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def instance(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """The smallest JSON value valid under ``schema`` (the subset pydantic emits)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return instance(schema[key][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = typ[0]
    if typ == "object":
        props = schema.get("properties", {})
        return {k: instance(props[k], defs) for k in schema.get("required", list(props))}
    if typ == "array":
        return [instance(schema.get("items", {}), defs) for _ in range(int(schema.get("minItems", 0)))]
    if typ == "string":
        return "x" * int(schema.get("minLength", 0))
    if typ in ("integer", "number"):
        return schema.get("minimum", 0)
    if typ == "boolean":
        return False
    return None


class OpenAIStub:
    """``with OpenAIStub() as stub: spec = stub.spec(remote=True)``; ``stub.bodies`` holds what came."""

    def __init__(self, sentence: str = "The patient reports chest pain.") -> None:
        self.bodies: list[str] = []
        self.paths: list[str] = []
        self.sentence = sentence
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, payload: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stub.paths.append(self.path)
                self._reply({"object": "list", "data": [{"id": "stub", "owned_by": "stub"}]})

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                stub.bodies.append(raw.decode("utf-8", "replace"))
                stub.paths.append(self.path)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._reply({"error": {"message": "bad json"}}, 400)
                    return
                self._reply(stub.answer(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def spec(self, *, server: str = "openai", remote: bool = True) -> str:
        return f"openai:{self.url}#stub?server={server}&retries=1" + ("&remote=1" if remote else "")

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.content_for(body)
        top = [{"token": t, "logprob": -0.5 - i} for i, t in enumerate(("1", "2", "3", "yes", "no", "x"))]
        toks = [{"token": c, "logprob": -0.1, "top_logprobs": top} for c in (text[:1] or "x")]
        return {
            "id": "stub-1", "object": "chat.completion", "model": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                         "logprobs": {"content": toks}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4)},
        }

    def content_for(self, body: dict[str, Any]) -> str:
        so = body.get("structured_outputs") or {}
        if "choice" in so:
            return str(so["choice"][0])
        if "regex" in so:
            return self.sentence if re.fullmatch(so["regex"], self.sentence) else ""
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            return json.dumps(instance(rf["json_schema"]["schema"]))
        if rf.get("type") == "json_object":
            return json.dumps(instance(rf.get("schema") or {"type": "object"}))
        grammar = body.get("grammar")
        if isinstance(grammar, str):
            m = re.search(r'root ::= ("(?:[^"\\]|\\.)*")', grammar)
            return json.loads(m.group(1)) if m else ""
        return "1"

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
