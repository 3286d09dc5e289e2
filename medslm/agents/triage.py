"""The triage agent: an acuity level 1-5 (ESI / KTAS) from a note, with red flags and the finding that drove it.

Three signals, combined so that each can be checked on its own:

1. **Red-flag rules** (:mod:`medslm.agents.red_flags`): unstable vitals, hypoxia, low GCS / AVPU,
   chest pain with ischaemic features or an ACS work-up, stroke signs, sepsis, suicidal ideation, DKA…
   Each flag names the least urgent level it allows; the final level is never less urgent than the most
   urgent flag.
2. **A fitted acuity model** (:mod:`medslm.agents.triage_features`): logistic regression over
   vitals / complaint features, fitted on KTAS (the ``triage-acuity`` artifact).
3. **The triage specialist** (``triage-slm``): all-MiniLM-L6-v2 with a LoRA adapter fine-tuned on KTAS
   (:mod:`medslm.training.triage_slm`) reads the whole triage text (complaint, vitals, mental status,
   pain, age, arrival) and gives a distribution over the five levels in one forward pass. With another
   model spec (``"openai:…"``, ``"transformers:…"`` or a :class:`LanguageModel`) a generative model scores
   the five levels by constrained choice instead.

The model and specialist distributions are combined in log space (``log p = log p_model + w · log
p_slm``, ``w`` chosen on an inner dev split and stored with the specialist), then the level is the
**expected-cost minimiser** under an explicit cost matrix: predicting a level *less* urgent than the
truth costs ``under_triage_cost`` per level, a more urgent one costs 1 per level. The result names the
finding that drove the level (:class:`~medslm.records.TriageDriver`).
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
from medslm.records import AgentResult, Note, Provenance, RedFlag, Span, TriageDriver, TriageResult

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
    """Acuity 1-5 from a note: red-flag rules + fitted acuity model + the fine-tuned triage specialist.

    ``model``: ``"embedded"`` (the ``triage-slm`` specialist that ships with medslm, loaded on first use),
    another model spec or a :class:`LanguageModel` (a generative model scoring the five levels by
    constrained choice). ``use_slm=False`` runs rules + fitted model only (no language model at all).
    ``under_triage_cost`` and ``slm_weight`` default to the values tuned with the specialist.
    """

    name = "triage"
    #: Used when the specialist carries no tuned cost (a generative model, or rules + model only).
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
        if (under_triage_cost is not None and under_triage_cost <= 0) or over_triage_cost <= 0:
            raise ConfigurationError(
                f"triage costs must be > 0 (got under_triage_cost={under_triage_cost}, "
                f"over_triage_cost={over_triage_cost}); use e.g. 2.0 to count an under-triage twice an over-triage"
            )
        if slm_weight is not None and slm_weight < 0:
            raise ConfigurationError(f"slm_weight must be >= 0, got {slm_weight}")
        self.model_spec = model
        self._under = None if under_triage_cost is None else float(under_triage_cost)
        self.over_triage_cost = float(over_triage_cost)
        self._slm_weight = slm_weight
        self.use_slm = use_slm
        self._acuity = acuity_model
        self.artifacts = artifacts
        self.scale = scale
        self._lm: LanguageModel | None = model if not isinstance(model, str) else None
        self._specialist: Any = None

    # ------------------------------------------------------------------ lazy parts
    @property
    def uses_specialist(self) -> bool:
        """Whether the level distribution comes from the fine-tuned encoder (``model="embedded"``)."""
        return self.use_slm and isinstance(self.model_spec, str) and self.model_spec == "embedded"

    @property
    def specialist(self) -> Any:
        """The ``triage-slm`` :class:`~medslm.models.encoder.EncoderClassifier` (loaded on first use)."""
        if self._specialist is None:
            self._specialist = _load_specialist(self.artifacts)
        return self._specialist

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

    def _tuned(self, key: str) -> float | None:
        if not self.uses_specialist:
            return None
        v = self.specialist.extra.get(key)
        return None if v is None else float(v)

    @property
    def slm_weight(self) -> float:
        if self._slm_weight is not None:
            return self._slm_weight
        tuned = self._tuned("fusion_weight")
        return tuned if tuned is not None else float(self.acuity_model.meta.get("slm_weight", 0.5))

    @property
    def under_triage_cost(self) -> float:
        if self._under is not None:
            return self._under
        tuned = self._tuned("under_triage_cost")
        return tuned if tuned is not None else self.DEFAULT_UNDER_TRIAGE_COST

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(SYSTEM_PROMPT, USER_TEMPLATE)

    def messages(self, text: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(note=text[:SLM_MAX_CHARS])},
        ]

    def slm_distribution(self, text: str) -> tuple[dict[int, float], Any]:
        """The generative model's probability of each level (one forward pass) and the raw ``ChoiceScores``."""
        scores = self.lm.score_choices(self.messages(text), [str(k) for k in LEVELS])
        return {int(o): p for o, p in zip(scores.options, scores.probs, strict=True)}, scores

    def specialist_distribution(self, texts: Sequence[str]) -> list[dict[int, float]]:
        """The specialist's level distribution for each text (one batched forward pass)."""
        probs = self.specialist.predict(list(texts))
        labels = [int(x) for x in self.specialist.labels]
        return [{lv: float(p[j]) for j, lv in enumerate(labels)} for p in probs]

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
                if self.uses_specialist:
                    t1 = time.perf_counter()
                    p_slm = self.specialist_distribution([text])[0]
                    prov = Provenance(model_id=_SPECIALIST_ID, model_revision=self.specialist.revision,
                                      backend="encoder", prompt_hash=None,
                                      tokens_in=self.specialist.count_tokens(text), tokens_out=0,
                                      latency_ms=(time.perf_counter() - t1) * 1000)
                    signals["slm_best_prob"] = max(p_slm.values())
                else:
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
                p_slm = None
        w = self.slm_weight
        p = combine(p_model, p_slm, w)
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
            signals["slm_weight"] = w
            agree.append(abs(slm_best - level) <= 1)
        signals["agreement"] = sum(agree) / len(agree)
        confidence = min(1.0, max(0.0, p[level]))
        driver = self.driver(text, level, feats, p_model, p_slm if w else None, dsig)
        rationale = _rationale(level, feats, dsig, _entity_note(state), driver)
        evidence = _evidence(feats)
        result = TriageResult(
            level=level,
            scale=self.scale,
            probabilities={k: round(v, 6) for k, v in p.items()},
            red_flags=feats.red_flags,
            rationale=rationale,
            driver=driver,
        )
        prov = prov.model_copy(update={"latency_ms": (time.perf_counter() - t0) * 1000})
        log.debug("triage note=%s level=%d flags=%d conf=%.3f", note.id, level, len(feats.red_flags), confidence)
        return AgentResult[TriageResult](agent=self.name, output=result, confidence=confidence, evidence=evidence,
                                         provenance=prov, signals=signals)

    def driver(self, text: str, level: int, feats: TriageFeatures, p_model: Mapping[int, float],
               p_slm: Mapping[int, float] | None, dsig: Mapping[str, float]) -> TriageDriver:
        """The finding that set ``level``: a red flag that capped it, else the strongest of the specialist's
        reading and the acuity model's features (by their share of the level's log-odds)."""
        if feats.red_flags:
            top = min(feats.red_flags, key=lambda f: f.max_level)
            if top.max_level == level:  # the flag set the level (or agrees with it)
                others = [f.name for f in feats.red_flags if f is not top and f.max_level == level]
                detail = (top.detail or f"allows level {top.max_level} at most") + (
                    f"; also {', '.join(others)}" if others else "")
                return TriageDriver(source="red_flag", finding=top.name, evidence=top.evidence, detail=detail)
        w = self.slm_weight
        model_push = math.log(max(p_model.get(level, 0.0), 1e-12)) - sum(
            math.log(max(p_model.get(k, 0.0), 1e-12)) for k in LEVELS) / len(LEVELS)
        slm_push = 0.0
        if p_slm is not None:
            slm_push = w * (math.log(max(p_slm.get(level, 0.0), 1e-12)) - sum(
                math.log(max(p_slm.get(k, 0.0), 1e-12)) for k in LEVELS) / len(LEVELS))
        if p_slm is not None and slm_push > model_push and slm_push > 0:
            span = _complaint_span(text)
            return TriageDriver(source="specialist", finding="triage text (chief complaint)",
                                evidence=(span,) if span else (),
                                detail=f"the fine-tuned specialist gives level {level} p={p_slm.get(level, 0.0):.2f}")
        if dsig["cost_level"] < dsig["argmax_level"] and int(dsig["cost_level"]) == level:
            return TriageDriver(source="cost", finding="under-triage cost",
                                detail=f"most likely level {int(dsig['argmax_level'])}; the cost of under-triage "
                                       f"({self.under_triage_cost:g} per level) chose {level}")
        contrib = self.acuity_model.contributions(feats.values, level)
        name, value = max(((n, v) for n, v in contrib.items()
                           if not n.endswith("_missing") and n.removeprefix("w_") not in _STOPWORDS),
                          key=lambda t: t[1], default=("", 0.0))
        finding, spans = _describe_feature(name, text, feats)
        return TriageDriver(source="acuity_model", finding=finding, evidence=spans,
                            detail=f"weighs most toward level {level} in the acuity model (+{value:.2f} log-odds)")


#: complaint words that name no finding (the acuity model's vocabulary keeps them; a driver never names them)
_STOPWORDS = frozenset(["a", "an", "and", "at", "by", "during", "for", "from", "in", "into", "of", "on", "or", "since", "than", "the", "to", "with", "without", "day", "days", "hour", "hours", "week", "weeks", "ago", "after", "before"])
_SPECIALIST_ID = "sentence-transformers/all-MiniLM-L6-v2 + triage-slm (LoRA)"
_SPECIALISTS: dict[str, Any] = {}


def _load_specialist(artifacts: str | None) -> Any:
    """One loaded specialist per artifact folder and process."""
    from medslm.artifacts import artifact_dir
    from medslm.models.encoder import EncoderClassifier

    folder = artifact_dir("triage-slm", artifacts)
    key = str(folder)
    if key not in _SPECIALISTS:
        _SPECIALISTS[key] = EncoderClassifier(folder, batch_size=16).load()
    return _SPECIALISTS[key]


_FEATURE_TEXT = {
    "age": "age", "age_65": "age 65 or over", "male": "sex", "sbp": "systolic blood pressure", "dbp": "diastolic blood pressure",
    "hr": "heart rate", "rr": "respiratory rate", "temp_c": "temperature", "spo2": "oxygen saturation",
    "spo2_lt94": "SpO2 under 94 %", "sbp_lt100": "systolic BP under 100", "sbp_gt180": "systolic BP over 180",
    "hr_gt110": "heart rate over 110", "hr_lt50": "heart rate under 50", "rr_gt22": "respiratory rate over 22",
    "fever": "fever", "mental_2": "responds to voice only / confused", "mental_3": "responds to pain only",
    "mental_4": "unresponsive", "pain_nrs": "pain score", "pain_ge7": "pain 7/10 or more", "ambulance": "arrived by ambulance",
    "walk_in": "walked in", "injury": "injury", "flag_le1": "a level-1 red flag", "flag_le2": "a level-2 red flag",
    "flag_le3": "a level-3 red flag", "n_flags": "number of red flags",
}
_FEATURE_VITAL = {"age": "age", "age_65": "age", "male": "sex", "sbp": "sbp", "dbp": "dbp", "hr": "hr", "rr": "rr",
                  "temp_c": "temp_c", "spo2": "spo2", "spo2_lt94": "spo2", "sbp_lt100": "sbp", "sbp_gt180": "sbp",
                  "hr_gt110": "hr", "hr_lt50": "hr", "rr_gt22": "rr", "fever": "temp_c", "mental_2": "mental",
                  "mental_3": "mental", "mental_4": "mental", "pain_nrs": "pain", "pain_ge7": "pain"}


def _describe_feature(name: str, text: str, feats: TriageFeatures) -> tuple[str, tuple[Span, ...]]:
    import re

    if name.startswith("w_"):
        word = name[2:]
        m = re.search(r"\b" + re.escape(word[:5]) + r"\w*", text, re.I)
        return f"complaint word '{word}'", ((Span(start=m.start(), end=m.end()),) if m else ())
    vital = _FEATURE_VITAL.get(name)
    spans: tuple[Span, ...] = ()
    if vital is not None:
        meas = getattr(feats.vitals, vital, None)
        if meas is not None:
            spans = (meas.span,)
    elif name in ("ambulance", "walk_in", "injury"):
        from medslm.agents.triage_features import _AMBULANCE, _INJURY, _WALKIN

        m = {"ambulance": _AMBULANCE, "walk_in": _WALKIN, "injury": _INJURY}[name].search(text)
        spans = (Span(start=m.start(), end=m.end()),) if m else ()
    elif name.startswith("flag_") or name == "n_flags":
        spans = tuple(s for f in feats.red_flags[:1] for s in f.evidence)
    return _FEATURE_TEXT.get(name, name or "no single finding"), spans


def _complaint_span(text: str) -> Span | None:
    from medslm.agents.triage_features import _CC

    m = _CC.search(text)
    if m:
        return Span(start=m.start(1), end=m.end(1))
    first = text.strip().split(".")[0]
    if not first:
        return None
    start = text.index(first)
    return Span(start=start, end=start + len(first))


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


def _rationale(level: int, feats: TriageFeatures, dsig: Mapping[str, float], n_problems: int,
               driver: TriageDriver | None = None) -> str:
    parts = [f"level {level}"]
    if driver is not None:
        parts.append(f"driven by {driver.source.replace('_', ' ')}: {driver.finding}")
    if feats.red_flags:
        parts.append("red flags: " + ", ".join(f"{f.name} (≤{f.max_level})" for f in feats.red_flags))
    if dsig["flag_cap"] < dsig["cost_level"]:
        parts.append(f"raised from {int(dsig['cost_level'])} by red flags")
    if dsig["cost_level"] < dsig["argmax_level"]:
        parts.append(f"most likely level {int(dsig['argmax_level'])}, raised by the under-triage cost")
    if n_problems:
        parts.append(f"{n_problems} present problems found by NER")
    return "; ".join(parts)
