"""Lazy imports of the transformers stack, with errors that name the extra."""

from __future__ import annotations

import os
from types import ModuleType

from medslm.errors import MissingExtraError


def require_transformers() -> ModuleType:
    # Never reach the Hugging Face hub from an offline default; users with the internet unset this.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:  # pragma: no cover - both are core dependencies
        raise MissingExtraError(package=exc.name or "transformers", extra="transformers",
                                feature="the transformers backend") from exc
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers
