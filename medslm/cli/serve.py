"""``medslm serve``: the chart-review graph behind a small JSON HTTP API (stdlib server, loopback default).

    POST /review   {"id": "n1", "text": "..."}   → the ChartReview as JSON (status "failed" for a bad note)
    GET  /health                                  → {"status": "ok", "version": "..."}

Request bodies (note text) are never logged: the access log carries method, path, status and size.
For high-throughput serving put vLLM behind the models (``openai:`` specs) and run batches with
``medslm review``; this endpoint is for integrating one note at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import typer

log = logging.getLogger("medslm.serve")


def make_server(host: str = "127.0.0.1", port: int = 8080, *, graph: Any = None,
                max_body: int = 4_000_000) -> ThreadingHTTPServer:
    """A ready HTTP server (not started); ``port=0`` picks a free port (``server.server_port``)."""
    from medslm import __version__
    from medslm.graphs.builders import _default_graph, review
    from medslm.records import Note

    the_graph = graph if graph is not None else _default_graph()
    lock = threading.Lock()  # one note at a time through the models of this process

    class Handler(BaseHTTPRequestHandler):
        server_version = f"medslm/{__version__}"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.info("%s %s -> %s", self.command, self.path, args[1] if len(args) > 1 else "?")

        def _send(self, status: int, payload: dict[str, Any] | str) -> None:
            body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "version": __version__})
            else:
                self._send(404, {"error": "not_found", "message": f"no route {self.path}; use POST /review"})

        def do_POST(self) -> None:
            if self.path != "/review":
                self._send(404, {"error": "not_found", "message": f"no route {self.path}; use POST /review"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body:
                self._send(413, {"error": "too_large", "message": f"body of {length:,} bytes over {max_body:,}"})
                return
            raw = self.rfile.read(length)
            try:
                data = json.loads(raw)
                if not isinstance(data, dict) or not isinstance(data.get("text"), str):
                    raise ValueError("expected a JSON object with a string 'text' (and an optional 'id')")
                note = Note(id=str(data.get("id") or "note"), text=data["text"],
                            metadata=data.get("metadata") or {})
            except ValueError as exc:
                msg = str(exc) if "expected a JSON object" in str(exc) else "the body is not valid JSON"
                self._send(400, {"error": "bad_request", "message": msg})
                return
            with lock:
                result = review(note, the_graph)
            self._send(200, result.model_dump_json())

    return ThreadingHTTPServer((host, port), Handler)


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind; keep the loopback unless you add auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
) -> None:
    """Serve the chart-review graph over HTTP (JSON).

    Example: medslm serve --port 8080 & curl -s localhost:8080/review -d '{"id":"n1","text":"..."}'
    """
    server = make_server(host, port)
    typer.echo(f"medslm serving on http://{host}:{server.server_port} (POST /review, GET /health)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["make_server", "serve_command"]
