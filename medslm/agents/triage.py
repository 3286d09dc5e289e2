"""The triage agent: an acuity level 1-5 (ESI / KTAS) from a note, with red flags and their evidence.

Three signals, combined so that each can be checked on its own:

1. **Red-flag rules** (:mod:`medslm.agents.red_flags`): unstable vitals, hypoxia, low GCS / AVPU,
   chest pain with ischaemic features, stroke signs, sepsis criteria… Each flag names the least urgent
   level it allows; the final level is never less urgent than the most urgent flag.
2. **A fitted acuity model** (:mod:`medslm.agents.triage_features`): logistic regression over
   vitals / complaint features, fitted on KTAS (shipped as package data).
3. **The SLM** scores the five levels by constrained choice in one forward pass
   (:meth:`LanguageModel.score_choices`).

The model and SLM distributions are combined in log space (``log p = log p_model + w · log p_slm``, ``w``
chosen by cross-validation), then the level is the **expected-cost minimiser** under an explicit cost
matrix: predicting a level *less* urgent than the truth costs ``under_triage_cost`` per level, a more
urgent one costs 1 per level. Raise ``under_triage_cost`` to trade over-triage for fewer under-triages.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from medslm.agents.triage_features import AcuityModel, TriageFeatures, note_features
from medslm.errors import ConfigurationError, MedslmError
from medslm.models.base import LanguageModel, prompt_hash
from medslm.records import AgentResult, Note, Provenance, RedFlag, Span, TriageResult
from medslm.routers.confidence import CHOICE_PROB, RULE_AGREEMENT
from medslm.routers.confidence import combine as fuse

__all__ = ["LEVELS", "TriageAgent", "combine", "cost_matrix", "decide"]

log = logging.getLogger(__name__)

LEVELS = (1, 2, 3, 4, 5)

SYSTEM_PROMPT = (
    "You are an emergency department triage nurse. Assign the acuity level of the patient on the "
    "5-level scale: 1 = resuscitation (immediate threat to life), 2 = emergent (high risk, unstable "
    "vitals, severe distress), 3 = urgent (stable but needs several resources), 4 = less urgent, "
    "5 = non-urgent. Answer with the level number only."
)
USER_TEMPLATE = "Triage note:\n{note}\n\nAcuity level (1-5):"
#: The SLM sees at most this many characters of the note (the rules and the acuity model read it all).
SLM_MAX_CHARS = 2_000


def cost_matrix(under_triage_cost: float, over_triage_cost: float = 1.0) -> list[list[float]]:
    """``C[true-1][pred-1]``: under-triage (pred less urgent, i.e. larger) costs more per level."""
    return [
        [
            (p - t) * under_triage_cost if p > t else (t - p) * over_triage_cost
            for p in LEVELS
        ]
        for t in LEVELS
    ]


def combine(p_model: Mapping[int, float], p_slm: Mapping[int, float] | None, weight: float) -> dict[int, float]:
    """``p ∝ p_model · p_slm^weight`` over the five levels (a product of experts)."""
    logs = []
    for lvl in LEVELS:
        lp = math.log(max(p_model.get(lvl, 0.0), 1e-12))
        if p_slm and weight:
            lp += weight * math.log(max(p_slm.get(lvl, 0.0), 1e-12))
        logs.append(lp)
    top = max(logs)
    e = [math.exp(x - top) for x in logs]
    z = sum(e)
    return {lvl: ei / z for lvl, ei in zip(LEVELS, e, strict=True)}


def decide(p: Mapping[int, float], red_flags: Sequence[RedFlag], under_triage_cost: float,
           over_triage_cost: float = 1.0) -> tuple[int, dict[str, float]]:
    """The level minimising expected cost, then capped by the most urgent red flag.

    Returns the level and the decision's signals (argmax level, cost-optimal level, flag cap).
    """
    C = cost_matrix(under_triage_cost, over_triage_cost)
    exp_cost = {k: sum(p.get(t, 0.0) * C[t - 1][k - 1] for t in LEVELS) for k in LEVELS}
    by_cost = min(LEVELS, key=lambda k: (exp_cost[k], k))
    argmax = max(LEVELS, key=lambda k: (p.get(k, 0.0), -k))
    cap = min((f.max_level for f in red_flags), default=5)
    level = min(by_cost, cap)
    return level, {"argmax_level": float(argmax), "cost_level": float(by_cost), "flag_cap": float(cap),
                   "expected_cost": exp_cost[level]}


class TriageAgent:
    """Acuity 1-5 from a note: red-flag rules + fitted acuity model + SLM choice scoring.

    ``model`` is a catalog spec (``"embedded"``) or a :class:`LanguageModel`; it loads on first use.
    ``use_slm=False`` runs rules + fitted model only (no language model at all).
    """

    name = "triage"
    #: Chosen by cross-validation on KTAS so that under-triage stays at or below the nurses' rate.
    DEFAULT_UNDER_TRIAGE_COST = 2.0

    def __init__(
        self,
        model: str | LanguageModel = "embedded",
        *,
        under_triage_cost: float | None = None,
        over_triage_cost: float = 1.0,
        slm_weight: float | None = None,
        use_slm: bool = True,
        acuity_model: AcuityModel | None = None,
        artifacts: str | None = None,
        scale: Literal["ESI", "KTAS"] = "ESI",
    ) -> None:
        u = self.DEFAULT_UNDER_TRIAGE_COST if under_triage_cost is None else float(under_triage_cost)
        if u <= 0 or over_triage_cost <= 0:
            raise ConfigurationError(
                f"triage costs must be > 0 (got under_triage_cost={u}, over_triage_cost={over_triage_cost}); "
                "use e.g. 2.0 to count an under-triage twice an over-triage"
            )
        if slm_weight is not None and slm_weight < 0:
            raise ConfigurationError(f"slm_weight must be >= 0, got {slm_weight}")
        self.model_spec = model
        self.under_triage_cost = u
        self.over_triage_cost = float(over_triage_cost)
        self._slm_weight = slm_weight
        self.use_slm = use_slm
        self._acuity = acuity_model
        self.artifacts = artifacts
        self.scale = scale
        self._lm: LanguageModel | None = model if not isinstance(model, str) else None

    # ------------------------------------------------------------------ lazy parts
    @property
    def lm(self) -> LanguageModel:
        if self._lm is None:
            from medslm.models.catalog import load_model

            self._lm = load_model(str(self.model_spec))
        return self._lm

    @property
    def acuity_model(self) -> AcuityModel:
        if self._acuity is None:
            self._acuity = AcuityModel.default(self.artifacts)
        return self._acuity

    @property
    def slm_weight(self) -> float:
        if self._slm_weight is not None:
            return self._slm_weight
        return float(self.acuity_model.meta.get("slm_weight", 0.5))

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(SYSTEM_PROMPT, USER_TEMPLATE)

    def messages(self, text: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(note=text[:SLM_MAX_CHARS])},
        ]

    def slm_distribution(self, text: str) -> tuple[dict[int, float], Any]:
        """The SLM's probability of each level (one forward pass) and the raw :class:`ChoiceScores`."""
        scores = self.lm.score_choices(self.messages(text), [str(k) for k in LEVELS])
        return {int(o): p for o, p in zip(scores.options, scores.probs, strict=True)}, scores

    # ------------------------------------------------------------------ the contract
    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[TriageResult]:
        t0 = time.perf_counter()
        text = note.text
        feats: TriageFeatures = note_features(text, self.acuity_model.vocabulary)
        p_model = self.acuity_model.predict_proba(feats.values)
        signals: dict[str, float] = {"n_red_flags": float(len(feats.red_flags))}
        p_slm: dict[int, float] | None = None
        prov = Provenance(prompt_hash=self.prompt_hash)
        if self.use_slm:
            try:
                p_slm, scores = self.slm_distribution(text)
                prov = Provenance(model_id=scores.model.id, model_revision=scores.model.revision,
                                  backend=scores.model.backend, prompt_hash=self.prompt_hash,
                                  tokens_in=scores.tokens_in, tokens_out=1, latency_ms=scores.latency_s * 1000)
                signals["slm_best_prob"] = scores.best_prob
                signals["slm_truncated"] = float(len(text) > SLM_MAX_CHARS)
            except MedslmError as exc:  # a failed model leaves rules + fitted model; recorded, not raised
                log.warning("triage: SLM scoring failed for note %s (%s); using rules + acuity model",
                            note.id, type(exc).__name__)
                signals["slm_failed"] = 1.0
        p = combine(p_model, p_slm, self.slm_weight)
        level, dsig = decide(p, feats.red_flags, self.under_triage_cost, self.over_triage_cost)
        signals.update(dsig)
        model_best = max(LEVELS, key=lambda k: p_model[k])
        signals["model_prob"] = p_model[model_best]
        signals["p_level"] = p[level]
        signals["p_not_under"] = sum(v for k, v in p.items() if k >= level)
        agree = [model_best == level]
        if p_slm is not None:
            slm_best = max(LEVELS, key=lambda k: p_slm[k])
            signals["slm_level"] = float(slm_best)
            signals["slm_prob_of_level"] = p_slm[level]
            agree.append(abs(slm_best - level) <= 1)
        signals["agreement"] = sum(agree) / len(agree)
        # one confidence from the named signals (medslm.routers.confidence): the combined probability of
        # the level, and whether the fitted model (and the SLM, within a level) agree with it
        signals[CHOICE_PROB] = p[level]
        signals[RULE_AGREEMENT] = signals["agreement"]
        confidence = fuse(signals)
        entities = _entity_note(state)
        rationale = _rationale(level, feats, dsig, entities)
        evidence = _evidence(feats)
        result = TriageResult(
            level=level,
            scale=self.scale,
            probabilities={k: round(v, 6) for k, v in p.items()},
            red_flags=feats.red_flags,
            rationale=rationale,
        )
        prov = prov.model_copy(update={"latency_ms": (time.perf_counter() - t0) * 1000})
        log.debug("triage note=%s level=%d flags=%d conf=%.3f", note.id, level, len(feats.red_flags), confidence)
        return AgentResult[TriageResult](agent=self.name, output=result, confidence=confidence, evidence=evidence,
                                         provenance=prov, signals=signals)


def _evidence(feats: TriageFeatures) -> tuple[Span, ...]:
    spans: dict[tuple[int, int], Span] = {}
    for f in feats.red_flags:
        for s in f.evidence:
            spans.setdefault((s.start, s.end), s)
    for m in feats.vitals.measurements():
        spans.setdefault((m.span.start, m.span.end), m.span)
    return tuple(sorted(spans.values(), key=lambda s: (s.start, s.end)))


def _entity_note(state: Mapping[str, Any] | None) -> int:
    """How many present problems NER found (used only in the rationale; counts, never text)."""
    if not state:
        return 0
    ents = state.get("entities")
    items = getattr(ents, "output", None) or []
    try:
        return sum(1 for e in items if str(getattr(e, "assertion", "present")) == "present"
                   and str(getattr(e, "type", "")) == "problem")
    except TypeError:
        return 0


def _rationale(level: int, feats: TriageFeatures, dsig: Mapping[str, float], n_problems: int) -> str:
    parts = [f"level {level}"]
    if feats.red_flags:
        parts.append("red flags: " + ", ".join(f"{f.name} (≤{f.max_level})" for f in feats.red_flags))
    if dsig["flag_cap"] < dsig["cost_level"]:
        parts.append(f"raised from {int(dsig['cost_level'])} by red flags")
    if dsig["cost_level"] < dsig["argmax_level"]:
        parts.append(f"most likely level {int(dsig['argmax_level'])}, raised by the under-triage cost")
    if n_problems:
        parts.append(f"{n_problems} present problems found by NER")
    return "; ".join(parts)
