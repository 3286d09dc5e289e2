"""Ensembles as a graph node: k variants of an agent vote, m-of-k agreement accepts, disagreement goes to
the LLM arbiter, then to a human (the ELM / COSMosFL pattern).

An :class:`Ensemble` is an agent (``name`` + ``run``), so it goes into any pipeline where the agent it
wraps would, writing that agent's field::

    from medslm.graphs.ensemble import Ensemble

    triage3 = Ensemble.of("triage", [{"model": "embedded"}, {"model": "embedded", "slm_weight": 0},
                                     {"model": "transformers:/models/other"}], min_agree=2)
    graph = (medslm.Pipeline().add("guard_in").add(triage3)
             .add("route").add("escalate", when=...).add("review", when=...).compile())

- The members run on the note; their answers are compared by ``key`` (default: the output, e.g. the
  triage level, the set of ICD codes). The result is the majority's answer (its most confident member's
  result) with the vote share as the ``ensemble_agreement`` signal, fused into the confidence by
  :func:`medslm.routers.confidence.combine`.
- The ensemble's :class:`EnsemblePolicy` (picked up by ``Pipeline.add``) accepts when at least
  ``min_agree`` members agree; otherwise the result escalates. The escalate node re-runs the ensemble
  *on the LLM*, which for an ensemble means the :class:`Arbiter`: the LLM is shown the note and the
  distinct answers and picks one by constrained choice (one forward pass). The arbiter's pick is accepted
  when its probability reaches ``arbiter_threshold``; otherwise, as when no LLM is configured or the call
  fails, the item goes to human review.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from medslm.errors import ConfigurationError
from medslm.models.base import prompt_hash
from medslm.records import AgentResult, Note, Provenance, Route
from medslm.routers.confidence import CHOICE_PROB, ENSEMBLE_AGREEMENT, combine, ensemble_vote

ARBITER_SYSTEM = (
    "You are a senior clinician. Smaller models disagreed on the task '{task}' for the clinical note below. "
    "Read the note and the candidate answers, then reply with the number of the correct answer only."
)
ARBITER_USER = "Clinical note:\n{note}\n\nCandidate answers:\n{answers}\n\nThe correct answer is number:"
#: the arbiter sees at most this many characters of the note and of each answer
NOTE_CHARS = 4000
ANSWER_CHARS = 600


def output_key(result: AgentResult[Any]) -> Hashable:
    """What members vote with: the triage level, the set of codes / mentions, else the output as JSON."""
    out = result.output
    if hasattr(out, "level"):
        return int(out.level)
    if isinstance(out, list | tuple):
        keys = []
        for item in out:
            if hasattr(item, "code"):
                keys.append(str(item.code))
            elif hasattr(item, "start") and hasattr(item, "end"):
                keys.append((item.start, item.end, str(getattr(item, "type", ""))))
            else:
                keys.append(json.dumps(_jsonable(item), sort_keys=True, default=str))
        return frozenset(keys)
    return json.dumps(_jsonable(out), sort_keys=True, default=str)


def _jsonable(x: Any) -> Any:
    return x.model_dump(mode="json") if hasattr(x, "model_dump") else x


class Ensemble:
    """k agents (variants of one agent) voting; see the module docstring."""

    def __init__(self, name: str, members: Sequence[Any], *, min_agree: int | None = None,
                 key: Callable[[AgentResult[Any]], Hashable] = output_key, arbiter_threshold: float = 0.5,
                 memory: int = 256) -> None:
        if len(members) < 2:
            raise ConfigurationError(f"an ensemble needs at least 2 members; {name!r} got {len(members)}")
        k = len(members)
        m = min_agree if min_agree is not None else k // 2 + 1
        if not 1 <= m <= k:
            raise ConfigurationError(f"min_agree must lie in [1, {k}] for {k} members; got {min_agree}")
        if not 0.0 <= arbiter_threshold <= 1.0:
            raise ConfigurationError(f"arbiter_threshold must lie in [0, 1]; got {arbiter_threshold}")
        self.name = name
        self.members = list(members)
        self.min_agree = m
        self.key = key
        self.arbiter_threshold = arbiter_threshold
        self.policy = EnsemblePolicy(m, arbiter_threshold)
        self._memory: OrderedDict[str, list[AgentResult[Any]]] = OrderedDict()
        self._size = memory
        self._lock = threading.Lock()

    @classmethod
    def of(cls, agent: str, variants: Sequence[Mapping[str, Any]], **kwargs: Any) -> Ensemble:
        """An ensemble of the registered agent ``agent``, one member per variant (``model`` and options)."""
        from medslm import registry

        spec = registry.get(agent)
        members = [spec.build(v.get("model", "embedded"), **{k: x for k, x in v.items() if k != "model"})
                   for v in variants]
        return cls(agent, members, **kwargs)

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(ARBITER_SYSTEM, ARBITER_USER)

    def votes(self, note: Note, state: Mapping[str, Any] | None = None) -> list[AgentResult[Any]]:
        """Every member's result on ``note`` (remembered for the arbiter, by note hash)."""
        results = [m.run(note, dict(state or {})) for m in self.members]
        with self._lock:
            self._memory[note.sha256] = results
            self._memory.move_to_end(note.sha256)
            while len(self._memory) > self._size:
                self._memory.popitem(last=False)
        return results

    def recall(self, note: Note, state: Mapping[str, Any] | None = None) -> list[AgentResult[Any]]:
        with self._lock:
            found = self._memory.get(note.sha256)
        return found if found is not None else self.votes(note, state)

    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[Any]:
        results = self.votes(note, state)
        keys = [self.key(r) for r in results]
        winner, share = ensemble_vote(keys)
        agreeing = [r for r, k in zip(results, keys, strict=True) if k == winner]
        best = max(agreeing, key=lambda r: r.confidence)
        signals = {**best.signals, ENSEMBLE_AGREEMENT: share, "ensemble_members": float(len(results)),
                   "ensemble_agree": float(len(agreeing)), "ensemble_min_agree": float(self.min_agree)}
        signals.setdefault(CHOICE_PROB, best.confidence)
        return best.model_copy(update={"agent": self.name, "confidence": combine(signals), "signals": signals,
                                       "route": None})

    def with_model(self, lm: Any) -> Arbiter:
        """The ensemble 're-run on the LLM': the LLM arbitrates between the members' answers."""
        return Arbiter(self, lm)


class Arbiter:
    """The LLM choosing among an ensemble's distinct answers (constrained choice of a number)."""

    def __init__(self, ensemble: Ensemble, lm: Any) -> None:
        self.ensemble = ensemble
        self.name = ensemble.name
        self.lm = lm

    @property
    def prompt_hash(self) -> str:
        return self.ensemble.prompt_hash

    def candidates(self, note: Note, state: Mapping[str, Any] | None = None) -> list[AgentResult[Any]]:
        seen: dict[Hashable, AgentResult[Any]] = {}
        for r in self.ensemble.recall(note, state):
            seen.setdefault(self.ensemble.key(r), r)
        return list(seen.values())

    def messages(self, note: Note, candidates: Sequence[AgentResult[Any]]) -> list[dict[str, str]]:
        answers = "\n".join(
            f"{i}. {json.dumps(_jsonable(c.output), default=str, ensure_ascii=False)[:ANSWER_CHARS]}"
            for i, c in enumerate(candidates, 1))
        return [{"role": "system", "content": ARBITER_SYSTEM.format(task=self.name)},
                {"role": "user", "content": ARBITER_USER.format(note=note.text[:NOTE_CHARS], answers=answers)}]

    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[Any]:
        cands = self.candidates(note, state)
        scores = self.lm.score_choices(self.messages(note, cands), [str(i) for i in range(1, len(cands) + 1)])
        chosen = cands[int(scores.best) - 1]
        info = scores.model
        signals = {**chosen.signals, CHOICE_PROB: scores.best_prob, "arbiter_candidates": float(len(cands))}
        prov = Provenance(model_id=info.id, model_revision=info.revision, backend=info.backend,
                          prompt_hash=self.prompt_hash, tokens_in=scores.tokens_in, tokens_out=1,
                          latency_ms=scores.latency_s * 1000)
        return chosen.model_copy(update={"agent": self.name, "confidence": min(1.0, max(0.0, scores.best_prob)),
                                         "signals": signals, "provenance": prov, "route": None})


class EnsemblePolicy:
    """Accept when ``min_agree`` members agree; else escalate (to the arbiter). The arbiter's pick is
    accepted when its probability reaches ``arbiter_threshold``, else it goes to human review."""

    def __init__(self, min_agree: int, arbiter_threshold: float = 0.5) -> None:
        self.min_agree = min_agree
        self.threshold = arbiter_threshold

    def decide(self, result: AgentResult[Any], *, note_id: str | None = None) -> Route:
        if result.provenance.escalated:
            return Route.ACCEPT if result.confidence >= self.threshold else Route.REVIEW
        if result.signals.get("ensemble_agree", 0.0) >= self.min_agree:
            return Route.ACCEPT
        return Route.ESCALATE


__all__ = ["Arbiter", "Ensemble", "EnsemblePolicy", "output_key"]
