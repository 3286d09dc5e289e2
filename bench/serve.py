"""Load test of ``medslm serve`` on 127.0.0.1: concurrent clients, slow clients, malformed bodies.

Starts the server as a child process (uvicorn, the ``triage_rules`` graph: guard_in + triage without a
language model, so the figures measure the server, not a model), then in one asyncio client:

1. ``--clients`` (200) well-formed reviews at once;
2. ``--idle`` (300) connections that send half a header and stop, held open while 50 more reviews run
   (the server's thread count before / during is printed: an idle client must not cost a thread);
3. ``--slow`` (50) clients that send their body one byte a second (``--read-timeout`` 2 s: each must get 408);
4. malformed requests: bad JSON, deep nesting, a lone surrogate, invalid UTF-8, a negative, a non-numeric
   and an oversized Content-Length, an oversized body, a wrong content type, no token, a foreign Origin.

A *hang* is a request with no response within ``--deadline`` seconds; a *crash* is the server process
exiting or answering 500. Everything is bounded in count and time. Run:

    python bench/serve.py                 # the full run (seconds to a minute on 2 cores)
    python bench/serve.py --clients 40 --idle 50 --slow 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
SERVER = """
import sys
from medslm.cli.serve import ServeOptions, create_app, uvicorn_config
from medslm.graphs.builders import triage_rules
from medslm.settings import Settings
import uvicorn
s = Settings(max_note_chars=20_000).with_models(guardian="rules")
opts = ServeOptions(token=sys.argv[2], max_body=200_000, concurrency=2, queue=256, timeout=60, read_timeout=2.0)
app = create_app(s, graph=triage_rules(s), options=opts)
uvicorn.Server(uvicorn_config(app, "127.0.0.1", int(sys.argv[1]), connections=2048)).run()
"""
NOTE = "72M with crushing chest pain radiating to the left arm. BP 88/50, HR 118, SpO2 91% on room air."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def threads_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


async def raw_request(port: int, head: bytes, body: bytes = b"", *, deadline: float, trickle: float = 0.0) -> tuple[int, float]:
    """Send a raw HTTP request; return (status, seconds). Status -1: no response (a hang); -2: connection reset."""
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=deadline)
    except (OSError, TimeoutError):
        return -2, time.perf_counter() - t0

    async def feed() -> None:
        try:
            writer.write(head)
            if trickle:
                for b in body:
                    writer.write(bytes([b]))
                    await writer.drain()
                    await asyncio.sleep(trickle)
            else:
                writer.write(body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server answered and closed while we were still sending: read what it said

    async def go() -> int:
        sender = asyncio.create_task(feed())
        try:
            line = await reader.readline()
        finally:
            sender.cancel()
        if not line:
            return -2
        return int(line.split()[1])

    try:
        status = await asyncio.wait_for(go(), timeout=deadline)
    except TimeoutError:
        status = -1
    except (ConnectionError, OSError, IndexError, ValueError):
        status = -2
    finally:
        writer.close()
    return status, time.perf_counter() - t0


def post(body: bytes, *, token: str | None = TOKEN, ctype: str = "application/json", length: str | None = None,
         extra: str = "") -> bytes:
    h = f"POST /review HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nConnection: close\r\n"
    h += f"Content-Length: {length if length is not None else len(body)}\r\n"
    if token:
        h += f"Authorization: Bearer {token}\r\n"
    return (h + extra + "\r\n").encode()


def malformed() -> list[tuple[str, bytes, bytes]]:
    ok = json.dumps({"id": "m", "text": NOTE}).encode()
    cases = [
        ("bad json", b"{not json"), ("deep nesting", b"[" * 150_000), ("array", b"[1,2]"),
        ("no text", b'{"id": "x"}'), ("lone surrogate", b'{"id": "s", "text": "\\ud800 pain"}'),
        ("invalid utf-8", b'{"id": "u", "text": "caf\xe9"}'), ("nul bytes", b'{"id": "z", "text": "\\u0000\\u0001"}'),
        ("bad id", b'{"id": "a\\u0000b", "text": "pain"}'), ("empty text", b'{"id": "e", "text": "   "}'),
        ("oversized body", b'{"text": "' + b"a" * 300_000 + b'"}'),
    ]
    out = [(name, post(body), body) for name, body in cases]
    out += [
        ("negative length", post(ok, length="-1"), ok), ("non-numeric length", post(ok, length="abc"), ok),
        ("huge length", post(b"{}", length="99999999999"), b"{}"), ("wrong content type", post(ok, ctype="text/plain"), ok),
        ("no token", post(ok, token=None), ok), ("foreign origin", post(ok, extra="Origin: https://evil.example\r\n"), ok),
        ("short body", post(ok[:10], length=str(len(ok))), ok[:10]),
    ]
    return out


async def main_async(args: argparse.Namespace, port: int, pid: int) -> dict[str, object]:
    dl = args.deadline
    good = json.dumps({"text": NOTE}).encode()
    out: dict[str, object] = {}

    # 1. concurrent well-formed clients
    t0 = time.perf_counter()
    res = await asyncio.gather(*[raw_request(port, post(good), good, deadline=dl) for _ in range(args.clients)])
    wall = time.perf_counter() - t0
    codes = Counter(s for s, _ in res)
    lat = sorted(t for s, t in res if s == 200)
    out["concurrent"] = {"clients": args.clients, "codes": dict(codes), "wall_s": round(wall, 2),
                         "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                         "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else None}

    # 2. idle half-header connections held open while reviews go on
    before = threads_of(pid)
    idle = []
    for _ in range(args.idle):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /review HTTP/1.1\r\nHost: x\r\nContent-")
            idle.append(w)
        except OSError:
            break
    await asyncio.sleep(1.0)
    during = threads_of(pid)
    res = await asyncio.gather(*[raw_request(port, post(good), good, deadline=dl) for _ in range(50)])
    out["idle"] = {"held_open": len(idle), "server_threads_before": before, "server_threads_during": during,
                   "reviews_meanwhile": dict(Counter(s for s, _ in res))}
    for w in idle:
        w.close()

    # 3. slow clients: one byte a second
    res = await asyncio.gather(*[raw_request(port, post(good), good, deadline=dl, trickle=1.0) for _ in range(args.slow)])
    out["slow"] = {"clients": args.slow, "codes": dict(Counter(s for s, _ in res)),
                   "max_s": round(max(t for _, t in res), 2) if res else None}

    # 4. malformed requests
    cases = malformed()
    res = await asyncio.gather(*[raw_request(port, head, body, deadline=dl) for _, head, body in cases])
    out["malformed"] = {name: status for (name, _, _), (status, _) in zip(cases, res, strict=True)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--deadline", type=float, default=60.0, help="seconds before a request counts as hung")
    args = ap.parse_args()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), TOKEN], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    sys.exit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        t0 = time.perf_counter()
        out = asyncio.run(main_async(args, port, proc.pid))
        out["total_s"] = round(time.perf_counter() - t0, 1)
        out["server_alive"] = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    counts: Counter[int] = Counter()
    for part in (out["concurrent"]["codes"], out["idle"]["reviews_meanwhile"], out["slow"]["codes"]):  # type: ignore[index]
        counts.update(part)  # type: ignore[arg-type]
    counts.update(out["malformed"].values())  # type: ignore[union-attr]
    hangs = counts[-1]
    crashes = (0 if out["server_alive"] else 1) + counts[500]
    print(json.dumps(out, indent=2))
    print(f"hangs {hangs}, crashes {crashes}")
    sys.exit(1 if hangs or crashes else 0)


if __name__ == "__main__":
    main()
