"""Escalation policy: per-agent thresholds chosen from calibration, and a budget that, once spent,
sends uncertain results to human review instead of the LLM.

Per-agent-call and per-note escalation rates are both counted by :class:`EscalationStats`: four agents
escalating 10 % of their calls independently escalate about 1 - 0.9**4 ≈ 34 % of notes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medslm.errors import ConfigurationError
from medslm.records import AgentResult, Route


class Budget:
    """How many escalations (and how much cost) a job may spend. Thread-safe.

    ``take()`` reserves one escalation and answers whether it was allowed; ``refund()`` gives one back
    (the LLM call failed, so nothing was spent); ``charge(cost)`` records what a call cost.
    """

    def __init__(self, max_escalations: int | None = None, max_cost: float | None = None) -> None:
        if max_escalations is not None and max_escalations < 0:
            raise ConfigurationError(f"max_escalations must be >= 0 or None, got {max_escalations}")
        if max_cost is not None and max_cost < 0:
            raise ConfigurationError(f"max_cost must be >= 0 or None, got {max_cost}")
        self.max_escalations = max_escalations
        self.max_cost = max_cost
        self._used = 0
        self._cost = 0.0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    @property
    def cost(self) -> float:
        return self._cost

    @property
    def remaining(self) -> int | None:
        return None if self.max_escalations is None else max(0, self.max_escalations - self._used)

    @property
    def spent(self) -> bool:
        with self._lock:
            return self._spent()

    def _spent(self) -> bool:
        if self.max_escalations is not None and self._used >= self.max_escalations:
            return True
        return self.max_cost is not None and self._cost >= self.max_cost

    def take(self) -> bool:
        with self._lock:
            if self._spent():
                return False
            self._used += 1
            return True

    def refund(self) -> None:
        with self._lock:
            self._used = max(0, self._used - 1)

    def charge(self, cost: float) -> None:
        with self._lock:
            self._cost += max(0.0, float(cost))

    def __repr__(self) -> str:
        return f"Budget(max_escalations={self.max_escalations}, max_cost={self.max_cost}, used={self._used})"


@dataclass
class EscalationStats:
    """Counts routes per agent call and per note. Thread-safe enough for one process (a lock)."""

    calls: dict[str, dict[str, int]] = field(default_factory=dict)  # agent -> route -> n
    notes: dict[str, set[str]] = field(default_factory=dict)  # note_id -> routes seen
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, note_id: str, agent: str, route: Route) -> None:
        with self._lock:
            per = self.calls.setdefault(agent, {r.value: 0 for r in Route})
            per[route.value] += 1
            self.notes.setdefault(note_id, set()).add(route.value)

    def call_rate(self, route: Route = Route.ESCALATE, agent: str | None = None) -> float:
        """Share of agent calls routed to ``route`` (one agent, or all agents together)."""
        groups = [self.calls.get(agent, {})] if agent else list(self.calls.values())
        n = sum(sum(g.values()) for g in groups)
        return sum(g.get(route.value, 0) for g in groups) / n if n else 0.0

    def note_rate(self, route: Route = Route.ESCALATE) -> float:
        """Share of notes with at least one agent call routed to ``route``."""
        n = len(self.notes)
        return sum(1 for r in self.notes.values() if route.value in r) / n if n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "per_call": {a: dict(v) for a, v in self.calls.items()},
            "call_escalation_rate": self.call_rate(Route.ESCALATE),
            "note_escalation_rate": self.note_rate(Route.ESCALATE),
            "call_review_rate": self.call_rate(Route.REVIEW),
            "note_review_rate": self.note_rate(Route.REVIEW),
            "notes": len(self.notes),
        }


class EscalationPolicy:
    """Route each agent result: accept it, escalate it to the LLM, or send it to human review.

    - confidence >= the agent's threshold: ACCEPT;
    - otherwise, when an LLM is configured and the budget allows: ESCALATE;
    - otherwise (no LLM, budget spent, or the result already came from the LLM and is still unsure):
      REVIEW.

    Thresholds come from calibration (:func:`choose_threshold`), not from guesses; an agent without a
    threshold uses ``default_threshold``.
    """

    def __init__(
        self,
        thresholds: Mapping[str, float] | None = None,
        budget: Budget | None = None,
        *,
        default_threshold: float = 0.5,
        llm_available: bool = True,
        llm_threshold: float | None = None,
        stats: EscalationStats | None = None,
    ) -> None:
        for name, t in {**(thresholds or {}), "default": default_threshold}.items():
            if not 0.0 <= t <= 1.0:
                raise ConfigurationError(f"threshold for {name!r} must lie in [0, 1], got {t}")
        self.thresholds = dict(thresholds or {})
        self.budget = budget if budget is not None else Budget()
        self.default_threshold = default_threshold
        self.llm_available = llm_available
        self.llm_threshold = llm_threshold
        self.stats = stats if stats is not None else EscalationStats()

    def threshold(self, agent: str) -> float:
        return self.thresholds.get(agent, self.default_threshold)

    def decide(self, result: AgentResult[Any], *, note_id: str | None = None) -> Route:
        """The route for ``result``; an ESCALATE answer has already reserved one unit of the budget."""
        route = self._decide(result)
        if note_id is not None:
            self.stats.record(note_id, result.agent, route)
        return route

    def _decide(self, result: AgentResult[Any]) -> Route:
        if result.provenance.escalated:
            # the LLM answered; accept it unless it is unsure too
            t = self.llm_threshold if self.llm_threshold is not None else 0.0
            return Route.ACCEPT if result.confidence >= t else Route.REVIEW
        if result.confidence >= self.threshold(result.agent):
            return Route.ACCEPT
        if self.llm_available and self.budget.take():
            return Route.ESCALATE
        return Route.REVIEW

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        thresholds: Mapping[str, float] | None = None,
        *,
        budget: Budget | None = None,
        **kw: Any,
    ) -> EscalationPolicy:
        """Policy for a run: thresholds from ``settings.thresholds`` (unless given), budget from
        ``settings.escalation_budget``, LLM if ``escalation_model`` is set."""
        kw.setdefault("llm_available", settings.escalation_model is not None)
        return cls(settings.thresholds if thresholds is None else thresholds, budget or Budget(max_escalations=settings.escalation_budget), **kw)

    def threshold_for(self, agent: str) -> float:
        return self.threshold(agent)


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold chosen on labelled data, with what it achieves there."""

    threshold: float
    escalation_share: float
    accepted_error: float
    target: str


def choose_threshold(
    confidences: Sequence[float],
    correct: Sequence[bool | int | float],
    *,
    max_error: float | None = None,
    max_escalation: float | None = None,
) -> ThresholdChoice:
    """Pick the agent's threshold on (calibrated) labelled data to meet a target.

    - ``max_error``: the lowest threshold whose accepted results (confidence >= threshold) have an error
      rate <= ``max_error`` (escalate as little as that allows);
    - ``max_escalation``: the highest threshold that escalates at most that share of results;
    - both: the error target, capped so that escalation stays within its share.
    """
    if max_error is None and max_escalation is None:
        raise ConfigurationError("choose_threshold needs a target: max_error=0.05 or max_escalation=0.15")
    if len(confidences) != len(correct) or not confidences:
        raise ConfigurationError(
            f"choose_threshold got {len(confidences)} confidences and {len(correct)} labels; need equal, > 0"
        )
    pairs = sorted(zip((float(c) for c in confidences), (float(bool(y)) for y in correct), strict=True))
    n = len(pairs)
    candidates = sorted({c for c, _ in pairs}) + [1.0 + 1e-9]

    def at(t: float) -> tuple[float, float]:
        acc = [y for c, y in pairs if c >= t]
        esc = (n - len(acc)) / n
        err = (1.0 - sum(acc) / len(acc)) if acc else 0.0
        return esc, err

    chosen = None
    if max_error is not None:
        for t in candidates:  # ascending: the first that meets the error target escalates least
            esc, err = at(t)
            if err <= max_error:
                chosen = t
                break
        if chosen is None:
            chosen = candidates[-1]
    if max_escalation is not None:
        cap = candidates[0]
        for t in candidates:
            esc, _ = at(t)
            if esc <= max_escalation + 1e-12:
                cap = t
        chosen = cap if chosen is None else min(chosen, cap)
    assert chosen is not None
    esc, err = at(chosen)
    target = ", ".join(
        s for s in (f"error<={max_error}" if max_error is not None else "",
                    f"escalation<={max_escalation}" if max_escalation is not None else "") if s
    )
    return ThresholdChoice(threshold=min(1.0, chosen), escalation_share=esc, accepted_error=err, target=target)


def note_escalation_rate(per_call_rates: Sequence[float]) -> float:
    """Expected share of notes escalated when agents escalate independently at these per-call rates."""
    p = 1.0
    for r in per_call_rates:
        p *= 1.0 - r
    return 1.0 - p


__all__ = [
    "Budget",
    "EscalationPolicy",
    "EscalationStats",
    "ThresholdChoice",
    "choose_threshold",
    "note_escalation_rate",
]
