"""Model specs → loaded models, shared per process.

A spec is ``"<backend>:<target>"`` or the word ``"embedded"``::

    "embedded"                                  SmolLM2-135M-Instruct from PyPI (the default)
    "embedded?adapter=/artifacts/summarize-lora"  the same with a LoRA adapter merged in (a second copy)
    "transformers:/models/my-slm"               a local transformers folder (or a hub id, with internet);
                                                options: "?dtype=bfloat16&device=cuda&adapter=<folder>"
    "openai:http://127.0.0.1:8000/v1#my-model"  any OpenAI-compatible endpoint (vLLM, llama.cpp server)
    "llamacpp:/models/model.gguf"               llama.cpp (extra ``llamacpp``)
    "vllm:/models/my-slm"                       vLLM's offline engine on a GPU (extra ``vllm``)

Third-party backends register a factory ``(target: str, settings) -> LanguageModel`` under the
entry-point group ``medslm.backends``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from medslm.errors import ConfigurationError, UnknownNameError
from medslm.models.base import LanguageModel
from medslm.settings import Settings

Factory = Callable[[str, Settings], LanguageModel]

_CACHE: dict[str, LanguageModel] = {}
_LOCK = threading.Lock()


def _embedded(target: str, settings: Settings) -> LanguageModel:
    from medslm.models import embedded
    from medslm.models.transformers_backend import TransformersModel

    name, opts = _options(target, ("adapter",))
    if name not in ("", "smollm2-135m"):
        raise UnknownNameError("embedded model", name, ["smollm2-135m"])
    folder = embedded.converted_dir(settings.cache_dir)
    return TransformersModel(folder, model_id=embedded.MODEL_ID, revision=embedded.REVISION,
                             adapter=opts.get("adapter"))


def _options(target: str, allowed: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Split ``"path?key=value&…"``; unknown keys get a "did you mean"."""
    from urllib.parse import parse_qsl

    path, _, query = target.partition("?")
    opts = dict(parse_qsl(query))
    for key in opts:
        if key not in allowed:
            raise UnknownNameError("model option", key, allowed)
    return path, opts


def _transformers(target: str, settings: Settings) -> LanguageModel:
    from medslm.models.transformers_backend import TransformersModel

    path, opts = _options(target, ("dtype", "device", "adapter"))
    return TransformersModel(path, **opts)  # type: ignore[arg-type]


def _openai(target: str, settings: Settings) -> LanguageModel:
    from medslm.models.openai_compat import OpenAICompatibleModel

    return OpenAICompatibleModel.from_spec(target, allow_phi=settings.allow_phi_to_remote)


def _llamacpp(target: str, settings: Settings) -> LanguageModel:
    from medslm.models.llamacpp_backend import LlamaCppModel

    return LlamaCppModel(target)


def _vllm(target: str, settings: Settings) -> LanguageModel:
    from medslm.models.vllm_backend import VLLMModel

    return VLLMModel(target)


BACKENDS: dict[str, Factory] = {
    "embedded": _embedded,
    "transformers": _transformers,
    "openai": _openai,
    "llamacpp": _llamacpp,
    "vllm": _vllm,
}


def _plugin_backends() -> dict[str, Factory]:
    found: dict[str, Factory] = {}
    for ep in entry_points(group="medslm.backends"):
        found[ep.name] = ep.load()
    return found


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"backend:target"``; ``"embedded"`` alone is allowed. Raises with a hint on typos."""
    if not spec or not isinstance(spec, str):
        raise ConfigurationError(f"a model spec must be a non-empty string, got {spec!r}")
    backend, sep, target = spec.partition(":")
    if not sep:
        if backend == "embedded":
            return "embedded", ""
        if backend.startswith("embedded?"):
            return "embedded", backend.removeprefix("embedded")
        raise ConfigurationError(
            f"model spec {spec!r} has no backend; write 'embedded', 'transformers:{spec}' or "
            f"'openai:http://host:port/v1#{spec}'"
        )
    known = {**BACKENDS, **_plugin_backends()}
    if backend not in known:
        raise UnknownNameError("model backend", backend, list(known))
    if backend != "embedded" and not target:
        raise ConfigurationError(f"model spec {spec!r} names no model after '{backend}:'")
    return backend, target


def load_model(spec: str | LanguageModel = "embedded", *, settings: Settings | None = None) -> LanguageModel:
    """The model for ``spec``, created once per process (loading its weights happens on first use).

    A model whose endpoint is not on this machine (``ModelInfo.remote``) only ever receives de-identified
    text unless ``settings.allow_phi_to_remote``: OpenAI-compatible endpoints de-identify their own
    requests, any other remote model (a third-party backend, a model object passed in) is wrapped in
    :class:`medslm.safety.boundary.DeidentifyingModel`.
    """
    settings = settings or Settings()
    if not isinstance(spec, str):
        return _protect(spec, settings)
    backend, target = parse_spec(spec)
    key = f"{backend}:{target}|phi={int(settings.allow_phi_to_remote)}"
    with _LOCK:
        if key not in _CACHE:
            factory = BACKENDS.get(backend) or _plugin_backends()[backend]
            _CACHE[key] = _protect(factory(target, settings), settings)
        return _CACHE[key]


def _protect(model: LanguageModel, settings: Settings) -> LanguageModel:
    from medslm.safety.boundary import needs_boundary, protect  # the seam where text leaves the process

    if not needs_boundary(model, allow_phi=settings.allow_phi_to_remote):
        return model
    return protect(model, allow_phi=settings.allow_phi_to_remote, seed=settings.seed)  # type: ignore[no-any-return]


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def describe(model: Any) -> str:
    info = getattr(model, "info", None)
    return f"{info.backend}:{info.id}" if info else repr(model)


__all__ = ["BACKENDS", "clear_cache", "describe", "load_model", "parse_spec"]
