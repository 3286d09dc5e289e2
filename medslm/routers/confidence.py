"""Confidence signals and how one ``confidence`` per result is made from them.

Each signal is a number in [0, 1] that an agent (or the verifier) records in ``AgentResult.signals``
under a well-known name; :func:`combine` folds them into the single ``confidence`` the policy reads,
and a :class:`~medslm.routers.calibration.Calibrator` then maps it onto an observed accuracy.

Signals (names are the keys agents use in ``signals``):

- ``choice_prob``      normalized probability of the chosen option (:func:`choice_probability`)
- ``sample_agreement`` share of k sampled answers equal to the answer (:func:`sample_agreement`)
- ``rule_agreement``   agreement between the SLM and the rules / KG (:func:`rule_agreement`)
- ``ensemble_agreement`` share of an ensemble (prompts or models) voting for the answer
  (:func:`ensemble_vote`, as in ELM / COSMosFL-style voting)
- ``kg_verified``      share of emitted codes/concepts that pass KG verification (:func:`kg_verification`)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medslm.errors import ConfigurationError

CHOICE_PROB = "choice_prob"
SAMPLE_AGREEMENT = "sample_agreement"
RULE_AGREEMENT = "rule_agreement"
ENSEMBLE_AGREEMENT = "ensemble_agreement"
KG_VERIFIED = "kg_verified"

SIGNALS = (CHOICE_PROB, SAMPLE_AGREEMENT, RULE_AGREEMENT, ENSEMBLE_AGREEMENT, KG_VERIFIED)


def choice_probability(probs: Mapping[Any, float] | Sequence[float], chosen: Any | None = None) -> float:
    """Normalized probability of ``chosen`` (or of the best option) among the scored options."""
    values = dict(probs) if isinstance(probs, Mapping) else dict(enumerate(probs))
    total = sum(max(0.0, float(v)) for v in values.values())
    if total <= 0.0:
        return 0.0
    p = values[chosen] if chosen is not None else max(values.values())
    return min(1.0, max(0.0, float(p) / total))


def sample_agreement(answer: Hashable, samples: Iterable[Hashable]) -> float:
    """Share of k samples (temperature > 0) that equal ``answer``; 0 when there are none."""
    items = list(samples)
    if not items:
        return 0.0
    return sum(1 for s in items if s == answer) / len(items)


def ensemble_vote(votes: Sequence[Hashable], weights: Sequence[float] | None = None) -> tuple[Hashable, float]:
    """Weighted majority of an ensemble (several prompts or models): ``(winner, share of the vote)``.

    Ties go to the earliest vote, so the first (usually the primary) member breaks them.
    """
    if not votes:
        raise ConfigurationError("ensemble_vote needs at least one vote; got none")
    w = list(weights) if weights is not None else [1.0] * len(votes)
    if len(w) != len(votes):
        raise ConfigurationError(f"ensemble_vote got {len(votes)} votes but {len(w)} weights; pass one each")
    tally: dict[Hashable, float] = {}
    for v, wt in zip(votes, w, strict=True):
        tally[v] = tally.get(v, 0.0) + float(wt)
    total = sum(tally.values()) or 1.0
    winner = max(tally, key=lambda k: (tally[k], -votes.index(k)))
    return winner, tally[winner] / total


def rule_agreement(slm: Any, rules: Any) -> float:
    """Agreement between the SLM's answer and what rules / the KG say.

    Scalars: 1.0 when equal, else 0.0. Sets (codes, concepts): Jaccard overlap. Ordinal integers (triage
    levels) lose 0.5 per level apart. ``rules is None`` (the rules have no opinion) gives 0.5.
    """
    if rules is None:
        return 0.5
    if isinstance(slm, set | frozenset | list | tuple) or isinstance(rules, set | frozenset | list | tuple):
        a, b = set(_as_iter(slm)), set(_as_iter(rules))
        if not a and not b:
            return 1.0
        return len(a & b) / len(a | b)
    if isinstance(slm, int) and isinstance(rules, int) and not isinstance(slm, bool):
        return max(0.0, 1.0 - 0.5 * abs(slm - rules))
    return 1.0 if slm == rules else 0.0


def kg_verification(n_valid: int, n_total: int) -> float:
    """Share of emitted codes / concepts the KG verified (exists, billable, evidence found); 1 when none."""
    if n_total <= 0:
        return 1.0
    return max(0.0, min(1.0, n_valid / n_total))


def _as_iter(x: Any) -> Iterable[Any]:
    return x if isinstance(x, set | frozenset | list | tuple) else (x,)


@dataclass(frozen=True)
class SignalWeights:
    """How signals fold into one confidence: a weighted geometric mean of the signals present.

    A geometric mean lets any one strong doubt (a KG failure, a split ensemble) pull the confidence
    down, which an arithmetic mean would average away. Missing signals are skipped, not counted as 0.
    """

    weights: Mapping[str, float] = field(
        default_factory=lambda: {
            CHOICE_PROB: 1.0,
            SAMPLE_AGREEMENT: 1.0,
            RULE_AGREEMENT: 0.5,
            ENSEMBLE_AGREEMENT: 1.0,
            KG_VERIFIED: 1.0,
        }
    )
    floor: float = 1e-4

    def __call__(self, signals: Mapping[str, float]) -> float:
        return combine(signals, self)


def combine(signals: Mapping[str, float], weights: SignalWeights | Mapping[str, float] | None = None) -> float:
    """One confidence in [0, 1] from raw signals (weighted geometric mean over the signals present).

    Signals not named in ``weights`` are ignored; with no known signal present the result is 0.0 (an
    agent that measured nothing has no confidence), never a constant guess.
    """
    sw = weights if isinstance(weights, SignalWeights) else SignalWeights(weights) if weights else SignalWeights()
    num = 0.0
    den = 0.0
    for name, w in sw.weights.items():
        if name in signals and w > 0:
            v = min(1.0, max(sw.floor, float(signals[name])))
            num += w * math.log(v)
            den += w
    if den == 0.0:
        return 0.0
    return min(1.0, max(0.0, math.exp(num / den)))


def majority(values: Iterable[Hashable]) -> tuple[Hashable, float]:
    """Most common value and its share (ties: first seen)."""
    items = list(values)
    if not items:
        raise ConfigurationError("majority needs at least one value; got none")
    counts = Counter(items)
    best = max(counts, key=lambda k: (counts[k], -items.index(k)))
    return best, counts[best] / len(items)


__all__ = [
    "CHOICE_PROB",
    "ENSEMBLE_AGREEMENT",
    "KG_VERIFIED",
    "RULE_AGREEMENT",
    "SAMPLE_AGREEMENT",
    "SIGNALS",
    "SignalWeights",
    "choice_probability",
    "combine",
    "ensemble_vote",
    "kg_verification",
    "majority",
    "rule_agreement",
    "sample_agreement",
]
