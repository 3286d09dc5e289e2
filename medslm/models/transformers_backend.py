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


def default_threads() -> int | None:
    """Torch intra-op threads while this backend computes on CPU: ``$MEDSLM_LM_THREADS``, else 1.

    On a 2-core machine shared with other processes, 2 spin-waiting OpenMP threads made the summarizer's
    decoding several times slower than 1 thread (bench/runner.py, docs/batching.md: a note's sections in
    ~40 s with 1 thread vs > 200 s with 2 at load 9-12); the notes in flight are batched instead, one
    batch at a time. ``MEDSLM_LM_THREADS=0`` leaves torch's setting alone (a quiet or larger machine).
    """
    import os

    raw = os.environ.get("MEDSLM_LM_THREADS", "1").strip()
    return int(raw) if raw else None


def _threads(model: TransformersModel) -> Any:
    from medslm.models.encoder import intra_op_threads

    return intra_op_threads(model.threads if str(model.device).startswith("cpu") else None)


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
        threads: int | None = -1,
    ) -> None:
        self.source = str(source)
        self.threads = default_threads() if threads == -1 else threads
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
        from medslm.models.batching import MicroBatcher

        # concurrent calls (the notes a batch runner keeps in flight) meet in one padded batch
        name = Path(self.source).name
        self._batchers = {
            "generate_many": MicroBatcher(self._many_rows, name=f"{name}.generate_many", device=device, max_batch=8),
            "generate_batch": MicroBatcher(self._batch_rows, name=f"{name}.generate_batch", device=device, max_batch=8),
            "score_choices": MicroBatcher(self._score_rows, name=f"{name}.score_choices", device=device, max_batch=16),
        }

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
        """Generate for several prompts in one padded batch (faster per item on CPU and GPU).

        Greedy calls that arrive together from other threads (same constraint and ``max_tokens``) join
        the same batch; sampling (``temperature > 0``) runs alone, so that a seed gives the same draw."""
        if not batch:
            return []
        if temperature > 0:
            with _threads(self):
                return self._generate_batch_now(batch, constraint, max_tokens=max_tokens, temperature=temperature,
                                                seed=seed)
        return self._batchers["generate_batch"]((tuple(batch), constraint, max_tokens),
                                                group=(self._constraint_key(constraint), max_tokens))

    def _batch_rows(self, calls: list[tuple[tuple[Messages, ...], Constraint | None, int]]) -> list[Any]:
        msgs = [m for call in calls for m in call[0]]
        with _threads(self):
            gens = self._generate_batch_now(msgs, calls[0][1], max_tokens=calls[0][2])
        out, at = [], 0
        for call in calls:
            out.append(gens[at : at + len(call[0])])
            at += len(call[0])
        return out

    @staticmethod
    def _constraint_key(constraint: Constraint | None) -> Any:
        if constraint is None:
            return None
        if isinstance(constraint, JsonSchema):
            return ("json", json.dumps(constraint.as_dict(), sort_keys=True))
        if isinstance(constraint, Choice):
            return ("choice", tuple(constraint.options))
        if isinstance(constraint, Regex):
            return ("regex", constraint.pattern)
        return ("other", id(constraint))

    def _generate_batch_now(
        self,
        batch: Sequence[Messages],
        constraint: Constraint | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
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

        Calls that arrive together from other threads (the notes a batch runner keeps in flight) are
        decoded in the same batch: each call's prefix is encoded once (the prefixes side by side,
        left-padded), then all rows of all calls decode together, each under its own constraint.
        """
        n = len(batch)
        if n == 0:
            return []
        limits = [int(max_tokens)] * n if isinstance(max_tokens, int) else [int(m) for m in max_tokens]
        if len(limits) != n:
            raise ConfigurationError(f"generate_many got {n} prompts and {len(limits)} max_tokens")
        return self._batchers["generate_many"]((tuple(batch), constraint, tuple(limits), int(no_repeat_ngram)))

    def _many_rows(self, calls: list[tuple[tuple[Messages, ...], Constraint | None, tuple[int, ...], int]]) -> list[Any]:
        """Decode the rows of several ``generate_many`` calls in one batch: each call's generations (or the
        error of that call alone)."""
        import torch

        with self._lock, _threads(self):
            self.load()
            t0 = time.perf_counter()
            rows: list[tuple[int, list[int], int, Constraint | None, int]] = []  # call, own tokens, limit, constraint, k
            prefixes: list[list[int]] = []
            tokens_in: list[int] = []
            for g, (msgs, constraint, limits, ngram) in enumerate(calls):
                encoded = [self._encode_prompt(m, max(limits))[0].tolist() for m in msgs]
                common = min(len(e) for e in encoded) - 1  # every row keeps at least one token of its own
                for k in range(common):
                    if any(e[k] != encoded[0][k] for e in encoded[1:]):
                        common = k
                        break
                prefixes.append(encoded[0][:common])
                for e, lim in zip(encoded, limits, strict=True):
                    rows.append((g, e[common:], lim, constraint, ngram))
                    tokens_in.append(len(e))
            if len(calls) > 1 and not all(prefixes):  # a call without a shared prefix: decode the calls apart
                return [self._many_rows([c])[0] for c in calls]
            n = len(rows)
            width = max(len(r[1]) for r in rows)
            pad = self._tok.pad_token_id
            eos = self._tok.eos_token_id
            guides: list[Any] = [None] * n
            if any(r[3] is not None for r in rows):
                from outlines_core import Guide
                from outlines_core.kernels.torch import allocate_token_bitmask, fill_next_token_bitmask

                for i, r in enumerate(rows):
                    if r[3] is not None:
                        guides[i] = Guide(self._index(self._constraint_regex(r[3])))
            cache_kw = _cache_kwarg(self._model)
            out_ids: list[list[int]] = [[] for _ in range(n)]
            out_lps: list[list[float]] = [[] for _ in range(n)]
            width_p = max(len(p) for p in prefixes)
            with torch.inference_mode():
                cache = None
                prefix_mask = torch.ones((len(calls), width_p), dtype=torch.long)
                if len(calls) == 1 and width_p > 0:
                    first = self._model(input_ids=torch.tensor([prefixes[0]], device=self.device),
                                        use_cache=True, logits_to_keep=1)
                    cache = _cache_of(first)
                    cache.batch_repeat_interleave(n)
                elif width_p > 0:  # the calls' prefixes side by side, left-padded
                    pids = torch.full((len(calls), width_p), pad, dtype=torch.long)
                    prefix_mask.zero_()
                    for g, p in enumerate(prefixes):
                        pids[g, width_p - len(p):] = torch.tensor(p)
                        prefix_mask[g, width_p - len(p):] = 1
                    ppos = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
                    first = self._model(input_ids=pids.to(self.device), attention_mask=prefix_mask.to(self.device),
                                        position_ids=ppos.to(self.device), use_cache=True, logits_to_keep=1)
                    cache = _cache_of(first)
                    cache.batch_select_indices(torch.tensor([r[0] for r in rows], device=self.device))
                # each row's own tokens, left-padded inside the block after the prefixes
                ids = torch.full((n, width), pad, dtype=torch.long)
                attn = torch.zeros((n, width_p + width), dtype=torch.long)
                for i, r in enumerate(rows):
                    attn[i, :width_p] = prefix_mask[r[0]]
                    ids[i, width - len(r[1]):] = torch.tensor(r[1])
                    attn[i, width_p + width - len(r[1]):] = 1
                pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, width_p:]
                kwargs: dict[str, Any] = {cache_kw: cache} if cache is not None else {}
                out = self._model(input_ids=ids.to(self.device), attention_mask=attn.to(self.device),
                                  position_ids=pos.to(self.device), use_cache=True, logits_to_keep=1, **kwargs)
                cache = _cache_of(out)
                logits = out.logits[:, -1, :].float()
                alive = list(range(n))  # original row of each batch position
                next_pos = pos[:, -1] + 1
                bitmask = allocate_token_bitmask(logits.shape[-1]) if any(g is not None for g in guides) else None
                shifts = torch.arange(32, dtype=torch.int32)
                special = [t for t in self._tok.all_special_ids if t != eos and t < logits.shape[-1]]
                seen_ngrams: list[dict[tuple[int, ...], set[int]]] = [{} for _ in range(n)]
                while alive:
                    lp = logits.log_softmax(-1)
                    masked = logits.clone()
                    if special:
                        masked[:, special] = -torch.inf
                    for b, row in enumerate(alive):
                        k = rows[row][4]
                        if k > 1:
                            hist = out_ids[row]
                            banned = seen_ngrams[row].get(tuple(hist[-(k - 1):]), ()) if len(hist) >= k - 1 else ()
                            if banned:
                                masked[b, list(banned)] = -torch.inf
                        if guides[row] is not None:
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
                        k = rows[row][4]
                        if k > 1 and len(out_ids[row]) >= k - 1:
                            seen_ngrams[row].setdefault(tuple(out_ids[row][-(k - 1):]), set()).add(tok)
                        out_ids[row].append(tok)
                        out_lps[row].append(float(lp[b, tok]))
                        if guides[row] is not None:
                            guides[row].advance(token_id=tok, return_tokens=False)
                        if len(out_ids[row]) < rows[row][2]:
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
            results: list[Any] = [[] for _ in calls]
            for i, (g, _, limit, constraint, _) in enumerate(rows):
                if isinstance(results[g], BaseException):
                    continue
                text = self._tok.decode(out_ids[i], skip_special_tokens=True)
                try:
                    value = self._parse(text, constraint, len(out_ids[i]) >= limit)
                except ModelError as exc:  # fails this call alone
                    results[g] = exc
                    continue
                results[g].append(Generation(value=value, text=text, token_logprobs=tuple(out_lps[i]),
                                             tokens_in=tokens_in[i], tokens_out=len(out_ids[i]),
                                             latency_s=latency / n, model=self._info))
            log.debug("generate_many: %d calls, %d rows, %s shared prompt tokens, %.2f s", len(calls), n,
                      [len(p) for p in prefixes], latency)
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
        """Log-probability of each option (plus the end of turn) after the prompt: the prompt runs once,
        then every option as one padded batch on its KV cache. Calls that arrive together from other
        threads share those two forward passes (their prompts side by side, left-padded)."""
        opts = tuple(options)
        if not opts:
            raise ConfigurationError("score_choices needs at least one option")
        return self._batchers["score_choices"]((messages, opts))

    def _score_rows(self, calls: list[tuple[Messages, tuple[str, ...]]]) -> list[ChoiceScores]:
        import torch

        with self._lock, _threads(self):
            self.load()
            t0 = time.perf_counter()
            prompts = [self._encode_prompt(m, 32)[0].tolist() for m, _ in calls]
            eos = self._tok.eos_token_id
            pad = self._tok.pad_token_id
            opt_ids = [[self._tok(o, add_special_tokens=False)["input_ids"] + [eos] for o in opts] for _, opts in calls]
            g_count = len(calls)
            width_p = max(len(p) for p in prompts)
            with torch.inference_mode():
                if g_count == 1:
                    mask = torch.ones((1, width_p), dtype=torch.long)
                    first = self._model(input_ids=torch.tensor(prompts, device=self.device), use_cache=True,
                                        logits_to_keep=1)
                else:  # the prompts side by side, left-padded
                    pids = torch.full((g_count, width_p), pad, dtype=torch.long)
                    mask = torch.zeros((g_count, width_p), dtype=torch.long)
                    for g, p in enumerate(prompts):
                        pids[g, width_p - len(p):] = torch.tensor(p)
                        mask[g, width_p - len(p):] = 1
                    first = self._model(input_ids=pids.to(self.device), attention_mask=mask.to(self.device),
                                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(self.device),
                                        use_cache=True, logits_to_keep=1)
                first_lp = first.logits[:, -1].float().log_softmax(-1)
                totals = [[float(first_lp[g, ids[0]]) for ids in opt_ids[g]] for g in range(g_count)]
                rows = [(g, j, ids) for g in range(g_count) for j, ids in enumerate(opt_ids[g])]
                longest = max(len(ids) for _, _, ids in rows)
                if longest > 1:
                    n = len(rows)
                    cache = _cache_of(first)
                    if g_count == 1:
                        cache.batch_repeat_interleave(n)
                    else:
                        cache.batch_select_indices(torch.tensor([g for g, _, _ in rows], device=self.device))
                    width = longest - 1  # feed all but the last token of each option
                    feed = torch.full((n, width), pad, dtype=torch.long)
                    attn = torch.zeros((n, width_p + width), dtype=torch.long)
                    for r, (g, _, ids) in enumerate(rows):
                        feed[r, : len(ids) - 1] = torch.tensor(ids[:-1])
                        attn[r, :width_p] = mask[g]
                        attn[r, width_p : width_p + len(ids) - 1] = 1
                    kw: dict[str, Any] = {}
                    if g_count > 1:
                        kw["position_ids"] = (attn.cumsum(-1) - 1).clamp(min=0)[:, width_p:].to(self.device)
                    out = self._model(input_ids=feed.to(self.device), attention_mask=attn.to(self.device),
                                      use_cache=True, **{_cache_kwarg(self._model): cache}, **kw)
                    lp = out.logits.float().log_softmax(-1)
                    for r, (g, j, ids) in enumerate(rows):
                        totals[g][j] += sum(float(lp[r, k, ids[k + 1]]) for k in range(len(ids) - 1))
            latency = time.perf_counter() - t0
            return [ChoiceScores(options=opts, logprobs=tuple(totals[g]), tokens_in=len(prompts[g]),
                                 latency_s=latency / g_count, model=self._info)
                    for g, (_, opts) in enumerate(calls)]


def _cache_of(output: Any) -> Any:
    """The KV cache of a forward pass (``cache`` since transformers 5.2x, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _cache_kwarg(model: Any) -> str:
    """The name ``forward`` takes a KV cache under (transformers renamed ``past_key_values`` to ``cache``)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


__all__ = ["TransformersModel", "choice_regex", "default_threads"]
