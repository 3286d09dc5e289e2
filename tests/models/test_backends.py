"""Backends other than the default: spec resolution, request building, and clear errors for missing extras."""

from __future__ import annotations

import importlib.util

import pytest

from medslm.errors import ConfigurationError, MissingExtraError, ModelError, UnknownNameError
from medslm.models import catalog
from medslm.models.base import Choice, JsonSchema, Regex, enforceable
from medslm.models.llamacpp_backend import LlamaCppModel, choice_grammar
from medslm.models.vllm_backend import (
    VLLMModel,
    choice_prompts,
    option_logprob,
    sampling_kwargs,
    structured_outputs,
)


def test_spec_parsing_and_did_you_mean():
    assert catalog.parse_spec("embedded") == ("embedded", "")
    assert catalog.parse_spec("transformers:/models/x") == ("transformers", "/models/x")
    assert catalog.parse_spec("openai:http://127.0.0.1:8000/v1#m") == ("openai", "http://127.0.0.1:8000/v1#m")
    with pytest.raises(UnknownNameError, match="did you mean 'transformers'"):
        catalog.parse_spec("transfomers:/x")
    with pytest.raises(ConfigurationError, match="has no backend"):
        catalog.parse_spec("SmolLM2")
    with pytest.raises(ConfigurationError, match="names no model"):
        catalog.parse_spec("vllm:")


def test_load_model_is_shared_per_process(embedded_lm):
    assert catalog.load_model("embedded") is embedded_lm
    assert catalog.load_model(embedded_lm) is embedded_lm


def test_vllm_request_building():
    assert structured_outputs(Choice(["1", "2"])) == {"choice": ["1", "2"]}
    assert structured_outputs(Regex(r"[A-Z]\d\d")) == {"regex": r"[A-Z]\d\d"}
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}}}
    assert structured_outputs(JsonSchema(schema)) == {
        "json": {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2, 3]}}}}
    kw = sampling_kwargs(Choice(["a"]), max_tokens=5, temperature=0.0, seed=7)
    assert kw == {"max_tokens": 5, "temperature": 0.0, "logprobs": 0, "seed": 7,
                  "structured_outputs": {"choice": ["a"]}}
    assert "structured_outputs" not in sampling_kwargs(None, max_tokens=5, temperature=0.0, seed=None)
    seqs = choice_prompts([1, 2, 3], [[7, 0], [8, 9, 0]])
    assert seqs == [[1, 2, 3, 7, 0], [1, 2, 3, 8, 9, 0]]
    plp = [None, {2: -0.1}, {3: -0.2}, {7: -1.0}, {0: -0.5}]
    assert option_logprob(plp, seqs[0], 3) == pytest.approx(-1.5)


def test_vllm_missing_extra_names_the_extra():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; the missing-extra path cannot be exercised")
    with pytest.raises(MissingExtraError, match=r'pip install "medslm\[vllm\]"'):
        VLLMModel("/models/x").load()


def test_llamacpp_grammar_and_missing_extra():
    assert choice_grammar(["yes", 'a "b"']) == 'root ::= "yes" | "a \\"b\\""\n'
    if importlib.util.find_spec("llama_cpp") is None:
        with pytest.raises(MissingExtraError, match=r"medslm\[llamacpp\]"):
            LlamaCppModel("/models/x.gguf").load()


def test_unenforceable_schema_is_refused_up_front():
    with pytest.raises(ValueError, match="cannot be enforced"):
        enforceable({"type": "number", "minimum": 0.5, "maximum": 2.5})
    assert enforceable({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}) == {
        "type": "integer", "enum": [1, 2]}


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason="optional extra medslm[llamacpp] (compiled from source) is not installed")
def test_llamacpp_constraints_hold_on_the_embedded_gguf():
    """Where the extra is installed: GBNF choice and JSON schema constrain the real embedded GGUF."""
    from pydantic import BaseModel, Field

    from medslm.models.base import Choice, JsonSchema
    from medslm.models.embedded import gguf_path

    class Finding(BaseModel):
        problem: str = Field(max_length=30)
        level: int = Field(ge=1, le=5)

    lm = LlamaCppModel(str(gguf_path()), n_ctx=512)
    msgs = [{"role": "user", "content": "Is the sky green? Answer in one word."}]
    options = ["banana split", "zebra crossing"]
    assert lm.generate(msgs, Choice(options), max_tokens=8).value in options
    assert isinstance(lm.generate(msgs, JsonSchema(Finding), max_tokens=60).value, Finding)
    scores = lm.score_choices(msgs, ["yes", "no", "maybe"])
    assert abs(sum(scores.probs) - 1.0) < 1e-6 and len(scores.logprobs) == 3
    # JSON cut short by max_tokens: a typed error that says so, never a pydantic parse error
    with pytest.raises(ModelError, match="cut at max_tokens"):
        lm.generate(msgs, JsonSchema(Finding), max_tokens=3)


def test_embedded_model_files_are_pinned_by_sha256(tmp_path):
    """The fetched GGUF has the pinned hash; a file with another is refused before conversion."""
    from medslm.errors import ModelError
    from medslm.models import embedded

    real = embedded.gguf_path()
    assert embedded.verify_gguf(real) == real  # the file in use is the pinned one
    fake = tmp_path / embedded.GGUF_NAME
    fake.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError, match="expected b179c9523d0e6a0f"):
        embedded.verify_gguf(fake)
