"""The PHI boundary: what a model endpoint off this machine receives, and how its answer comes back.

Every request to a model whose ``ModelInfo.remote`` is True passes through :class:`PhiBoundary` unless
``Settings.allow_phi_to_remote`` is set: each message's text is de-identified (PHI found by the rules and
spaCy, plus every PHI string the guardian has registered in this process, so a name found once in the
note is replaced in a one-sentence prompt too) with keyed surrogates (:mod:`medslm.safety.deid`), and the
model's answer is re-identified (surrogates back to the original strings) before any agent sees it. So
agents always work on the original note: evidence offsets index the original text, and the LLM never
sees a name, MRN, date or phone.

It is enforced where text leaves the process:

- :class:`medslm.models.openai_compat.OpenAICompatibleModel` routes its own requests through it whenever
  its endpoint is remote (every role, the guardian, the escalator, caller-supplied messages);
- :func:`medslm.models.catalog.load_model` wraps any other remote model (a third-party backend) in
  :class:`DeidentifyingModel`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medslm.records import PhiSpan


@dataclass
class Reidentifier:
    """Surrogate -> original strings of one request: puts PHI back into the model's answer."""

    reverse: dict[str, str] = field(default_factory=dict)

    def text(self, s: str) -> str:
        from medslm.safety.deid import reidentify

        return reidentify(s, self.reverse) if self.reverse else s

    def value(self, v: Any) -> Any:
        """Re-identify every string inside ``v`` (str, list, tuple, dict, pydantic model)."""
        if not self.reverse:
            return v
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self.value(x) for x in v)
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        dump = getattr(v, "model_dump", None)
        if callable(dump):
            try:
                return type(v).model_validate(self.value(dump(mode="json")))
            except ValueError:
                return v  # the re-identified value no longer validates: keep the model's own
        return v

    def leaked(self, s: str) -> list[str]:
        """Surrogates still present in ``s`` (a model that reworded a name keeps a surrogate)."""
        return [k for k in self.reverse if len(k) >= 4 and re.search(rf"(?<!\w){re.escape(k)}(?!\w)", s)]


class PhiBoundary:
    """De-identifies outgoing messages and re-identifies answers (see the module docstring)."""

    def __init__(self, *, seed: int = 0, use_ner: bool = True, use_registered: bool = True) -> None:
        self.seed = seed
        self.use_ner = use_ner
        self.use_registered = use_registered
        self.requests = 0  # messages de-identified (for tests and metrics)
        self._lock = threading.Lock()

    def spans(self, text: str, *, ner: bool | None = None) -> list[PhiSpan]:
        from medslm.safety.phi import find_phi, resolve_spans

        found = list(find_phi(text, use_ner=self.use_ner if ner is None else ner))
        if self.use_registered:
            from medslm.safety.redaction import known_phi_spans

            found += known_phi_spans(text)
        return resolve_spans(found)

    def deidentify_text(self, text: str, back: Reidentifier, *, ner: bool | None = None) -> str:
        from medslm.safety.deid import deidentify

        if not text or not text.strip():
            return text
        d = deidentify(text, seed=self.seed, spans=self.spans(text, ner=ner))
        for sur, orig in d.reverse_mapping().items():
            back.reverse.setdefault(sur, orig)
        return d.text

    def outbound(self, messages: Any) -> tuple[list[dict[str, str]], Reidentifier]:
        """De-identified copies of ``messages`` (a string or chat messages) and the way back."""
        from medslm.models.base import as_messages

        back = Reidentifier()
        out = []
        for m in as_messages(messages):
            m = dict(m)
            if isinstance(m.get("content"), str):
                m["content"] = self.deidentify_text(m["content"], back)
            out.append(m)
        with self._lock:
            self.requests += 1
        return out, back

    def options(self, options: Sequence[str], back: Reidentifier) -> list[str]:
        """Choice options as sent (options quoting the note are de-identified too)."""
        # options are labels or terms (levels, "yes"/"no", code descriptions): rules and registered PHI suffice
        return [self.deidentify_text(o, back, ner=False) if len(o) > 2 else o for o in options]

    # ------------------------------------------------------------------ around a model's calls
    def generate(self, generate: Any, messages: Any, constraint: Any = None, **kwargs: Any) -> Any:
        msgs, back = self.outbound(messages)
        gen = generate(msgs, constraint, **kwargs)
        return self.inbound(gen, constraint, back)

    def generate_batch(self, generate_batch: Any, batch: Sequence[Any], constraint: Any = None,
                       **kwargs: Any) -> list[Any]:
        pairs = [self.outbound(m) for m in batch]
        gens = generate_batch([p[0] for p in pairs], constraint, **kwargs)
        return [self.inbound(g, constraint, p[1]) for g, p in zip(gens, pairs, strict=True)]

    def score_choices(self, score: Any, messages: Any, options: Sequence[str]) -> Any:
        import dataclasses

        msgs, back = self.outbound(messages)
        sent = self.options(options, back)
        scores = score(msgs, sent)
        if list(sent) == list(options):
            return scores
        return dataclasses.replace(scores, options=tuple(options))

    def inbound(self, gen: Any, constraint: Any, back: Reidentifier) -> Any:
        """A generation with the original strings put back (value and text)."""
        import dataclasses

        from medslm.models.base import Choice, Regex

        if not back.reverse:
            return gen
        if isinstance(constraint, Choice):
            return gen  # one of the caller's options, already in the caller's terms
        text = back.text(gen.text)
        value = gen.value
        if isinstance(constraint, Regex):
            if isinstance(value, str):
                new = back.text(value)
                value = new if re.fullmatch(constraint.pattern, new) else value
        else:
            value = back.value(value)
        return dataclasses.replace(gen, value=value, text=text)


class DeidentifyingModel:
    """A remote :class:`~medslm.models.base.LanguageModel` behind a :class:`PhiBoundary`."""

    def __init__(self, inner: Any, boundary: PhiBoundary | None = None) -> None:
        self.inner = inner
        self.boundary = boundary or PhiBoundary()
        if callable(getattr(inner, "generate_batch", None)):
            self.generate_batch = self._generate_batch

    @property
    def info(self) -> Any:
        return self.inner.info

    def generate(self, messages: Any, constraint: Any = None, **kwargs: Any) -> Any:
        return self.boundary.generate(self.inner.generate, messages, constraint, **kwargs)

    def _generate_batch(self, batch: Sequence[Any], constraint: Any = None, **kwargs: Any) -> list[Any]:
        return self.boundary.generate_batch(self.inner.generate_batch, batch, constraint, **kwargs)

    def score_choices(self, messages: Any, options: Sequence[str]) -> Any:
        return self.boundary.score_choices(self.inner.score_choices, messages, options)

    def __getattr__(self, name: str) -> Any:  # load(), close(), attempts… of the wrapped model
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"DeidentifyingModel({self.inner!r})"


def needs_boundary(model: Any, *, allow_phi: bool = False) -> bool:
    """True when ``model`` sends text off this machine and the user did not allow PHI to go."""
    if allow_phi or isinstance(model, DeidentifyingModel):
        return False
    if hasattr(model, "deidentifies"):  # a backend that guards its own requests (OpenAI-compatible)
        return False
    info = getattr(model, "info", None)
    try:
        return bool(getattr(info, "remote", False))
    except Exception:  # noqa: BLE001 - a model whose info cannot be read is treated as remote
        return True


def protect(model: Any, *, allow_phi: bool = False, seed: int = 0) -> Any:
    """``model`` itself, or wrapped in :class:`DeidentifyingModel` when it is remote (see
    :func:`needs_boundary`)."""
    if not needs_boundary(model, allow_phi=allow_phi):
        return model
    return DeidentifyingModel(model, PhiBoundary(seed=seed))


__all__ = ["DeidentifyingModel", "PhiBoundary", "Reidentifier", "needs_boundary", "protect"]
