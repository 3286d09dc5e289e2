"""llama.cpp in-process (``llama-cpp-python``). Extra: ``llamacpp``.

llama-cpp-python has no wheels on PyPI and compiles from source. On VMs whose CPU lists AMX but forbids
it, a default build segfaults; build with::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" pip install "medslm[llamacpp]"

Constraints become GBNF grammars (JSON schema through llama.cpp's own converter, choices as an
alternation). Regex constraints are refused with a clear error: use the transformers or vLLM backend.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from medslm.errors import ConfigurationError, MissingExtraError, ModelError
from medslm.models.base import (
    Choice,
    ChoiceScores,
    Constraint,
    Generation,
    JsonSchema,
    Messages,
    ModelInfo,
    Regex,
    as_messages,
)


def choice_grammar(options: Sequence[str]) -> str:
    """A GBNF grammar that accepts exactly one of ``options``."""
    return "root ::= " + " | ".join(json.dumps(o) for o in options) + "\n"


class LlamaCppModel:
    """A GGUF model run by llama.cpp. Loads on first use; ``logits_all`` for log-probabilities."""

    def __init__(self, gguf_path: str, *, n_ctx: int = 4096, n_threads: int | None = None,
                 model_id: str | None = None) -> None:
        self.path = gguf_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._info = ModelInfo(id=model_id or gguf_path, backend="llamacpp")
        self._llm: Any = None
        self._lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        return self._info

    def load(self) -> LlamaCppModel:
        with self._lock:
            if self._llm is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise MissingExtraError(package="llama-cpp-python", extra="llamacpp",
                                            feature="the llama.cpp backend") from exc
                self._llm = Llama(model_path=self.path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                  logits_all=True, verbose=False)
        return self

    def _grammar(self, constraint: Constraint | None) -> Any:
        from llama_cpp import LlamaGrammar

        if constraint is None:
            return None
        if isinstance(constraint, JsonSchema):
            return LlamaGrammar.from_json_schema(json.dumps(constraint.as_dict()), verbose=False)
        if isinstance(constraint, Choice):
            return LlamaGrammar.from_string(choice_grammar(constraint.options), verbose=False)
        if isinstance(constraint, Regex):
            raise ConfigurationError(
                "the llama.cpp backend cannot enforce a regex; use JsonSchema or Choice, or the transformers backend"
            )
        raise ConfigurationError(f"unknown constraint {type(constraint).__name__}")

    def generate(self, messages: Messages, constraint: Constraint | None = None, *, max_tokens: int = 256,
                 temperature: float = 0.0, seed: int | None = None) -> Generation:
        llm = self.load()._llm
        t0 = time.perf_counter()
        with self._lock:
            out = llm.create_chat_completion(
                messages=as_messages(messages), grammar=self._grammar(constraint), max_tokens=max_tokens,
                temperature=temperature, seed=seed, logprobs=True, top_logprobs=1,
            )
        choice = out["choices"][0]
        text = choice["message"]["content"] or ""
        content = (choice.get("logprobs") or {}).get("content") or []
        lps = tuple(float(t["logprob"]) for t in content)
        value = self._parse(text, constraint, choice.get("finish_reason") == "length")
        usage = out.get("usage", {})
        return Generation(value=value, text=text, token_logprobs=lps, tokens_in=usage.get("prompt_tokens", 0),
                          tokens_out=usage.get("completion_tokens", len(lps)),
                          latency_s=time.perf_counter() - t0, model=self._info)

    def _parse(self, text: str, constraint: Constraint | None, truncated: bool) -> Any:
        if not isinstance(constraint, JsonSchema):
            return text
        try:
            return constraint.parse(text)
        except ValueError as exc:
            # the grammar cannot produce invalid JSON: only max_tokens can cut it short
            raise ModelError(
                f"{self._info.id}: JSON output was cut at max_tokens ({len(text)} characters); raise max_tokens "
                "or bound the schema (maxLength / maxItems)" if truncated
                else f"{self._info.id}: output did not validate: {type(exc).__name__}"
            ) from None

    def score_choices(self, messages: Messages, options: Sequence[str]) -> ChoiceScores:
        import numpy as np

        llm = self.load()._llm
        t0 = time.perf_counter()
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigurationError(f"{self.path} has no chat template; choice scoring needs one")
        from jinja2 import Template

        text = Template(template).render(messages=as_messages(messages), add_generation_prompt=True)
        p_ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        eos = llm.token_eos()
        totals = []
        with self._lock:
            for opt in options:
                o_ids = llm.tokenize(opt.encode(), add_bos=False, special=False) + [eos]
                llm.reset()
                llm.eval(p_ids + o_ids)
                logits = np.asarray(llm.scores[len(p_ids) - 1 : len(p_ids) + len(o_ids) - 1], dtype=np.float64)
                logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
                totals.append(float(sum(logits[k, t] - logz[k] for k, t in enumerate(o_ids))))
        return ChoiceScores(options=tuple(options), logprobs=tuple(totals), tokens_in=len(p_ids),
                            latency_s=time.perf_counter() - t0, model=self._info)


__all__ = ["LlamaCppModel", "choice_grammar"]
