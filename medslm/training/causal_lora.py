"""Fine-tune a causal language model with LoRA (``peft``): prompt -> target, loss on the target tokens only.

Used by ``medslm train summarize-lora`` on the embedded SmolLM2-135M-Instruct: the base is exactly the
folder the runtime loads (:func:`medslm.models.embedded.converted_dir`, de-quantised from the shipped
Q4_1 GGUF), so the adapter is trained against the weights it will be merged into.

- Each example is a chat prompt (rendered with the model's chat template, as at run time) and the
  assistant's answer; the answer ends with the end-of-turn token, so the model learns where to stop.
- Batches are built by length (examples sorted, packed until ``tokens_per_batch`` padded tokens), the
  batch order shuffled with the seed: little padding on CPU and GPU.
- The language-model head runs only at target positions (the head is a fifth of the model's work per
  token and most tokens are prompt).
- bf16 autocast on CUDA; fp32 on CPU. Seeded. Linear warm-up and decay, gradient clipping, the epoch with
  the lowest loss on the tune examples kept.

Writes ``adapter.safetensors`` (the LoRA matrices, fp16) and ``config.json`` (rank, alpha, target
modules, the base weights' sha256, prompt version) into ``out``; :class:`medslm.models.transformers_backend.
TransformersModel` merges them into the base at load time (``adapter=``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "causal-lora-1"
ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class CausalExample:
    """A chat prompt and the answer to learn."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    target: str

    @classmethod
    def of(cls, messages: Sequence[dict[str, str]], target: str) -> CausalExample:
        return cls(tuple((m["role"], m["content"]) for m in messages), target)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class CausalLoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    epochs: int = 2
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: float = 0.05
    max_length: int = 2048
    tokens_per_batch: int = 16384  # padded tokens per optimizer step
    max_batch: int = 32
    patience: int = 1
    max_steps: int | None = None  # cap (smoke tests)
    save_dtype: str = "float16"


@dataclass
class Encoded:
    ids: list[int]
    n_prompt: int  # loss starts after this many tokens


@dataclass
class TrainHistory:
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    best_tune_loss: float = math.inf
    best_epoch: int = 0
    trainable_params: int = 0
    examples: int = 0
    dropped_too_long: int = 0
    train_tokens: int = 0


def load_base(folder: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """Tokenizer and fp32 model of a transformers folder, for training."""
    from medslm.models._hf import require_transformers

    transformers = require_transformers()
    import torch

    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, model


def encode(tok: Any, ex: CausalExample, max_length: int) -> Encoded | None:
    """Prompt tokens (chat template, generation prompt) + target tokens + end of turn; None if too long."""
    prompt = tok.apply_chat_template(ex.chat(), tokenize=False, add_generation_prompt=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    t = tok(ex.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    if len(p) + len(t) > max_length:
        return None
    return Encoded(p + t, len(p))


def length_batches(lengths: Sequence[int], tokens_per_batch: int, max_batch: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by length so that each batch pads to at most ``tokens_per_batch`` tokens; the batch
    order is shuffled (the same seed gives the same batches)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = max([lengths[j] for j in cur] + [lengths[i]])
        if cur and (width * (len(cur) + 1) > tokens_per_batch or len(cur) >= max_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def _collate(items: Sequence[Encoded], pad: int, device: str) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(e.ids) for e in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    target = torch.zeros((len(items), width), dtype=torch.bool)  # position t predicts token t+1
    for r, e in enumerate(items):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        mask[r, : len(e.ids)] = 1
        target[r, e.n_prompt - 1 : len(e.ids) - 1] = True
    return ids.to(device), mask.to(device), target.to(device)


def _loss(model: Any, ids: Any, mask: Any, target: Any, device: str) -> tuple[Any, int]:
    """Summed cross-entropy over target tokens and their count (the LM head runs at those positions only)."""
    import torch

    inner = model.get_base_model()  # LlamaForCausalLM with LoRA layers injected
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
        sel = hidden[target]
        logits = inner.lm_head(sel)
    labels = ids[:, 1:][target[:, :-1]]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
    return loss, int(labels.numel())


def train_causal_lora(base_folder: str | Path, train: Sequence[CausalExample], tune: Sequence[CausalExample],
                      out: str | Path, *, settings: CausalLoraSettings | None = None, seed: int = 0,
                      device: str = "cpu", base_sha256: str = "", extra_config: dict[str, Any] | None = None,
                      log_every: int = 20, on_epoch: Callable[[Any, Any], dict[str, float]] | None = None
                      ) -> TrainHistory:
    """Fit a LoRA adapter on ``train``, keep the epoch with the lowest loss on ``tune``, write it to ``out``.

    ``on_epoch(tokenizer, model)`` may return extra per-epoch figures (logged in the history).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    s = settings or CausalLoraSettings()
    random.seed(seed)
    torch.manual_seed(seed)
    tok, base = load_base(base_folder, device)
    cfg = LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.target_modules),
                     bias="none", task_type="CAUSAL_LM")
    import warnings

    with warnings.catch_warnings():  # peft asks transformers a deprecated question (a FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(base, cfg)
    hist = TrainHistory(trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad))

    def enc_all(examples: Sequence[CausalExample]) -> list[Encoded]:
        out_: list[Encoded] = []
        for ex in examples:
            e = encode(tok, ex, s.max_length)
            if e is None:
                hist.dropped_too_long += 1
            else:
                out_.append(e)
        return out_

    train_enc, tune_enc = enc_all(train), enc_all(tune)
    if not train_enc:
        from medslm.errors import ConfigurationError

        raise ConfigurationError(f"no training example fits max_length={s.max_length} tokens; raise it")
    hist.examples = len(train_enc)
    hist.train_tokens = sum(len(e.ids) for e in train_enc)
    rng = random.Random(seed)
    per_epoch = len(length_batches([len(e.ids) for e in train_enc], s.tokens_per_batch, s.max_batch,
                                   random.Random(seed)))
    total = min(s.max_steps or 10**12, per_epoch * s.epochs)
    warm = max(1, int(s.warmup * total))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm)))
    pad = tok.pad_token_id

    def tune_loss() -> float:
        if not tune_enc:
            return math.nan
        model.eval()
        tot, n = 0.0, 0
        with torch.inference_mode():
            for idx in length_batches([len(e.ids) for e in tune_enc], s.tokens_per_batch, s.max_batch,
                                      random.Random(0)):
                loss, k = _loss(model, *_collate([tune_enc[i] for i in idx], pad, device), device)
                tot += float(loss)
                n += k
        return tot / max(n, 1)

    best_state: dict[str, Any] | None = None
    stale = 0
    t0 = time.perf_counter()
    for epoch in range(s.epochs):
        model.train()
        batches = length_batches([len(e.ids) for e in train_enc], s.tokens_per_batch, s.max_batch, rng)
        run_loss, run_n = 0.0, 0
        for b, idx in enumerate(batches):
            loss, k = _loss(model, *_collate([train_enc[i] for i in idx], pad, device), device)
            opt.zero_grad(set_to_none=True)
            (loss / max(k, 1)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            hist.steps += 1
            run_loss += float(loss.detach())
            run_n += k
            if log_every and (b + 1) % log_every == 0:
                log.info("epoch %d step %d/%d loss %.4f (%.0f s)", epoch + 1, b + 1, len(batches),
                         run_loss / max(run_n, 1), time.perf_counter() - t0)
            if s.max_steps is not None and hist.steps >= s.max_steps:
                break
        tl = tune_loss()
        row = {"epoch": epoch + 1, "train_loss": run_loss / max(run_n, 1), "tune_loss": tl,
               "seconds": round(time.perf_counter() - t0, 1)}
        if on_epoch is not None:
            model.eval()
            row.update(on_epoch(tok, model))
        hist.epochs.append(row)
        log.info("epoch %d: train loss %.4f, tune loss %.4f", epoch + 1, row["train_loss"], tl)
        if best_state is None or (not math.isnan(tl) and tl < hist.best_tune_loss):
            hist.best_tune_loss, hist.best_epoch, stale = tl, epoch + 1, 0
            best_state = adapter_state(model, s.save_dtype)
        else:
            stale += 1
            if stale >= s.patience:
                break
        if s.max_steps is not None and hist.steps >= s.max_steps:
            break
    hist.seconds = round(time.perf_counter() - t0, 1)
    assert best_state is not None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(best_state, str(out / ADAPTER_FILE))
    config = {"format": FORMAT, "r": s.r, "alpha": s.alpha, "target_modules": list(s.target_modules),
              "base_sha256": base_sha256, "dtype": s.save_dtype, **(extra_config or {})}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True), encoding="utf-8")
    return hist


def adapter_state(model: Any, dtype: str = "float16") -> dict[str, Any]:
    """The LoRA matrices keyed ``<module path>.lora_A`` / ``.lora_B`` (module paths of the plain base model)."""
    import torch
    from peft import get_peft_model_state_dict

    out = {}
    for k, v in get_peft_model_state_dict(model).items():
        name = k.removeprefix("base_model.model.").replace(".lora_A.weight", ".lora_A").replace(".lora_B.weight",
                                                                                              ".lora_B")
        out[name] = v.detach().to(getattr(torch, dtype)).cpu().contiguous()
    return out


def settings_dict(s: CausalLoraSettings) -> dict[str, Any]:
    d = asdict(s)
    d["target_modules"] = list(s.target_modules)
    return d


__all__ = [
    "ADAPTER_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "CausalExample",
    "CausalLoraSettings",
    "TrainHistory",
    "adapter_state",
    "encode",
    "length_batches",
    "load_base",
    "settings_dict",
    "train_causal_lora",
]
