"""The one contract every backend meets: constrained generation with log-probabilities, and choice scoring.

A backend never returns free text that a caller must parse and might fail on: the output is decoded
under a :class:`Constraint` (JSON schema, a choice among strings, or a regex) and comes back parsed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

#: A chat prompt: ``[{"role": "system"|"user"|"assistant", "content": "..."}]``, or a plain string.
Messages = Sequence[dict[str, str]] | str


@dataclass(frozen=True)
class JsonSchema:
    """Generate JSON valid under this schema (a pydantic model class or a JSON-schema dict)."""

    schema: type[BaseModel] | dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The schema as decoding enforces it (bounded integers become enums; see :func:`enforceable`)."""
        raw = self.schema if isinstance(self.schema, dict) else self.schema.model_json_schema()
        return enforceable(raw)

    def parse(self, text: str) -> Any:
        if isinstance(self.schema, dict):
            return json.loads(text)
        return self.schema.model_validate_json(text)


_MAX_ENUM = 2000


def enforceable(schema: Any) -> Any:
    """Rewrite a JSON schema so that a regex-based decoder enforces all of it.

    Token-level decoders turn a schema into a regular expression; numeric ``minimum``/``maximum`` do not
    survive that. Bounded integer ranges (up to 2,000 values) become enums, which do. Bounds on
    non-integer numbers cannot be enforced and are refused, so no output can fail validation later.
    """
    if isinstance(schema, list):
        return [enforceable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: enforceable(v) for k, v in schema.items()}
    bounds = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & out.keys()
    if bounds and "enum" not in out:
        if out.get("type") == "integer" and {"minimum", "exclusiveMinimum"} & bounds and {
            "maximum", "exclusiveMaximum"} & bounds:
            lo = out.get("minimum", out.get("exclusiveMinimum", 0) + 1)
            hi = out.get("maximum", out.get("exclusiveMaximum", 0) - 1)
            if hi - lo + 1 <= _MAX_ENUM:
                for b in bounds:
                    out.pop(b)
                out["enum"] = list(range(int(lo), int(hi) + 1))
                return out
        raise ValueError(
            f"JSON schema bounds {sorted(bounds)} on a {out.get('type', 'number')} cannot be enforced by "
            "constrained decoding; use an integer range of at most 2,000 values, an enum or a Literal"
        )
    return out


@dataclass(frozen=True)
class Choice:
    """Generate exactly one of these strings."""

    options: tuple[str, ...]

    def __init__(self, options: Sequence[str]) -> None:
        opts = tuple(options)
        if not opts:
            raise ValueError("Choice needs at least one option")
        object.__setattr__(self, "options", opts)


@dataclass(frozen=True)
class Regex:
    """Generate a string that fully matches this regular expression."""

    pattern: str


Constraint = JsonSchema | Choice | Regex


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a loaded model, recorded in every result's provenance."""

    id: str
    backend: str
    revision: str | None = None
    remote: bool = False  # True when text leaves this machine (de-identify first)


@dataclass(frozen=True)
class Generation:
    """A constrained generation: the parsed value, the raw text and per-token log-probabilities."""

    value: Any
    text: str
    token_logprobs: tuple[float, ...]
    tokens_in: int
    tokens_out: int
    latency_s: float
    model: ModelInfo

    @property
    def mean_logprob(self) -> float:
        return sum(self.token_logprobs) / len(self.token_logprobs) if self.token_logprobs else 0.0

    @property
    def confidence(self) -> float:
        """Geometric-mean token probability of the output, in [0, 1]."""
        return math.exp(self.mean_logprob) if self.token_logprobs else 0.0


@dataclass(frozen=True)
class ChoiceScores:
    """Log-likelihood of each option as a continuation of the prompt, and the normalized distribution."""

    options: tuple[str, ...]
    logprobs: tuple[float, ...]  # total log-likelihood of each option's tokens
    tokens_in: int
    latency_s: float
    model: ModelInfo
    probs: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.probs:
            m = max(self.logprobs)
            exps = [math.exp(lp - m) for lp in self.logprobs]
            z = sum(exps)
            object.__setattr__(self, "probs", tuple(e / z for e in exps))

    @property
    def best(self) -> str:
        return self.options[max(range(len(self.options)), key=lambda i: self.probs[i])]

    @property
    def best_prob(self) -> float:
        return max(self.probs)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.options, self.probs, strict=True))


@runtime_checkable
class LanguageModel(Protocol):
    """What every backend offers. A user's class fits without inheriting."""

    @property
    def info(self) -> ModelInfo: ...

    def generate(
        self,
        messages: Messages,
        constraint: Constraint | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        """Generate under ``constraint`` and return the parsed value with token log-probabilities."""
        ...

    def score_choices(self, messages: Messages, options: Sequence[str]) -> ChoiceScores:
        """Log-likelihood of each option as the assistant's answer (the cheap path for classification)."""
        ...


def prompt_hash(*parts: str) -> str:
    """Stable short hash of a prompt template, recorded in provenance."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:12]


def as_messages(messages: Messages) -> list[dict[str, str]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


__all__ = [
    "Choice",
    "ChoiceScores",
    "Constraint",
    "Generation",
    "JsonSchema",
    "LanguageModel",
    "Messages",
    "ModelInfo",
    "Regex",
    "as_messages",
    "enforceable",
    "prompt_hash",
]
