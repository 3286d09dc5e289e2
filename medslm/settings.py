"""Settings: one frozen object, from code, environment (``MEDSLM_*``) or a TOML file.

Model specs are short strings resolved by :mod:`medslm.models.catalog`:

- ``"embedded"`` - SmolLM2-135M-Instruct shipped on PyPI (the default for every role);
- ``"transformers:<hub-id-or-path>"`` - any causal LM transformers can load;
- ``"openai:http://127.0.0.1:8000/v1#model"`` - any OpenAI-compatible endpoint (vLLM, llama.cpp server);
- ``"llamacpp:/path/model.gguf"``, ``"vllm:<hub-id-or-path>"`` - optional backends (extras).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medslm import registry
from medslm.records import DEFAULT_MAX_NOTE_CHARS

#: Model roles of medslm's own agents (from the registry) and the guardian. Plug-in agents' roles are
#: in :func:`medslm.registry.roles`; every role without a spec uses ``"embedded"``.
ROLES = registry.roles(plugins=False)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def default_cache_dir() -> Path:
    env = os.environ.get("MEDSLM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medslm"


class Settings(BaseModel):
    """Configuration of a medslm run. Its :meth:`config_hash` keys the results store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, str] = Field(
        default_factory=lambda: dict.fromkeys(ROLES, "embedded"),
        description="role -> model spec; roles: each agent's (ner, icd, triage, summarize…) and guardian",
    )
    escalation_model: str | None = Field(
        default=None, description="spec of the large LLM to escalate to (an 'openai:' endpoint); None: humans"
    )
    escalation_budget: int | None = Field(default=None, description="max escalations per job (None: no cap)")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="agent -> confidence under which its result escalates (or goes to review); others 0.5",
    )
    allow_phi_to_remote: bool = Field(
        default=False, description="send identified text to an endpoint not on this machine (off: de-identified)"
    )
    max_note_chars: int = Field(default=DEFAULT_MAX_NOTE_CHARS, gt=0)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    data_dir: Path | None = Field(default=None, description="public datasets for evals (../shared/data)")
    artifacts: Path | None = Field(
        default=None,
        description="folder of retrained artifacts (medslm train --out); components it lacks come from the package",
    )
    log_phi: bool = Field(default=False, description="debug only: allow note text in logs")
    store_note_text: bool = Field(
        default=True, description="keep the note text in the results store and output files (off for `serve`)"
    )
    log_level: str = Field(default="WARNING", description="medslm's log level (MEDSLM_LOG_LEVEL; -v: INFO, -vv: DEBUG)")
    seed: int = 0

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        level = str(v).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"log level {v!r} is not one of {', '.join(LOG_LEVELS)}")
        return level

    def model_for(self, role: str) -> str:
        return self.models.get(role, "embedded")

    def with_models(self, **specs: str) -> Settings:
        return self.model_copy(update={"models": {**self.models, **specs}})

    def config_hash(self) -> str:
        """Hash of everything that changes results (not paths, not logging)."""
        keyed: dict[str, Any] = self.model_dump(
            mode="json", exclude={"cache_dir", "data_dir", "log_phi", "escalation_budget", "store_note_text",
                                  "log_level", "artifacts"}
        )
        # the trained artifacts a run loads change its results: key on their manifests, not their path
        from medslm.artifacts import user_root

        user = user_root(self.artifacts)
        keyed["artifacts"] = _artifacts_fingerprint(str(user) if user is not None else None)
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read ``MEDSLM_MODEL_<ROLE>``, ``MEDSLM_ESCALATION_MODEL``, ``MEDSLM_DATA_DIR``…"""
        values: dict[str, Any] = {}
        roles = registry.roles()
        models = {r: os.environ[f"MEDSLM_MODEL_{r.upper()}"] for r in roles if f"MEDSLM_MODEL_{r.upper()}" in os.environ}
        if "MEDSLM_MODEL" in os.environ:
            models = {**dict.fromkeys(roles, os.environ["MEDSLM_MODEL"]), **models}
        if models:
            values["models"] = {**dict.fromkeys(ROLES, "embedded"), **models}
        for key, env in (
            ("escalation_model", "MEDSLM_ESCALATION_MODEL"),
            ("data_dir", "MEDSLM_DATA_DIR"),
            ("max_note_chars", "MEDSLM_MAX_NOTE_CHARS"),
            ("artifacts", "MEDSLM_ARTIFACTS"),
        ):
            if env in os.environ:
                values[key] = os.environ[env]
        if os.environ.get("MEDSLM_THRESHOLDS"):
            values["thresholds"] = parse_thresholds(os.environ["MEDSLM_THRESHOLDS"].split(","))
        values["log_phi"] = os.environ.get("MEDSLM_LOG_PHI", "") == "1"
        if os.environ.get("MEDSLM_STORE_NOTE_TEXT"):
            values["store_note_text"] = os.environ["MEDSLM_STORE_NOTE_TEXT"].strip().lower() not in ("0", "false", "no")
        if os.environ.get("MEDSLM_ALLOW_PHI_TO_REMOTE"):
            values["allow_phi_to_remote"] = os.environ["MEDSLM_ALLOW_PHI_TO_REMOTE"].strip().lower() in ("1", "true", "yes")
        if os.environ.get("MEDSLM_LOG_LEVEL"):
            values["log_level"] = os.environ["MEDSLM_LOG_LEVEL"].strip().upper()
        values.update(overrides)
        return cls(**values)


@functools.lru_cache(maxsize=16)
def _artifacts_fingerprint(user: str | None) -> str:
    """Hash of the manifests of every artifact a run with this user folder would load."""
    from medslm import artifacts

    return artifacts.fingerprint([c for c, _, _ in artifacts.list_artifacts(user)], user)


def parse_thresholds(items: Sequence[str]) -> dict[str, float]:
    """``["icd=0.3", "triage=0.4"]`` -> ``{"icd": 0.3, "triage": 0.4}``, checked."""
    from medslm.errors import ConfigurationError

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.strip().partition("=")
        try:
            t = float(value)
        except ValueError:
            t = math.nan
        if not sep or not name.strip() or not 0.0 <= t <= 1.0:
            raise ConfigurationError(f"threshold {item.strip()!r}: expected AGENT=VALUE with VALUE in [0, 1]")
        out[name.strip()] = t
    return out


__all__ = ["ROLES", "Settings", "default_cache_dir", "parse_thresholds"]
