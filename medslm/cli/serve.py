"""``medslm serve``: the chart-review graph behind a small JSON HTTP API (Starlette on uvicorn).

    POST /review   {"id": "n1", "text": "..."}   → the ChartReview as JSON (status "failed" for a bad note)
    GET  /health                                  → {"status": "ok", "version": "..."}

What protects it:

- **Bearer token.** ``--token`` / ``$MEDSLM_SERVE_TOKEN``: every request but ``/health`` needs
  ``Authorization: Bearer <token>``. Binding anything but the loopback without a token is refused.
- **No cross-site posts.** A request with an ``Origin`` header not listed in ``--allow-origin`` is
  refused (403), and ``POST /review`` needs ``Content-Type: application/json`` (a web page cannot send
  that without a CORS preflight, which is never answered).
- **Bounded work.** Bodies over ``--max-body`` bytes are refused (413) from the ``Content-Length`` header
  or while streaming; a malformed ``Content-Length`` gets 400; a body that does not arrive within
  ``--read-timeout`` seconds gets 408; at most ``--concurrency`` notes run at once and at most
  ``--queue`` wait (then 503 at once); a note not reviewed within ``--timeout`` seconds gets 504.
  uvicorn caps open connections (``limit_concurrency``) and idle keep-alives; an idle or slow client
  costs a coroutine, not a thread.
- **No note text out of place.** Error bodies are JSON with a code and a message that never quotes the
  request; the access log has method, path, status and size; the response leaves the note text out
  unless ``--store-text`` (and stores keep none by default for ``serve``).
- **Unique ids.** A request without ``id`` gets ``srv-<uuid4>``; review items are keyed by the note's
  content as well, so two requests under one id never share a review item.

Settings come from ``Settings.from_env()`` (``MEDSLM_MODEL_*``, ``MEDSLM_ESCALATION_MODEL``…).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

log = logging.getLogger("medslm.serve")

DEFAULT_MAX_BODY = 4_000_000


@dataclass
class ServeOptions:
    """How ``medslm serve`` bounds and guards its work (see the module docstring)."""

    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    concurrency: int = 1
    queue: int = 64
    timeout: float = 300.0
    read_timeout: float = 30.0
    allow_origins: tuple[str, ...] = ()
    store_text: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"reviewed": 0, "rejected": 0, "busy": 0, "timeouts": 0})


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": code, "message": message}, status_code=status)


def create_app(settings: Any = None, *, graph: Any = None, options: ServeOptions | None = None,
               context: Any = None) -> Any:
    """The Starlette application (not started). ``graph``: a compiled graph (default: chart review)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from medslm import __version__
    from medslm.graphs.builders import chart_review, review
    from medslm.graphs.context import ReviewContext
    from medslm.graphs.io import InputFailure, make_note
    from medslm.settings import Settings

    opts = options or ServeOptions()
    settings = settings or Settings.from_env()
    the_graph = graph if graph is not None else chart_review(settings)
    ctx = context or ReviewContext(settings=settings)
    run_slots = threading.BoundedSemaphore(max(1, opts.concurrency))
    waiting = {"n": 0}
    wait_lock = threading.Lock()

    def authorized(request: Request) -> bool:
        if not opts.token:
            return True
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), opts.token.encode())

    async def read_body(request: Request) -> bytes:
        raw_len = request.headers.get("content-length")
        if raw_len is not None:
            if not raw_len.isdigit():
                raise _Reject(400, "bad_length", "Content-Length must be a non-negative integer")
            if int(raw_len) > opts.max_body:
                raise _Reject(413, "too_large", f"body of {int(raw_len):,} bytes is over the limit of {opts.max_body:,}")
        chunks: list[bytes] = []
        size = 0

        async def pull() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > opts.max_body:
                    raise _Reject(413, "too_large", f"body is over the limit of {opts.max_body:,} bytes")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(pull(), timeout=opts.read_timeout)
        except TimeoutError:
            raise _Reject(408, "timeout", f"the body did not arrive within {opts.read_timeout:g} s") from None
        return b"".join(chunks)

    def parse(raw: bytes) -> Any:
        try:
            data = json.loads(raw)
        except RecursionError:
            raise _Reject(400, "bad_json", "the body nests too deeply") from None
        except ValueError:
            raise _Reject(400, "bad_json", "the body is not valid UTF-8 JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise _Reject(400, "bad_request", "expected a JSON object with a string 'text' (and an optional 'id')")
        raw_id = data.get("id")
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            raw_id = f"srv-{uuid.uuid4().hex}"
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        note = make_note(0, raw_id, data["text"], meta)
        if isinstance(note, InputFailure) and note.reason_code in ("bad_id", "missing_id", "not_text", "bad_encoding",
                                                                   "bad_record"):
            msg = note.message.replace("record 0", "the request")
            raise _Reject(400, note.reason_code, msg)
        return note

    def run_review(note: Any) -> Any:
        from medslm.models.batching import note_in_flight

        with run_slots, note_in_flight():  # requests in flight share the local models' batches
            return review(note, the_graph, context=ctx)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def review_endpoint(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "unauthorized", "send Authorization: Bearer <token>")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "unsupported_media_type", "POST /review needs Content-Type: application/json")
        try:
            raw = await read_body(request)
            note = parse(raw)
        except _Reject as rej:
            opts.stats["rejected"] += 1
            return _error(rej.status, rej.code, rej.message)
        if isinstance(note, InputFailure):  # empty / too large: a failed review, as in a batch
            result = note.review(ctx.config_hash)
            return Response(result.model_dump_json(), media_type="application/json")
        with wait_lock:
            if waiting["n"] >= opts.queue + opts.concurrency:
                opts.stats["busy"] += 1
                return _error(503, "busy", f"{waiting['n']} notes in flight or waiting; retry later")
            waiting["n"] += 1
        try:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, run_review, note)
            try:
                result = await asyncio.wait_for(asyncio.shield(fut), timeout=opts.timeout)
            except TimeoutError:
                opts.stats["timeouts"] += 1
                fut.add_done_callback(lambda f: f.exception())  # finishes in the background, result dropped
                return _error(504, "timeout", f"note {note.id!r} was not reviewed within {opts.timeout:g} s")
        finally:
            with wait_lock:
                waiting["n"] -= 1
        opts.stats["reviewed"] += 1
        if not opts.store_text:
            result = result.model_copy(update={"text": None})
        return Response(result.model_dump_json(), media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not_found", "no such route; use POST /review or GET /health")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "method_not_allowed", "use POST /review or GET /health")

    async def internal(request: Request, exc: Exception) -> Response:
        log.warning("serve: %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _error(500, "internal", f"{type(exc).__name__}; the note is not in this message")

    app = Starlette(
        routes=[Route("/health", health, methods=["GET"]), Route("/review", review_endpoint, methods=["POST"])],
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: internal},
    )

    class Guard:
        """Origin check and access log (method, path, status, size; never bodies) around the app."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            origin = headers.get("origin")
            t0 = time.perf_counter()
            status = {"code": 0, "size": 0}

            async def send_logged(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                elif message["type"] == "http.response.body":
                    status["size"] += len(message.get("body", b""))
                await send(message)

            if origin is not None and origin not in opts.allow_origins:
                resp = _error(403, "forbidden_origin", "cross-origin requests are refused; see --allow-origin")
                await resp(scope, receive, send_logged)
            else:
                await self.inner(scope, receive, send_logged)
            log.info("%s %s -> %s (%d bytes, %.0f ms)", scope.get("method"), scope.get("path"), status["code"],
                     status["size"], 1000 * (time.perf_counter() - t0))

    guarded = Guard(app)
    guarded.options = opts  # type: ignore[attr-defined]
    return guarded


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uvicorn_config(app: Any, host: str, port: int, *, connections: int = 512, log_level: str = "warning") -> Any:
    """uvicorn settings for ``serve``: bounded connections, short idle keep-alive, no access log of its own."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          limit_concurrency=connections, timeout_keep_alive=5, backlog=1024,
                          h11_max_incomplete_event_size=64 * 1024, lifespan="off", server_header=False)


class ServerThread:
    """uvicorn in a background thread (tests and benches): ``with ServerThread(app) as s: s.url``."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn_config(app, host, port, **config))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind. Off the loopback a --token is required.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    token: Annotated[str | None, typer.Option(help="Bearer token clients must send (or $MEDSLM_SERVE_TOKEN).",
                                              envvar="MEDSLM_SERVE_TOKEN", show_envvar=True)] = None,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes.")] = DEFAULT_MAX_BODY,
    concurrency: Annotated[int, typer.Option(help="Notes reviewed at once.")] = 1,
    queue: Annotated[int, typer.Option(help="Notes allowed to wait; more get 503.")] = 64,
    timeout: Annotated[float, typer.Option(help="Seconds a note may take before 504.")] = 300.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send its body (408).")] = 30.0,
    allow_origin: Annotated[list[str] | None, typer.Option(help="Browser origin allowed to call (repeatable).")] = None,
    store_text: Annotated[bool, typer.Option("--store-text/--no-store-text",
                                             help="Keep the note text in responses and stores.")] = False,
    connections: Annotated[int, typer.Option(help="Open connections uvicorn accepts before 503.")] = 512,
) -> None:
    """Serve the chart-review graph over HTTP (JSON).

    Example: medslm serve --port 8080 & curl -s localhost:8080/review -H 'Content-Type: application/json' -d '{"id":"n1","text":"..."}'
    """
    import uvicorn

    from medslm.errors import MedslmError
    from medslm.settings import Settings

    if not is_loopback(host) and not token:
        typer.echo(f"refusing to serve on {host} without a token: pass --token or set MEDSLM_SERVE_TOKEN "
                   "(clients then send Authorization: Bearer <token>)", err=True)
        raise typer.Exit(2)
    try:
        settings = Settings.from_env()
        if not store_text:
            settings = settings.model_copy(update={"store_note_text": False})
    except MedslmError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    opts = ServeOptions(token=token, max_body=max_body, concurrency=concurrency, queue=queue, timeout=timeout,
                        read_timeout=read_timeout, allow_origins=tuple(allow_origin or ()), store_text=store_text)
    app = create_app(settings, options=opts)
    typer.echo(f"medslm serving on http://{host}:{port} (POST /review, GET /health)"
               + ("; bearer token required" if token else ""))
    uvicorn.Server(uvicorn_config(app, host, port, connections=connections,
                                  log_level=os.environ.get("MEDSLM_LOG_LEVEL", "warning").lower())).run()


__all__ = ["ServeOptions", "ServerThread", "create_app", "is_loopback", "serve_command", "uvicorn_config"]
