"""The default backend: a transformers causal LM on CPU (or GPU), constrained by outlines.

Constraints are outlines-core logits processors plugged into ``model.generate``: the same finite-state
machines outlines uses, but we keep the call ourselves so that we can return per-token log-probabilities
(the model's raw distribution, before masking) next to the parsed value.

Choice scoring runs the prompt once, then every option (plus the end-of-turn token, so that "1" and
"10" differ) as one padded batch on top of the prompt's KV cache.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError, ModelError
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

log = logging.getLogger(__name__)


def choice_regex(options: Sequence[str]) -> str:
    import re

    return "(" + "|".join(re.escape(o) for o in options) + ")"


class TransformersModel:
    """A local causal LM under constrained decoding. Loads on first use; thread-safe.

    ``source`` is a local folder or a Hugging Face hub id (hub ids need the internet; the embedded
    default never does). ``adapter`` is a folder written by :func:`medslm.training.causal_lora.train_causal_lora`
    (``config.json`` + ``adapter.safetensors``): its LoRA matrices are merged into the weights at load time
    (no adapter cost per token), after checking that the base weights are the ones it was trained against.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        model_id: str | None = None,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        max_context: int | None = None,
        adapter: str | Path | None = None,
    ) -> None:
        self.source = str(source)
        self.adapter = Path(adapter) if adapter is not None else None
        self.adapter_config: dict[str, Any] = {}
        if self.adapter is not None:
            revision = f"{revision or 'base'}+adapter:{self.adapter.name}"
        self._info = ModelInfo(id=model_id or self.source, backend="transformers", revision=revision)
        self.device = device
        self.dtype = dtype
        self._max_context = max_context
        self._model: Any = None
        self._tok: Any = None
        self._outlines: Any = None
        self._lock = threading.RLock()
        self._vocabulary: Any = None
        self._indexes: dict[str, Any] = {}

    # -- loading -------------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._info

    def load(self) -> TransformersModel:
        with self._lock:
            if self._model is not None:
                return self
            from medslm.models._hf import require_transformers

            transformers = require_transformers()
            import torch

            transformers.utils.logging.disable_progress_bar()

            t0 = time.perf_counter()
            try:
                tok = transformers.AutoTokenizer.from_pretrained(self.source)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    self.source, dtype=getattr(torch, self.dtype)
                ).to(self.device)
            except OSError as exc:
                raise ModelError(
                    f"could not load a transformers model from {self.source!r}: {exc}. Give a local folder, "
                    "or a hub id on a machine with the internet."
                ) from exc
            if self.adapter is not None:
                self.adapter_config = self._merge_adapter(model)  # raises before the model counts as loaded
            self._tok, self._model = tok, model
            self._model.eval()
            if self._tok.pad_token_id is None:
                self._tok.pad_token = self._tok.eos_token
            ctx = getattr(self._model.config, "max_position_embeddings", None) or 2048
            self._max_context = self._max_context or int(ctx)
            log.info("loaded %s in %.2fs", self._info.id, time.perf_counter() - t0)
            return self

    def _merge_adapter(self, model: Any) -> dict[str, Any]:
        """Add the adapter's LoRA products (alpha / r * B @ A) to ``model``'s weights, in place; its config."""
        import torch
        from safetensors.torch import load_file

        assert self.adapter is not None
        try:
            cfg = json.loads((self.adapter / "config.json").read_text(encoding="utf-8"))
            tensors = load_file(str(self.adapter / "adapter.safetensors"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"LoRA adapter {self.adapter} is unreadable ({type(exc).__name__}); retrain it with "
                             "`medslm train summarize-lora`") from None
        if cfg.get("format") != "causal-lora-1":
            raise ModelError(f"LoRA adapter {self.adapter} has format {cfg.get('format')!r}; this medslm reads "
                             "'causal-lora-1': retrain it with `medslm train`")
        want = cfg.get("base_sha256")
        if want:
            from medslm.models.embedded import weights_sha256

            have = weights_sha256(self.source)
            if have != want:
                raise ModelError(
                    f"LoRA adapter {self.adapter.name} was trained against base weights {want[:12]}…, but "
                    f"{self.source} holds {have[:12]}…; retrain the adapter on this base (`medslm train "
                    "summarize-lora`) or convert the embedded model again")
        scale = float(cfg["alpha"]) / float(cfg["r"])
        with torch.no_grad():
            for key, a in tensors.items():
                if not key.endswith(".lora_A"):
                    continue
                name = key.removesuffix(".lora_A")
                b = tensors[f"{name}.lora_B"]
                layer = model.get_submodule(name)
                layer.weight += (scale * (b.float() @ a.float())).to(layer.weight.device, layer.weight.dtype)
        log.info("merged LoRA adapter %s (r=%s) into %s", self.adapter.name, cfg["r"], self._info.id)
        return dict(cfg)

    @property
    def max_context(self) -> int:
        self.load()
        assert self._max_context is not None
        return self._max_context

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tok

    def _outlines_model(self) -> Any:
        if self._outlines is None:
            import outlines

            self._outlines = outlines.from_transformers(self._model, self._tok)
        return self._outlines

    # -- prompts -------------------------------------------------------------------------------------
    def render(self, messages: Messages) -> str:
        """The prompt text after the chat template, ending where the assistant's answer starts."""
        self.load()
        msgs = as_messages(messages)
        if getattr(self._tok, "chat_template", None):
            return str(self._tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        return "\n\n".join(m["content"] for m in msgs) + "\n"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode_prompt(self, messages: Messages, reserve: int) -> Any:
        prompt = self.render(messages)
        ids = self._tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        if ids.shape[1] + reserve > self.max_context:
            raise ModelError(
                f"prompt of {ids.shape[1]} tokens plus {reserve} to generate exceeds the context of "
                f"{self._info.id} ({self.max_context} tokens); chunk the input first"
            )
        return ids.to(self.device)

    def _index(self, regex: str) -> Any:
        """The outlines-core index (token-level automaton) of a regex, built once per pattern."""
        if regex not in self._indexes:
            from outlines.backends.outlines_core import OutlinesCoreBackend
            from outlines_core import Index

            if self._vocabulary is None:  # built once per model: the slow part of a first constraint
                self._vocabulary = OutlinesCoreBackend(self._outlines_model()).vocabulary
            self._indexes[regex] = Index(regex, self._vocabulary)
            while len(self._indexes) > 256:
                self._indexes.pop(next(iter(self._indexes)))
        return self._indexes[regex]

    def _processor(self, constraint: Constraint | None) -> Any:
        if constraint is None:
            return None
        from outlines.backends.outlines_core import OutlinesCoreLogitsProcessor

        if isinstance(constraint, JsonSchema):
            from outlines_core.json_schema import build_regex_from_schema

            # compact JSON: free whitespace lets a small model wander until max_tokens
            regex = build_regex_from_schema(json.dumps(constraint.as_dict()), r"[ ]?")
        elif isinstance(constraint, Choice):
            regex = choice_regex(constraint.options)
        elif isinstance(constraint, Regex):
            regex = constraint.pattern
        else:
            raise ConfigurationError(
                f"unknown constraint {type(constraint).__name__}; use JsonSchema, Choice or Regex"
            )
        return OutlinesCoreLogitsProcessor(self._index(regex), "torch")

    # -- the protocol ---------------------------------------------------------------------------------
    def generate(
        self,
        messages: Messages,
        constraint: Constraint | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        return self.generate_batch([messages], constraint, max_tokens=max_tokens, temperature=temperature,
                                   seed=seed)[0]

    def generate_batch(
        self,
        batch: Sequence[Messages],
        constraint: Constraint | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        """Generate for several prompts in one padded batch (faster per item on CPU and GPU)."""
        import torch
        from transformers import LogitsProcessorList

        with self._lock:
            self.load()
            t0 = time.perf_counter()
            encoded = [self._encode_prompt(m, max_tokens)[0] for m in batch]
            width = max(len(e) for e in encoded)
            pad = self._tok.pad_token_id
            input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
            attention = torch.zeros((len(encoded), width), dtype=torch.long)
            for i, e in enumerate(encoded):  # left padding
                input_ids[i, width - len(e):] = e
                attention[i, width - len(e):] = 1
            processor = self._processor(constraint)
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_tokens,
                "do_sample": temperature > 0,
                "return_dict_in_generate": True,
                "output_logits": True,
                "pad_token_id": pad,
                "eos_token_id": self._tok.eos_token_id,
            }
            if temperature > 0:
                kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
                if seed is not None:
                    torch.manual_seed(seed)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            if processor is not None:
                kwargs["logits_processor"] = LogitsProcessorList([processor])
            with torch.inference_mode():
                out = self._model.generate(input_ids=input_ids.to(self.device),
                                           attention_mask=attention.to(self.device), **kwargs)
            latency = time.perf_counter() - t0
            seqs = out.sequences[:, width:]
            logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (batch, steps, vocab)
            results = []
            for i in range(len(encoded)):
                ids = seqs[i].tolist()
                # cut at the first end-of-sequence token
                n = next((k for k, t in enumerate(ids) if t == self._tok.eos_token_id), len(ids))
                ids = ids[:n]
                lps = tuple(float(logprobs[i, k, t]) for k, t in enumerate(ids))
                text = self._tok.decode(ids, skip_special_tokens=True)
                value = self._parse(text, constraint, n >= max_tokens)
                results.append(Generation(value=value, text=text, token_logprobs=lps, tokens_in=len(encoded[i]),
                                          tokens_out=len(ids), latency_s=latency / len(encoded), model=self._info))
            return results

    def generate_many(
        self,
        batch: Sequence[Messages],
        constraint: Constraint | None = None,
        *,
        max_tokens: int | Sequence[int] = 256,
        no_repeat_ngram: int = 0,
    ) -> list[Generation]:
        """Greedy generation for prompts that share a beginning (one note, several instructions).

        The tokens every prompt starts with are encoded once and their KV cache shared; each row then
        goes on from its own remaining tokens; a row leaves the batch as soon as it is finished (end of
        turn, or its own ``max_tokens``), so short answers stop costing compute. Each row is decoded
        under ``constraint`` (outlines-core guides), and its token log-probabilities are the model's raw
        distribution, as in :meth:`generate_batch`. Special tokens other than the end of turn are never
        written (a grammar that allows "<" would otherwise let "<|im_start|>" through as text);
        ``no_repeat_ngram=k`` forbids a row to repeat any k tokens it wrote (a small model's loops).
        """
        import torch

        n = len(batch)
        if n == 0:
            return []
        limits = [int(max_tokens)] * n if isinstance(max_tokens, int) else [int(m) for m in max_tokens]
        if len(limits) != n:
            raise ConfigurationError(f"generate_many got {n} prompts and {len(limits)} max_tokens")
        with self._lock:
            self.load()
            t0 = time.perf_counter()
            encoded = [self._encode_prompt(m, max(limits))[0].tolist() for m in batch]
            common = min(len(e) for e in encoded) - 1  # every row keeps at least one token of its own
            for k in range(common):
                if any(e[k] != encoded[0][k] for e in encoded[1:]):
                    common = k
                    break
            rests = [e[common:] for e in encoded]
            width = max(len(r) for r in rests)
            pad = self._tok.pad_token_id
            eos = self._tok.eos_token_id
            index = None
            if constraint is not None:
                from outlines_core import Guide
                from outlines_core.kernels.torch import allocate_token_bitmask, fill_next_token_bitmask

                index = self._index(self._constraint_regex(constraint))
                guides = [Guide(index) for _ in range(n)]
            cache_kw = _cache_kwarg(self._model)
            out_ids: list[list[int]] = [[] for _ in range(n)]
            out_lps: list[list[float]] = [[] for _ in range(n)]
            with torch.inference_mode():
                cache = None
                if common > 0:
                    first = self._model(input_ids=torch.tensor([encoded[0][:common]], device=self.device),
                                        use_cache=True, logits_to_keep=1)
                    cache = _cache_of(first)
                    cache.batch_repeat_interleave(n)
                # each row's own tokens, left-padded inside the block after the shared prefix
                ids = torch.full((n, width), pad, dtype=torch.long)
                attn = torch.zeros((n, common + width), dtype=torch.long)
                attn[:, :common] = 1
                for i, r in enumerate(rests):
                    ids[i, width - len(r):] = torch.tensor(r)
                    attn[i, common + width - len(r):] = 1
                pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, common:]
                kwargs: dict[str, Any] = {cache_kw: cache} if cache is not None else {}
                out = self._model(input_ids=ids.to(self.device), attention_mask=attn.to(self.device),
                                  position_ids=pos.to(self.device), use_cache=True, logits_to_keep=1, **kwargs)
                cache = _cache_of(out)
                logits = out.logits[:, -1, :].float()
                alive = list(range(n))  # original row of each batch position
                next_pos = pos[:, -1] + 1
                bitmask = allocate_token_bitmask(logits.shape[-1]) if index is not None else None
                shifts = torch.arange(32, dtype=torch.int32)
                special = [t for t in self._tok.all_special_ids if t != eos and t < logits.shape[-1]]
                seen_ngrams: list[dict[tuple[int, ...], set[int]]] = [{} for _ in range(n)]
                k = no_repeat_ngram
                while alive:
                    lp = logits.log_softmax(-1)
                    masked = logits.clone()
                    if special:
                        masked[:, special] = -torch.inf
                    if k > 1:
                        for b, row in enumerate(alive):
                            hist = out_ids[row]
                            banned = seen_ngrams[row].get(tuple(hist[-(k - 1):]), ()) if len(hist) >= k - 1 else ()
                            if banned:
                                masked[b, list(banned)] = -torch.inf
                    if index is not None:
                        for b, row in enumerate(alive):
                            fill_next_token_bitmask(guides[row], bitmask)
                            # unpack the bits here: outlines-core's own kernel is torch.compile'd, which
                            # costs seconds of compilation in each new process on CPU
                            allowed = ((bitmask[0].unsqueeze(-1) >> shifts) & 1).bool().view(-1)[: masked.shape[-1]]
                            masked[b].masked_fill_(~allowed.to(masked.device), -torch.inf)
                    tokens = masked.argmax(-1).tolist()
                    dead_end = torch.isinf(masked.max(-1).values).tolist()  # every token banned: end the row
                    keep: list[int] = []
                    for b, row in enumerate(alive):
                        tok = tokens[b]
                        if tok == eos or dead_end[b]:
                            continue
                        if k > 1 and len(out_ids[row]) >= k - 1:
                            seen_ngrams[row].setdefault(tuple(out_ids[row][-(k - 1):]), set()).add(tok)
                        out_ids[row].append(tok)
                        out_lps[row].append(float(lp[b, tok]))
                        if index is not None:
                            guides[row].advance(token_id=tok, return_tokens=False)
                        if len(out_ids[row]) < limits[row]:
                            keep.append(b)
                    if not keep:
                        break
                    if len(keep) < len(alive):
                        sel = torch.tensor(keep)
                        cache.batch_select_indices(sel.to(self.device))
                        attn = attn[sel]
                        next_pos = next_pos[sel]
                        alive = [alive[b] for b in keep]
                        step_tokens = [tokens[b] for b in keep]
                    else:
                        step_tokens = tokens
                    attn = torch.cat([attn, torch.ones((len(alive), 1), dtype=torch.long)], dim=1)
                    out = self._model(input_ids=torch.tensor(step_tokens, device=self.device)[:, None],
                                      attention_mask=attn.to(self.device), position_ids=next_pos[:, None].to(self.device),
                                      use_cache=True, **{cache_kw: cache})
                    cache = _cache_of(out)
                    logits = out.logits[:, -1, :].float()
                    next_pos = next_pos + 1
            latency = time.perf_counter() - t0
            results = []
            for i in range(n):
                text = self._tok.decode(out_ids[i], skip_special_tokens=True)
                value = self._parse(text, constraint, len(out_ids[i]) >= limits[i])
                results.append(Generation(value=value, text=text, token_logprobs=tuple(out_lps[i]),
                                          tokens_in=len(encoded[i]), tokens_out=len(out_ids[i]),
                                          latency_s=latency / n, model=self._info))
            log.debug("generate_many: %d rows, %d shared prompt tokens, %.2f s", n, common, latency)
            return results

    def _constraint_regex(self, constraint: Constraint) -> str:
        if isinstance(constraint, JsonSchema):
            from outlines_core.json_schema import build_regex_from_schema

            return str(build_regex_from_schema(json.dumps(constraint.as_dict()), r"[ ]?"))
        if isinstance(constraint, Choice):
            return choice_regex(constraint.options)
        if isinstance(constraint, Regex):
            return constraint.pattern
        raise ConfigurationError(f"unknown constraint {type(constraint).__name__}; use JsonSchema, Choice or Regex")

    def _parse(self, text: str, constraint: Constraint | None, truncated: bool) -> Any:
        if isinstance(constraint, JsonSchema):
            try:
                return constraint.parse(text)
            except ValueError as exc:
                # Only reachable when max_tokens cut the JSON short: the grammar itself cannot fail.
                raise ModelError(
                    f"{self._info.id}: JSON output was cut at max_tokens ({len(text)} characters); raise "
                    "max_tokens or bound the schema (maxLength / maxItems)"
                    if truncated else f"{self._info.id}: output did not validate: {exc}"
                ) from None
        return text

    def score_choices(self, messages: Messages, options: Sequence[str]) -> ChoiceScores:
        import torch

        opts = tuple(options)
        if not opts:
            raise ConfigurationError("score_choices needs at least one option")
        with self._lock:
            self.load()
            t0 = time.perf_counter()
            prompt_ids = self._encode_prompt(messages, 32)
            eos = self._tok.eos_token_id
            opt_ids = [self._tok(o, add_special_tokens=False)["input_ids"] + [eos] for o in opts]
            with torch.inference_mode():
                first = self._model(input_ids=prompt_ids, use_cache=True)
                first_lp = first.logits[0, -1].float().log_softmax(-1)
                totals = [float(first_lp[ids[0]]) for ids in opt_ids]
                longest = max(len(ids) for ids in opt_ids)
                if longest > 1:
                    n = len(opts)
                    cache = _cache_of(first)
                    cache.batch_repeat_interleave(n)
                    width = longest - 1  # feed all but the last token of each option
                    feed = torch.full((n, width), self._tok.pad_token_id, dtype=torch.long)
                    for i, ids in enumerate(opt_ids):
                        feed[i, : len(ids) - 1] = torch.tensor(ids[:-1])
                    attn = torch.ones((n, prompt_ids.shape[1] + width), dtype=torch.long)
                    for i, ids in enumerate(opt_ids):
                        attn[i, prompt_ids.shape[1] + len(ids) - 1:] = 0
                    out = self._model(input_ids=feed.to(self.device), attention_mask=attn.to(self.device),
                                      use_cache=True, **{_cache_kwarg(self._model): cache})
                    lp = out.logits.float().log_softmax(-1)
                    for i, ids in enumerate(opt_ids):
                        totals[i] += sum(float(lp[i, k, ids[k + 1]]) for k in range(len(ids) - 1))
            return ChoiceScores(options=opts, logprobs=tuple(totals), tokens_in=int(prompt_ids.shape[1]),
                                latency_s=time.perf_counter() - t0, model=self._info)


def _cache_of(output: Any) -> Any:
    """The KV cache of a forward pass (``cache`` since transformers 5.2x, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _cache_kwarg(model: Any) -> str:
    """The name ``forward`` takes a KV cache under (transformers renamed ``past_key_values`` to ``cache``)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


__all__ = ["TransformersModel", "choice_regex"]
