"""A :class:`~medslm.models.base.LanguageModel` over any OpenAI-compatible HTTP endpoint.

Spec: ``"openai:http://127.0.0.1:8000/v1#model"``, with optional query hints after the model name:
``#model?server=vllm&timeout=30&retries=4&remote=1``. ``remote=1`` marks a loopback URL as remote (an SSH
tunnel to another machine). A remote endpoint gets de-identified text (every message, every call) and
its answers are re-identified before callers see them (:mod:`medslm.safety.boundary`), unless
``allow_phi=True`` (``Settings.allow_phi_to_remote``). ``server`` is ``vllm``, ``llamacpp`` or ``openai``; without
it the kind is detected once from ``GET /v1/models`` (vLLM says ``owned_by: vllm``, llama.cpp's Python
server ``owned_by: me``).

Each server gets its own constraint format:

=============  ===========================================  ===============================================
constraint     vLLM (0.12+, ``structured_outputs``)          llama.cpp server                 / OpenAI
=============  ===========================================  ===============================================
JsonSchema     compact-JSON ``regex`` (outlines-core), else   ``response_format: {type: json_object, schema}``
               ``response_format: {type: json_schema, …}``
Choice         ``structured_outputs: {choice: [...]}``      GBNF ``grammar`` alternatives   / json enum
Regex          ``structured_outputs: {regex: ...}``         not supported (ConfigurationError)
=============  ===========================================  ===============================================

``score_choices`` on vLLM is exact: each option is appended as the assistant's answer through the
server's own chat template (``/tokenize``), and ``prompt_logprobs`` give the log-likelihood of the
option's tokens and the end-of-turn token (one batched ``/v1/completions`` request), as the
transformers backend scores them. Other servers fall back to the first
answer token's ``top_logprobs`` under the choice constraint.

Timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff (tenacity); after the
last attempt :class:`~medslm.errors.EndpointError` is raised. Error messages name the endpoint and the
status, never the prompt (it may hold PHI).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from medslm.errors import ConfigurationError, EndpointError, ModelError
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

SERVERS = ("vllm", "llamacpp", "openai")
_LOCAL_HOSTS = {"localhost", "localhost.localdomain", ""}


class _Retryable(Exception):
    """Internal: a failure worth retrying (timeout, connection, 429, 5xx)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def is_local_url(url: str) -> bool:
    """True when ``url`` points at this machine (loopback), so PHI does not leave it."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_openai_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``"[openai:]http://host:port/v1#model?server=vllm"`` -> (base_url, model, options)."""
    target = spec[len("openai:"):] if spec.startswith("openai:") else spec
    base, _, frag = target.partition("#")
    model, _, query = frag.partition("?")
    opts = dict(parse_qsl(query))
    if not base.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"OpenAI-compatible spec {spec!r} needs an http(s) URL, e.g. 'openai:http://127.0.0.1:8000/v1#model'"
        )
    unknown = set(opts) - {"server", "timeout", "retries", "api_key_env", "remote"}
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {sorted(unknown)} in spec {spec!r}; known: server, timeout, retries, "
            "api_key_env, remote"
        )
    if "server" in opts and opts["server"] not in SERVERS:
        from medslm.errors import UnknownNameError

        raise UnknownNameError("server kind", opts["server"], SERVERS)
    return base.rstrip("/"), model, opts


def _gbnf_choice(options: Sequence[str]) -> str:
    alts = " | ".join(json.dumps(o) for o in options)
    return f"root ::= {alts}\n"


class OpenAICompatibleModel:
    """LanguageModel over an OpenAI-compatible endpoint (vLLM ``serve``, llama.cpp server, OpenAI)."""

    def __init__(
        self,
        base_url: str,
        model: str = "",
        *,
        server: str | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        api_key: str | None = None,
        remote: bool | None = None,
        allow_phi: bool = False,
    ) -> None:
        if server is not None and server not in SERVERS:
            from medslm.errors import UnknownNameError

            raise UnknownNameError("server kind", server, SERVERS)
        if retries < 1:
            raise ConfigurationError(f"retries must be >= 1 (attempts in all), got {retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.server = server
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._api_key = api_key
        self._remote = remote
        self.allow_phi = bool(allow_phi)
        self._boundary: Any = None
        self._client: Any = None
        self.attempts = 0  # HTTP attempts made (retries included), for tests and metrics

    @classmethod
    def from_spec(cls, spec: str, *, allow_phi: bool = False) -> OpenAICompatibleModel:
        import os

        base, model, opts = parse_openai_spec(spec)
        key_env = opts.get("api_key_env", "OPENAI_API_KEY")
        return cls(
            base,
            model,
            server=opts.get("server"),
            timeout=float(opts.get("timeout", 60.0)),
            retries=int(opts.get("retries", 4)),
            api_key=os.environ.get(key_env),
            remote=opts["remote"].lower() in ("1", "true", "yes") if "remote" in opts else None,
            allow_phi=allow_phi,
        )

    # ------------------------------------------------------------------ identity
    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            id=self.model or "(server default)",
            backend=f"openai-compat/{self.server or 'auto'}",
            revision=None,
            remote=self._remote if self._remote is not None else not is_local_url(self.base_url),
        )

    @property
    def deidentifies(self) -> bool:
        """True when requests go through the PHI boundary: a remote endpoint and PHI not allowed to it.

        Then every message is de-identified before it is sent and the answer re-identified
        (:mod:`medslm.safety.boundary`); ``allow_phi=True`` (``Settings.allow_phi_to_remote``) sends text
        as it is.
        """
        return self.info.remote and not self.allow_phi

    def _phi_boundary(self) -> Any:
        if self._boundary is None:
            from medslm.safety.boundary import PhiBoundary  # the seam: de-identify before text leaves

            self._boundary = PhiBoundary()
        return self._boundary

    def load(self) -> OpenAICompatibleModel:
        """Detect the server kind and model name now (otherwise done on first use)."""
        self._ensure_ready()
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleModel({self.base_url!r}, {self.model!r}, server={self.server!r})"

    # ------------------------------------------------------------------ HTTP
    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:  # pragma: no cover
                from medslm.errors import MissingExtraError

                raise MissingExtraError(package="httpx", extra="openai", feature="OpenAI-compatible endpoints") from exc
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.Client(timeout=self.timeout, headers=headers)
        return self._client

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx
        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
            wait_random,
        )

        url = self.base_url + path
        client = self._http()

        def once() -> Any:
            self.attempts += 1
            try:
                resp = client.request(method, url, json=body)
            except httpx.TimeoutException as exc:
                raise _Retryable(f"timeout after {self.timeout:g}s") from exc
            except httpx.TransportError as exc:
                raise _Retryable(f"connection failed ({type(exc).__name__})") from exc
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Retryable(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                detail = _error_detail(resp)
                raise ModelError(
                    f"{method} {url} answered HTTP {resp.status_code}: {detail}. The request was refused, not "
                    "retried; check the model name and the constraint this server supports"
                )
            return resp.json()

        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.retries),
                # backoff * 2**(n-1) + up to one backoff of jitter, at most 8 s
                wait=wait_exponential(multiplier=self.backoff, max=8.0) + wait_random(0, self.backoff),
                retry=retry_if_exception_type(_Retryable),
                reraise=False,
            ):
                with attempt:
                    return once()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            what = last.what if isinstance(last, _Retryable) else type(last).__name__
            raise EndpointError(
                f"{method} {url} failed after {self.retries} attempt(s): {what}. Is the server running and "
                "reachable? The item can go to human review"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover


    def _ensure_ready(self) -> None:
        if self.server is not None and self.model:
            return
        data = self._request("GET", "/models")
        models = data.get("data") or []
        if not self.model:
            if not models:
                raise ModelError(f"{self.base_url}/models lists no model; name one: '{self.base_url}#<model>'")
            self.model = str(models[0]["id"])
        if self.server is None:
            owners = {str(m.get("owned_by", "")) for m in models}
            self.server = "vllm" if "vllm" in owners else "llamacpp" if "me" in owners or "llamacpp" in owners else "openai"
            log.info("endpoint %s detected as %s", self.base_url, self.server)

    # ------------------------------------------------------------------ constraints
    def _constraint_body(self, constraint: Constraint | None) -> dict[str, Any]:
        if constraint is None:
            return {}
        server = self.server
        if isinstance(constraint, JsonSchema):
            schema = constraint.as_dict()
            if server == "vllm":
                regex = _compact_json_regex(schema)
                if regex is not None:  # the same compact-JSON regex the in-process backend decodes with
                    return {"structured_outputs": {"regex": regex}}
            if server == "llamacpp":
                return {"response_format": {"type": "json_object", "schema": schema}}
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": _schema_name(schema), "schema": schema}}}
        if isinstance(constraint, Choice):
            if server == "vllm":
                return {"structured_outputs": {"choice": list(constraint.options)}}
            if server == "llamacpp":
                return {"grammar": _gbnf_choice(constraint.options)}
            schema = {"type": "object", "properties": {"answer": {"enum": list(constraint.options)}},
                      "required": ["answer"], "additionalProperties": False}
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "choice", "schema": schema, "strict": True}}}
        if isinstance(constraint, Regex):
            if server == "vllm":
                return {"structured_outputs": {"regex": constraint.pattern}}
            raise ConfigurationError(
                f"regex constraints are not supported by a {server} server; use vLLM (server=vllm) or a "
                "JSON schema with a 'pattern'"
            )
        raise ConfigurationError(f"unknown constraint {type(constraint).__name__}; use JsonSchema, Choice or Regex")

    def _parse(self, text: str, constraint: Constraint | None, finish_reason: str | None = None) -> Any:
        if constraint is None:
            return text
        if isinstance(constraint, JsonSchema):
            try:
                return constraint.parse(text)
            except ValueError as exc:
                if finish_reason == "length":
                    raise ModelError(
                        f"{self.info.id} at {self.base_url} was cut off at max_tokens before the JSON was "
                        f"complete ({len(text)} characters); raise max_tokens or bound the schema's strings"
                    ) from None
                raise ModelError(
                    f"{self.info.id} at {self.base_url} returned {len(text)} characters that do not validate "
                    f"against the JSON schema ({type(exc).__name__}); does the server enforce response_format?"
                ) from None
        if isinstance(constraint, Choice):
            value = text.strip()
            if self.server == "openai" and value.startswith("{"):
                value = str(json.loads(value).get("answer", ""))
            if value not in constraint.options:
                raise ModelError(
                    f"{self.info.id} at {self.base_url} answered outside the {len(constraint.options)} allowed "
                    "options; the server did not enforce the choice constraint"
                )
            return value
        if not re.fullmatch(constraint.pattern, text):
            raise ModelError(f"{self.info.id} at {self.base_url} answered text that does not match the regex")
        return text

    # ------------------------------------------------------------------ the protocol
    def generate(
        self,
        messages: Messages,
        constraint: Constraint | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        kw = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        if self.deidentifies:
            return self._phi_boundary().generate(self._generate, messages, constraint, **kw)  # type: ignore[no-any-return]
        return self._generate(messages, constraint, **kw)

    def score_choices(self, messages: Messages, options: Sequence[str]) -> ChoiceScores:
        if self.deidentifies:
            return self._phi_boundary().score_choices(self._score_choices, messages, options)  # type: ignore[no-any-return]
        return self._score_choices(messages, options)

    def _generate(
        self,
        messages: Messages,
        constraint: Constraint | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Generation:
        self._ensure_ready()
        body: dict[str, Any] = {
            "model": self.model,
            "messages": as_messages(messages),
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            "logprobs": True,
        }
        if seed is not None:
            body["seed"] = int(seed)
        body.update(self._constraint_body(constraint))
        t0 = time.perf_counter()
        data = self._request("POST", "/chat/completions", body)
        latency = time.perf_counter() - t0
        choice = (data.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        lps = tuple(
            float(t["logprob"]) for t in ((choice.get("logprobs") or {}).get("content") or [])
            if t.get("logprob") is not None and math.isfinite(float(t["logprob"]))
        )
        usage = data.get("usage") or {}
        return Generation(
            value=self._parse(text, constraint, choice.get("finish_reason")),
            text=text,
            token_logprobs=tuple(min(0.0, lp) for lp in lps),
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", len(lps))),
            latency_s=latency,
            model=self.info,
        )

    def _score_choices(self, messages: Messages, options: Sequence[str]) -> ChoiceScores:
        opts = tuple(options)
        if not opts:
            raise ConfigurationError("score_choices needs at least one option")
        self._ensure_ready()
        t0 = time.perf_counter()
        if self.server == "vllm":
            logprobs, tokens_in = self._score_vllm(as_messages(messages), opts)
        else:
            logprobs, tokens_in = self._score_first_token(as_messages(messages), opts)
        return ChoiceScores(options=opts, logprobs=tuple(logprobs), tokens_in=tokens_in,
                            latency_s=time.perf_counter() - t0, model=self.info)

    def _tokenize(self, body: dict[str, Any]) -> list[int]:
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        saved, self.base_url = self.base_url, root
        try:
            return [int(t) for t in self._request("POST", "/tokenize", {"model": self.model, **body})["tokens"]]
        finally:
            self.base_url = saved

    def _score_vllm(self, msgs: list[dict[str, str]], opts: tuple[str, ...]) -> tuple[list[float], int]:
        prefix = self._tokenize({"messages": msgs, "add_generation_prompt": True})
        prompts: list[list[int]] = []
        for o in opts:
            turn = [*msgs, {"role": "assistant", "content": o}]
            open_ = self._tokenize({"messages": turn, "add_generation_prompt": False, "continue_final_message": True})
            closed = self._tokenize({"messages": turn, "add_generation_prompt": False})
            if open_[: len(prefix)] != prefix or len(open_) == len(prefix):
                raise ModelError(
                    f"{self.info.id}: the chat template does not extend the prompt with the answer; "
                    "cannot score options exactly"
                )
            # score the option and the end of the turn (so '1' does not win by being a prefix of '10')
            end = len(open_) + 1 if closed[: len(open_)] == open_ and len(closed) > len(open_) else len(open_)
            prompts.append(closed[:end])
        data = self._request("POST", "/completions", {
            "model": self.model, "prompt": prompts, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0,
        })
        by_index = {int(c.get("index", i)): c for i, c in enumerate(data.get("choices") or [])}
        out = []
        for i, full in enumerate(prompts):
            plp = by_index[i].get("prompt_logprobs") or []
            total = 0.0
            for pos in range(len(prefix), len(full)):
                entry = plp[pos] or {}
                tok = entry.get(str(full[pos]))
                if tok is None:
                    raise ModelError(f"{self.info.id}: prompt_logprobs lack token {pos}; cannot score options")
                total += float(tok["logprob"])
            out.append(total)
        return out, len(prefix)

    def _score_first_token(self, msgs: list[dict[str, str]], opts: tuple[str, ...]) -> tuple[list[float], int]:
        """Approximate scoring: top log-probabilities of the first answer token under the choice constraint."""
        body = {"model": self.model, "messages": msgs, "max_tokens": 1, "temperature": 0.0,
                "logprobs": True, "top_logprobs": 20}
        data = self._request("POST", "/chat/completions", body)
        choice = (data.get("choices") or [{}])[0]
        content = (choice.get("logprobs") or {}).get("content") or []
        top = content[0].get("top_logprobs", []) if content else []
        out = []
        for o in opts:
            best = -1e4
            for t in top:
                tok = str(t.get("token", "")).strip()
                if tok and o.strip().startswith(tok):
                    best = max(best, float(t["logprob"]))
            out.append(best)
        return out, int((data.get("usage") or {}).get("prompt_tokens", 0))


def _compact_json_regex(schema: dict[str, Any]) -> str | None:
    """The schema as a regex with at most one space between JSON tokens (outlines-core), or None.

    vLLM's JSON mode allows any whitespace, and a small model can fill max_tokens with newlines
    inside a valid-so-far object; the regex form keeps JSON compact, as the transformers backend does.
    """
    try:
        from outlines_core.json_schema import build_regex_from_schema
    except ImportError:
        return None
    try:
        return str(build_regex_from_schema(json.dumps(schema), r"[ ]?"))
    except Exception:  # noqa: BLE001 - a schema outlines-core cannot express: use the server's JSON mode
        return None


def _schema_name(schema: dict[str, Any]) -> str:
    name = str(schema.get("title") or "output")
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "output"


def _error_detail(resp: Any) -> str:
    try:
        d = resp.json()
        msg = d.get("error", {}).get("message") if isinstance(d.get("error"), dict) else d.get("message") or d.get("detail")
    except ValueError:
        msg = None
    return (str(msg) if msg else resp.reason_phrase or "no detail")[:200]


__all__ = ["SERVERS", "OpenAICompatibleModel", "is_local_url", "parse_openai_spec"]
