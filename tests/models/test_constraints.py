"""Constrained decoding must really constrain: outputs the unconstrained model would not produce."""

from __future__ import annotations

import json
import re
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from medslm.models.base import Choice, JsonSchema, Regex

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Patient reports crushing chest pain. What should we do?",
    "List three fruits.",
    "Say hello.",
]


def test_choice_outputs_only_the_options_even_when_unnatural(embedded_lm):
    options = ["zebra", "xylophone-42", "Q"]
    free = [embedded_lm.generate(p, None, max_tokens=12).value for p in PROMPTS]
    assert not any(f.strip() in options for f in free), "unconstrained model should not produce these"
    for p in PROMPTS:
        g = embedded_lm.generate(p, Choice(options))
        assert g.value in options
        assert g.tokens_out == len(g.token_logprobs) >= 1
        assert all(lp <= 0.0 for lp in g.token_logprobs)
        assert 0.0 < g.confidence <= 1.0


class Finding(BaseModel):
    problem: str = Field(max_length=30)
    severity: Literal["mild", "moderate", "severe"]
    count: int = Field(ge=0, le=9)
    negated: bool


def test_json_always_validates_against_schema(embedded_lm):
    for p in PROMPTS:
        g = embedded_lm.generate(p, JsonSchema(Finding), max_tokens=100)
        assert isinstance(g.value, Finding)
        Finding.model_validate(json.loads(g.text))  # the raw text itself validates
        assert g.value.severity in ("mild", "moderate", "severe")


def test_json_schema_dict_constraint(embedded_lm):
    schema = {"type": "object", "properties": {"code": {"type": "string", "enum": ["I21.4", "R07.9"]}},
              "required": ["code"], "additionalProperties": False}
    g = embedded_lm.generate("Code this: chest pain.", JsonSchema(schema), max_tokens=20)
    assert g.value["code"] in ("I21.4", "R07.9")


def test_regex_constraint_matches_fully(embedded_lm):
    pattern = r"[A-Z][0-9]{2}\.[0-9]{1,2}"
    for p in PROMPTS[:3]:
        g = embedded_lm.generate(p, Regex(pattern), max_tokens=10)
        assert re.fullmatch(pattern, g.value), g.value


def test_score_choices_is_a_distribution_that_tracks_the_prompt(embedded_lm):
    yes = embedded_lm.score_choices("Is the sky blue on a clear day? Answer yes or no.", ["yes", "no"])
    assert abs(sum(yes.probs) - 1.0) < 1e-6
    assert yes.best == "yes"
    # multi-token options with a shared prefix are scored as whole strings (end-of-turn included)
    s = embedded_lm.score_choices("Count: one, two, three. What number comes next?", ["four", "four hundred"])
    assert s.options == ("four", "four hundred") and s.best == "four"
    assert len(s.logprobs) == 2 and all(lp < 0 for lp in s.logprobs)


def test_generate_batch_matches_single(embedded_lm):
    single = [embedded_lm.generate(p, Choice(["yes", "no"])).value for p in PROMPTS[:3]]
    batch = [g.value for g in embedded_lm.generate_batch(PROMPTS[:3], Choice(["yes", "no"]))]
    assert batch == single


def test_prompt_over_context_is_a_clear_error(embedded_lm):
    from medslm.errors import ModelError

    with pytest.raises(ModelError, match="exceeds the context"):
        embedded_lm.generate("word " * 9000, None, max_tokens=5)
