"""Escalation of an uncertain agent result to a large LLM behind any OpenAI-compatible endpoint.

The honest design: the LLM runs *the same agent* (same prompts, same output constraint), only with a
different :class:`~medslm.models.base.LanguageModel`. So ``Escalator.escalate`` takes either the agent
(re-run with the LLM) or a bare constraint (a generic prompt under that constraint).

- Retries with backoff for timeouts, connection errors and 5xx live in the HTTP backend
  (:mod:`medslm.models.openai_compat`); after them an :class:`~medslm.errors.EndpointError` is raised
  and the graph routes the item to human review.
- Every answer is stored once as a *teacher label* (:class:`TeacherStore`, SQLite), keyed by note hash,
  agent, model and prompt: a retried or re-run escalation returns the recorded answer instead of
  calling the LLM again and recording it twice. Teacher labels feed distillation later.
- Endpoints not on this machine get de-identified text unless ``Settings.allow_phi_to_remote`` is set:
  the model is behind the PHI boundary (:mod:`medslm.safety.boundary`), which de-identifies every
  message (the agent's prompts, the generic prompt, caller-supplied ``messages``) with keyed surrogates
  and re-identifies the answer. The agent itself runs on the original note, so evidence offsets index
  the original text; the escalated result is then re-verified against the note (spans inside it,
  mentions equal to the text at their offsets; surrogates left in the output are mapped back) and refused
  (:class:`EndpointError`, the item goes to human review) when it does not map back.
- Cost (from tokens and a configured price) and latency are recorded in the result's provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.database import Schema, open_database
from medslm.errors import ConfigurationError, EndpointError, MedslmError
from medslm.models.base import Choice, Constraint, JsonSchema, LanguageModel, Regex, prompt_hash
from medslm.records import AgentResult, Note, Provenance
from medslm.settings import Settings

log = logging.getLogger(__name__)

GENERIC_SYSTEM = (
    "You are a senior clinician reviewing the output of a smaller model that was unsure. "
    "Task: {task}. Answer only in the required format."
)
GENERIC_USER = "Clinical note:\n{note}\n\nAnswer:"


@dataclass(frozen=True)
class TeacherLabel:
    """One recorded LLM answer (a teacher label for distillation).

    ``result_json`` is the LLM's result mapped back to the original note: it quotes the note where the
    result does (entity mentions, evidence offsets, summary sentences), so the store holds PHI; the full
    note text is not kept, only its hash.
    """

    key: str
    note_id: str
    note_sha256: str
    agent: str
    model_id: str
    result_json: str
    created_at: float


_TEACHER_V1 = (
    "CREATE TABLE IF NOT EXISTS teacher_labels (key TEXT PRIMARY KEY, note_id TEXT NOT NULL, "
    "note_sha256 TEXT NOT NULL, agent TEXT NOT NULL, model_id TEXT NOT NULL, "
    "result_json TEXT NOT NULL, created_at REAL NOT NULL)"
)
TEACHER_SCHEMA = Schema("teacher store", (_TEACHER_V1,))


class TeacherStore:
    """Durable, idempotent store of LLM answers (SQLite, mode 0600). ``put`` of an existing key keeps the
    first. Holds PHI: each label's result quotes the note (see :class:`TeacherLabel`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        open_database(self.path, TEACHER_SCHEMA).close()

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = open_database(self.path, TEACHER_SCHEMA)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def get(self, key: str) -> TeacherLabel | None:
        with self._conn() as c:
            row = c.execute(
                "SELECT key, note_id, note_sha256, agent, model_id, result_json, created_at "
                "FROM teacher_labels WHERE key = ?", (key,)
            ).fetchone()
        return TeacherLabel(*row) if row else None

    def put(self, label: TeacherLabel) -> bool:
        """Record ``label``; False (and nothing written) when its key is already recorded."""
        with self._lock, self._conn() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO teacher_labels VALUES (?, ?, ?, ?, ?, ?, ?)",
                (label.key, label.note_id, label.note_sha256, label.agent, label.model_id,
                 label.result_json, label.created_at),
            )
            return cur.rowcount == 1

    def __len__(self) -> int:
        with self._conn() as c:
            return int(c.execute("SELECT COUNT(*) FROM teacher_labels").fetchone()[0])

    def labels(self, agent: str | None = None) -> list[TeacherLabel]:
        q = "SELECT key, note_id, note_sha256, agent, model_id, result_json, created_at FROM teacher_labels"
        args: tuple[Any, ...] = ()
        if agent:
            q += " WHERE agent = ?"
            args = (agent,)
        with self._conn() as c:
            return [TeacherLabel(*r) for r in c.execute(q + " ORDER BY created_at", args).fetchall()]


def deidentify_text(text: str, *, seed: int = 0) -> str:
    """A de-identified copy of ``text`` (``medslm.safety.deidentify``, keyed surrogates)."""
    try:
        from medslm.safety.deid import deidentify
    except ImportError as exc:  # the seam: refuse rather than send PHI
        raise ConfigurationError(
            "escalation to an endpoint not on this machine needs medslm.safety.deidentify, which is not "
            "available; set Settings.allow_phi_to_remote=True only if the endpoint may see PHI"
        ) from exc
    return deidentify(text, seed=seed).text


def _constraint_key(c: Constraint) -> str:
    if isinstance(c, JsonSchema):
        return "json:" + json.dumps(c.as_dict(), sort_keys=True)
    if isinstance(c, Choice):
        return "choice:" + "\x1f".join(c.options)
    if isinstance(c, Regex):
        return "regex:" + c.pattern
    raise ConfigurationError(f"unknown constraint type {type(c).__name__}; use JsonSchema, Choice or Regex")


def _is_constraint(x: Any) -> bool:
    return isinstance(x, JsonSchema | Choice | Regex)


class Escalator:
    """Re-run an uncertain agent result on a large LLM and return the LLM's result.

    ``model`` is a spec (``"openai:http://127.0.0.1:8000/v1#model"``) or a loaded LanguageModel.
    ``cost_per_1k_tokens_in/out`` price the calls (any unit, e.g. USD); ``teacher_store`` (a path or a
    :class:`TeacherStore`; default ``<cache_dir>/teacher_labels.sqlite``; ``False`` to keep none) records
    each answer once, and a repeated escalation returns the recorded answer without calling the LLM.
    ``policy`` (an :class:`EscalationPolicy`) routes the LLM's result: ACCEPT, or REVIEW when it is unsure.
    """

    def __init__(
        self,
        model: str | LanguageModel | None = None,
        settings: Settings | None = None,
        *,
        cost_per_1k_tokens_in: float = 0.0,
        cost_per_1k_tokens_out: float = 0.0,
        teacher_store: TeacherStore | str | Path | bool | None = True,
        deidentify: Callable[[str], str] | None = None,
        policy: Any = None,
    ) -> None:
        self.settings = settings or Settings()
        spec = model if model is not None else self.settings.escalation_model
        if spec is None:
            raise ConfigurationError(
                "Escalator needs a model: pass model='openai:http://127.0.0.1:8000/v1#name' or set "
                "Settings.escalation_model (without an LLM, uncertain results go to human review)"
            )
        self.model_spec = spec
        self._lm: LanguageModel | None = None
        if not isinstance(spec, str):  # a model object: behind the PHI boundary too when it is remote
            from medslm.models.catalog import load_model

            self._lm = load_model(spec, settings=self.settings)
        self.cost_in = float(cost_per_1k_tokens_in)
        self.cost_out = float(cost_per_1k_tokens_out)
        if teacher_store is True:  # the default: one store per cache dir
            teacher_store = self.settings.cache_dir / "teacher_labels.sqlite"
        self.teacher_store: TeacherStore | None = (
            teacher_store if isinstance(teacher_store, TeacherStore)
            else None if teacher_store in (None, False)
            else TeacherStore(teacher_store)  # type: ignore[arg-type]
        )
        self.policy = policy  # when given, the LLM's result gets a route (ACCEPT, or REVIEW when unsure)
        self._deidentify = deidentify or (lambda t: deidentify_text(t, seed=self.settings.seed))

    @property
    def lm(self) -> LanguageModel:
        if self._lm is None:
            from medslm.models.catalog import load_model

            self._lm = load_model(str(self.model_spec), settings=self.settings)
        return self._lm

    @property
    def remote(self) -> bool:
        return bool(getattr(self.lm.info, "remote", False))

    @property
    def deidentified(self) -> bool:
        """Whether the LLM gets de-identified text (a remote endpoint and PHI not allowed to it)."""
        return self.remote and not self.settings.allow_phi_to_remote

    def text_for_llm(self, note: Note) -> tuple[str, bool]:
        """What the endpoint sees of the note text, and whether it was de-identified (the boundary does
        this per message; this shows it for one text)."""
        if self.deidentified:
            return self._deidentify(note.text), True
        return note.text, False

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in / 1000 * self.cost_in + tokens_out / 1000 * self.cost_out

    def key(self, agent_name: str, note: Note, task: str) -> str:
        h = hashlib.sha256()
        for part in (note.sha256, agent_name, self.lm.info.id, self.lm.info.revision or "", task):
            h.update(part.encode())
            h.update(b"\x1f")
        return h.hexdigest()[:32]

    def escalate(
        self,
        agent_name: str,
        note: Note,
        result: AgentResult[Any],
        constraint_or_agent: Any,
        *,
        state: Mapping[str, Any] | None = None,
        reason: str | None = None,
        messages: list[dict[str, str]] | None = None,
    ) -> AgentResult[Any]:
        """The LLM's result for ``agent_name`` on ``note``, with provenance.escalated=True.

        ``constraint_or_agent``: the agent itself (re-run with the LLM as its model), a factory
        ``lm -> agent``, or a :class:`Constraint` (then ``messages`` or a generic prompt is used).
        Raises :class:`EndpointError` when the endpoint still fails after its retries.
        """
        why = reason or f"confidence {result.confidence:.3f} under the threshold of {agent_name!r}"
        task = self._task_id(agent_name, constraint_or_agent, messages)
        key = self.key(agent_name, note, task)
        if self.teacher_store is not None:
            found = self.teacher_store.get(key)
            if found is not None:  # already answered (a retry or a re-run): never call or record twice
                return type(result).model_validate_json(found.result_json)
        # the agent sees the original note; the PHI boundary in front of a remote model de-identifies
        # what is sent and re-identifies the answer, so offsets index the original note
        deidentified = self.deidentified
        llm_note = note
        t0 = time.perf_counter()
        try:
            if _is_constraint(constraint_or_agent):
                new = self._run_constraint(agent_name, llm_note, result, constraint_or_agent, messages)
            else:
                agent = self._llm_agent(constraint_or_agent)
                new = agent.run(llm_note, state or {})
        except EndpointError:
            raise
        except MedslmError as exc:
            raise EndpointError(
                f"escalation of {agent_name!r} for note {note.id!r} to {self.lm.info.id} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        latency_ms = (time.perf_counter() - t0) * 1000
        # An agent may survive a failed model by falling back to its rules (and say so in its signals):
        # that answer is not the LLM's, so the escalation failed.
        failed = sorted(k for k, v in new.signals.items() if k.endswith("_failed") and v)
        other_model = new.provenance.model_id not in (None, self.lm.info.id)
        if failed or other_model:
            why_failed = f"signals {', '.join(failed)}" if failed else f"model {new.provenance.model_id}"
            raise EndpointError(
                f"escalation of {agent_name!r} for note {note.id!r}: the agent did not get an answer from "
                f"{self.lm.info.id} ({why_failed}); is the endpoint up? The item can go to human review"
            )
        if deidentified:  # a surrogate the LLM reworded past the boundary's per-call mapping: put the original back
            from medslm.safety.boundary import PhiBoundary, Reidentifier

            back = Reidentifier()
            PhiBoundary(seed=self.settings.seed).deidentify_text(note.text, back)
            if back.reverse:
                new = new.model_copy(update={"output": back.value(new.output)})
        problems = reverify(new, note)
        if problems:
            raise EndpointError(
                f"escalation of {agent_name!r} for note {note.id!r}: the LLM's result does not map back to "
                f"the note ({'; '.join(problems[:3])}); the item can go to human review"
            )
        prov = new.provenance.model_copy(
            update={
                "model_id": self.lm.info.id,
                "model_revision": self.lm.info.revision,
                "backend": self.lm.info.backend,
                "escalated": True,
                "escalation_reason": why + ("; de-identified text sent" if deidentified else ""),
                "cost": self.cost(new.provenance.tokens_in, new.provenance.tokens_out),
                "latency_ms": latency_ms,
            }
        )
        signals = {**new.signals, "slm_confidence": result.confidence}
        out = type(result).model_validate(
            {**new.model_dump(), "agent": agent_name, "provenance": prov.model_dump(), "signals": signals,
             "route": None}
        )
        if self.policy is not None:
            out = out.model_copy(update={"route": self.policy.decide(out)})
        if self.teacher_store is not None:
            self.teacher_store.put(
                TeacherLabel(key=key, note_id=note.id, note_sha256=note.sha256, agent=agent_name,
                             model_id=self.lm.info.id, result_json=out.model_dump_json(), created_at=time.time())
            )
        return out

    # ------------------------------------------------------------------ internals
    def _task_id(self, agent_name: str, x: Any, messages: list[dict[str, str]] | None) -> str:
        if _is_constraint(x):
            return prompt_hash(_constraint_key(x), json.dumps(messages or [], sort_keys=True))
        ph = getattr(x, "prompt_hash", None)
        return f"agent:{type(x).__name__}:{ph if isinstance(ph, str) else ''}"

    def _llm_agent(self, agent: Any) -> Any:
        if hasattr(agent, "with_model"):
            return agent.with_model(self.lm)
        if callable(agent) and not hasattr(agent, "run"):
            return agent(self.lm)
        if hasattr(agent, "run"):
            try:
                return type(agent)(model=self.lm)
            except TypeError as exc:
                raise ConfigurationError(
                    f"cannot re-run agent {type(agent).__name__} on the LLM: give it a with_model(lm) method, "
                    "accept model= in its constructor, or pass a factory lm -> agent"
                ) from exc
        raise ConfigurationError(
            f"escalate() needs an agent, a factory lm -> agent, or a constraint; got {type(agent).__name__}"
        )

    def _run_constraint(
        self, agent_name: str, note: Note, result: AgentResult[Any], constraint: Constraint,
        messages: list[dict[str, str]] | None,
    ) -> AgentResult[Any]:
        msgs = messages or [
            {"role": "system", "content": GENERIC_SYSTEM.format(task=agent_name)},
            {"role": "user", "content": GENERIC_USER.format(note=note.text)},
        ]
        if messages:
            # the caller's messages go as given: the PHI boundary in front of a remote model de-identifies
            # them like every other request
            msgs = messages
        ph = prompt_hash(GENERIC_SYSTEM, GENERIC_USER) if not messages else prompt_hash(json.dumps(messages))
        if isinstance(constraint, Choice):
            scores = self.lm.score_choices(msgs, list(constraint.options))
            value: Any = scores.best
            conf = scores.best_prob
            tokens_in, tokens_out = scores.tokens_in, 1
            signals = {"choice_prob": scores.best_prob}
        else:
            gen = self.lm.generate(msgs, constraint, max_tokens=512)
            value = gen.value
            conf = gen.confidence
            tokens_in, tokens_out = gen.tokens_in, gen.tokens_out
            signals = {"mean_token_prob": gen.confidence}
        if hasattr(value, "model_dump"):
            value = value.model_dump()
        return type(result).model_validate(
            {"agent": agent_name, "output": value, "confidence": min(1.0, max(0.0, conf)),
             "evidence": [], "signals": signals,
             "provenance": Provenance(prompt_hash=ph, tokens_in=tokens_in, tokens_out=tokens_out).model_dump()}
        )


def reverify(result: AgentResult[Any], note: Note) -> list[str]:
    """What is wrong when ``result`` is laid on ``note``: spans outside it, mentions that differ from the
    text at their offsets, surrogate strings left in the output. Messages hold offsets, never text."""
    n = len(note.text)
    problems: list[str] = []

    def span(where: str, start: int, end: int) -> None:
        if not 0 <= start <= end <= n:
            problems.append(f"{where} span [{start}, {end}) is outside the note ({n} chars)")

    for s in result.evidence:
        span("evidence", s.start, s.end)
    out = result.output
    items = out if isinstance(out, list) else [out]
    for i, item in enumerate(items):
        if hasattr(item, "start") and hasattr(item, "end") and hasattr(item, "text"):
            span(f"item {i}", item.start, item.end)
            if 0 <= item.start <= item.end <= n and note.text[item.start : item.end] != item.text:
                problems.append(f"item {i} at [{item.start}, {item.end}) does not match the note there")
        for ev in getattr(item, "evidence", ()) or ():
            span(f"item {i} evidence", ev.start, ev.end)
        for flag in getattr(item, "red_flags", ()) or ():
            for ev in flag.evidence:
                span(f"red flag {flag.name} evidence", ev.start, ev.end)
        for sec in getattr(item, "sections", ()) or ():
            for sent in sec.sentences:
                for ev in sent.support:
                    span(f"summary {sec.name} support", ev.start, ev.end)
    return problems


__all__ = ["Escalator", "TeacherLabel", "TeacherStore", "deidentify_text", "reverify"]
