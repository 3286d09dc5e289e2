"""vLLM's offline engine (``vllm.LLM``) for GPU machines, with structured outputs. Extra: ``vllm``.

Requests are built by pure functions (:func:`sampling_kwargs`, :func:`choice_prompts`) so they can be
tested without a GPU; :class:`VLLMModel` turns them into ``SamplingParams`` and runs the engine.
For a server instead of an in-process engine, run ``vllm serve`` and use the ``openai:`` backend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from medslm.errors import ConfigurationError, MissingExtraError
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


def structured_outputs(constraint: Constraint | None) -> dict[str, Any] | None:
    """The keyword arguments of ``vllm.sampling_params.StructuredOutputsParams`` for a constraint."""
    if constraint is None:
        return None
    if isinstance(constraint, JsonSchema):
        return {"json": constraint.as_dict()}
    if isinstance(constraint, Choice):
        return {"choice": list(constraint.options)}
    if isinstance(constraint, Regex):
        return {"regex": constraint.pattern}
    raise ConfigurationError(f"unknown constraint {type(constraint).__name__}")


def sampling_kwargs(
    constraint: Constraint | None, *, max_tokens: int, temperature: float, seed: int | None
) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments: the sampled token's log-probability is always returned."""
    kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "logprobs": 0}
    if seed is not None:
        kwargs["seed"] = seed
    so = structured_outputs(constraint)
    if so is not None:
        kwargs["structured_outputs"] = so
    return kwargs


def choice_prompts(prompt_ids: Sequence[int], options_ids: Sequence[Sequence[int]]) -> list[list[int]]:
    """One full token sequence per option (prompt + option + end-of-turn), scored by ``prompt_logprobs``."""
    return [list(prompt_ids) + list(o) for o in options_ids]


def option_logprob(prompt_logprobs: Sequence[dict[int, Any] | None], seq: Sequence[int], start: int) -> float:
    """Sum of the log-probabilities vLLM reports for ``seq[start:]`` (one dict per prompt position)."""
    total = 0.0
    for pos in range(start, len(seq)):
        entry = prompt_logprobs[pos]
        if entry is None:
            raise ValueError(f"no prompt log-probability at position {pos}")
        lp = entry[seq[pos]]
        total += float(getattr(lp, "logprob", lp))
    return total


class VLLMModel:
    """A model served in-process by vLLM (GPU). Loads on first use."""

    def __init__(self, source: str, *, model_id: str | None = None, **engine_kwargs: Any) -> None:
        self.source = source
        self.engine_kwargs = {"enable_prefix_caching": True, **engine_kwargs}
        self._info = ModelInfo(id=model_id or source, backend="vllm")
        self._llm: Any = None
        self._lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        return self._info

    def load(self) -> VLLMModel:
        with self._lock:
            if self._llm is None:
                try:
                    from vllm import LLM
                except ImportError as exc:
                    raise MissingExtraError(package="vllm", extra="vllm", feature="the vLLM backend") from exc
                self._llm = LLM(model=self.source, **self.engine_kwargs)
        return self

    def _prompt(self, messages: Messages) -> str:
        tok = self.load()._llm.get_tokenizer()
        return str(tok.apply_chat_template(as_messages(messages), tokenize=False, add_generation_prompt=True))

    def generate(self, messages: Messages, constraint: Constraint | None = None, *, max_tokens: int = 256,
                 temperature: float = 0.0, seed: int | None = None) -> Generation:
        return self.generate_batch([messages], constraint, max_tokens=max_tokens, temperature=temperature,
                                   seed=seed)[0]

    def generate_batch(self, batch: Sequence[Messages], constraint: Constraint | None = None, *,
                       max_tokens: int = 256, temperature: float = 0.0, seed: int | None = None) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs = sampling_kwargs(constraint, max_tokens=max_tokens, temperature=temperature, seed=seed)
        if "structured_outputs" in kwargs:
            kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
        t0 = time.perf_counter()
        outs = self.load()._llm.generate([self._prompt(m) for m in batch], SamplingParams(**kwargs),
                                         use_tqdm=False)
        latency = (time.perf_counter() - t0) / max(1, len(batch))
        results = []
        for out in outs:
            c = out.outputs[0]
            lps = tuple(float(d[t].logprob) for d, t in zip(c.logprobs or [], c.token_ids, strict=False))
            value = constraint.parse(c.text) if isinstance(constraint, JsonSchema) else c.text
            results.append(Generation(value=value, text=c.text, token_logprobs=lps,
                                      tokens_in=len(out.prompt_token_ids or []), tokens_out=len(c.token_ids),
                                      latency_s=latency, model=self._info))
        return results

    def score_choices(self, messages: Messages, options: Sequence[str]) -> ChoiceScores:
        from vllm import SamplingParams

        llm = self.load()._llm
        tok = llm.get_tokenizer()
        t0 = time.perf_counter()
        prompt_ids = tok(self._prompt(messages), add_special_tokens=False)["input_ids"]
        opts = tuple(options)
        opt_ids = [tok(o, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for o in opts]
        seqs = choice_prompts(prompt_ids, opt_ids)
        outs = llm.generate([{"prompt_token_ids": s} for s in seqs],
                            SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
        totals = tuple(option_logprob(o.prompt_logprobs, s, len(prompt_ids)) for o, s in zip(outs, seqs, strict=True))
        return ChoiceScores(options=opts, logprobs=totals, tokens_in=len(prompt_ids),
                            latency_s=time.perf_counter() - t0, model=self._info)


__all__ = ["VLLMModel", "choice_prompts", "option_logprob", "sampling_kwargs", "structured_outputs"]
