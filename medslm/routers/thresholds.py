"""Per-agent calibration in the running graph, and thresholds chosen by an error target.

A trained component ``calibration-<agent>`` (``medslm train calibration``) ships one
:class:`AgentCalibration` per agent: the calibrator (isotonic, temperature or identity, whichever had the
lowest held-out ECE), the **operating curve** measured on held-out data (for each threshold on the
calibrated confidence: the share of calls that would escalate and the error of the accepted ones), the
default threshold (the highest that escalates at most ``DEFAULT_MAX_ESCALATION`` of the dev calls) and
the configuration it was fitted for (the agent's model spec and the fingerprints of the trained
components it, and the agents it reads from, load). The ``route`` node applies it:

- a result's ``confidence`` becomes the calibrated value; the agent's own stays in ``raw_confidence``;
- the agent's threshold comes from ``Settings.thresholds[agent]`` when given, else from
  ``Settings.target_error`` read off the curve (the lowest threshold whose accepted error on the
  held-out data is within the target), else from the shipped default;
- a calibration fitted for another configuration (another model, retrained components) is **not**
  applied: the result stays uncalibrated and the agent gets ``Settings.thresholds`` or 0.5, with a
  warning naming the ``medslm train calibration-<agent>`` command that refits it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError
from medslm.routers.calibration import Calibrator

log = logging.getLogger(__name__)

#: The calibration components are named ``calibration-<agent>``.
PREFIX = "calibration-"
#: The file of an AgentCalibration inside its artifact folder.
FILE = "calibration.json"
#: Shipped default thresholds escalate at most this share of an agent's calls on held-out dev data
#: (five agents: at most ~1 - 0.95**5 = 23 % of notes if they were independent; they are correlated).
DEFAULT_MAX_ESCALATION = 0.05
#: Agents without a calibration (or with a stale one) use this threshold unless Settings gives one.
UNCALIBRATED_THRESHOLD = 0.5


def component_for(agent: str) -> str:
    return f"{PREFIX}{agent}"


@dataclass(frozen=True)
class OperatingPoint:
    """What a threshold does on the held-out data: share of calls under it, error of the rest."""

    threshold: float
    escalation_share: float
    accepted_error: float

    def as_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "escalation_share": self.escalation_share,
                "accepted_error": self.accepted_error}


@dataclass(frozen=True)
class OperatingCurve:
    """Escalation share and accepted error for every distinct threshold, ascending (risk-coverage)."""

    points: tuple[OperatingPoint, ...]
    n: int

    @classmethod
    def from_data(cls, confidences: Sequence[float], correct: Sequence[bool | float]) -> OperatingCurve:
        """The curve of (calibrated, held-out) confidences; ``correct[i]`` says whether result i was right."""
        if len(confidences) != len(correct) or not confidences:
            raise ConfigurationError(
                f"an operating curve needs one label per confidence; got {len(confidences)} and {len(correct)}")
        pairs = sorted(zip((float(c) for c in confidences), (float(bool(y)) for y in correct), strict=True))
        n = len(pairs)
        total_ok = sum(y for _, y in pairs)
        points = []
        below_n = 0
        below_ok = 0.0
        i = 0
        thresholds = sorted({c for c, _ in pairs})
        for t in [*thresholds, 1.0 + 1e-9]:
            while i < n and pairs[i][0] < t:
                below_n += 1
                below_ok += pairs[i][1]
                i += 1
            acc_n = n - below_n
            err = 1.0 - (total_ok - below_ok) / acc_n if acc_n else 0.0
            points.append(OperatingPoint(round(min(t, 1.0 + 1e-9), 6), round(below_n / n, 6), round(err, 6)))
        return cls(tuple(points), n)

    def at(self, threshold: float) -> OperatingPoint:
        """The point of the largest curve threshold <= ``threshold`` (what that threshold does)."""
        best = self.points[0]
        for p in self.points:
            if p.threshold <= threshold + 1e-12:
                best = p
            else:
                break
        return OperatingPoint(threshold, best.escalation_share, best.accepted_error)

    def for_error(self, target: float) -> OperatingPoint:
        """The lowest threshold whose accepted results are wrong at most ``target`` of the time."""
        for p in self.points:
            if p.accepted_error <= target + 1e-12:
                return p
        return self.points[-1]

    def for_share(self, max_share: float) -> OperatingPoint:
        """The highest threshold that escalates at most ``max_share`` of the calls."""
        best = self.points[0]
        for p in self.points:
            if p.escalation_share <= max_share + 1e-12:
                best = p
        return best

    def to_list(self) -> list[list[float]]:
        return [[p.threshold, p.escalation_share, p.accepted_error] for p in self.points]

    @classmethod
    def from_list(cls, rows: Sequence[Sequence[float]], n: int) -> OperatingCurve:
        return cls(tuple(OperatingPoint(float(a), float(b), float(c)) for a, b, c in rows), int(n))


@dataclass(frozen=True)
class AgentCalibration:
    """One agent's shipped calibration: calibrator, operating curve, default threshold, what it fits."""

    agent: str
    calibrator: Calibrator
    curve: OperatingCurve
    default_threshold: float
    fitted_for: Mapping[str, Any]
    split: str = ""
    correct: str = ""
    figures: Mapping[str, float] = field(default_factory=dict)
    component: str = ""

    @property
    def name(self) -> str:
        return f"{self.component or component_for(self.agent)}:{self.calibrator.method}"

    def __call__(self, confidence: float) -> float:
        return self.calibrator(confidence)

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "calibrator": self.calibrator.to_dict(), "curve": self.curve.to_list(),
                "n": self.curve.n, "default_threshold": self.default_threshold,
                "fitted_for": dict(self.fitted_for), "split": self.split, "correct": self.correct,
                "figures": dict(self.figures)}

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], component: str = "") -> AgentCalibration:
        try:
            return cls(agent=str(d["agent"]), calibrator=Calibrator.from_dict(d["calibrator"]),
                       curve=OperatingCurve.from_list(d["curve"], d.get("n", 0)),
                       default_threshold=float(d["default_threshold"]), fitted_for=dict(d.get("fitted_for") or {}),
                       split=str(d.get("split", "")), correct=str(d.get("correct", "")),
                       figures=dict(d.get("figures") or {}), component=component)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"calibration {component or '?'} is malformed ({type(exc).__name__}: {exc}); refit it with "
                f"`medslm train {component or 'calibration'}`") from None

    @classmethod
    def load(cls, agent: str, root: str | Path | None = None) -> AgentCalibration | None:
        """The calibration of ``agent`` from the user's artifacts or the package; None when there is none."""
        from medslm.artifacts import ArtifactError, artifact_dir

        comp = component_for(agent)
        try:
            folder = artifact_dir(comp, root)
        except ArtifactError:
            return None
        return cls.from_dict(json.loads((folder / FILE).read_text(encoding="utf-8")), comp)


# --------------------------------------------------------------------------------- what it was fitted for
def upstream_agents(agent: str) -> list[str]:
    """``agent`` and every registered agent whose field it reads (transitively), e.g. icd -> [icd, ner]."""
    from medslm import registry

    out: list[str] = []
    todo = [agent]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.append(name)
        spec = registry.find(name)
        if spec is None:
            continue
        for f in (*spec.reads, *spec.optional_reads):
            up = registry.for_field(f)
            if up is not None and up.name not in out:
                todo.append(up.name)
    return out


def fitted_for(agent: str, settings: Any, root: str | Path | None = None) -> dict[str, Any]:
    """What a calibration of ``agent`` depends on: the model spec of it and of the agents it reads from,
    and the fingerprints of their trained components (never the calibration components themselves)."""
    from medslm import artifacts, registry

    agents = upstream_agents(agent)
    models = {}
    for a in agents:
        spec = registry.find(a)
        models[a] = settings.model_for(spec.role if spec is not None else a)
    comps: dict[str, str] = {}
    for comp, _folder, manifest in artifacts.list_artifacts(root):
        if manifest.agent in agents and not comp.startswith(PREFIX):
            comps[comp] = manifest.fingerprint
    return {"models": dict(sorted(models.items())), "components": dict(sorted(comps.items()))}


def stale_reason(cal: AgentCalibration, now: Mapping[str, Any]) -> str | None:
    """Why ``cal`` does not fit the configuration ``now`` (None when it does)."""
    want_models, have_models = dict(cal.fitted_for.get("models") or {}), dict(now.get("models") or {})
    if want_models != have_models:
        diff = sorted(k for k in set(want_models) | set(have_models) if want_models.get(k) != have_models.get(k))
        return f"fitted for other models ({', '.join(diff)})"
    want, have = dict(cal.fitted_for.get("components") or {}), dict(now.get("components") or {})
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        return f"fitted for other trained components ({', '.join(diff)})"
    return None


# --------------------------------------------------------------------------------- thresholds in force
@dataclass(frozen=True)
class ThresholdInForce:
    """An agent's threshold for a run, where it came from and what it does on the held-out data."""

    agent: str
    threshold: float
    source: str  # "settings.thresholds", "target_error=0.1", "shipped default", "uncalibrated default"
    calibration: str | None
    expected: OperatingPoint | None  # on the held-out data of the calibration (None: uncalibrated)
    split: str = ""
    stale: str | None = None


class Calibrations:
    """The calibrations and thresholds of one run (one per ReviewContext); loads each agent's once."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._cache: dict[str, AgentCalibration | None] = {}
        self._stale: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, agent: str) -> AgentCalibration | None:
        """The calibration to apply to ``agent``'s results, or None (none shipped, or stale)."""
        with self._lock:
            if agent not in self._cache:
                cal = AgentCalibration.load(agent, self.settings.artifacts)
                if cal is not None:
                    why = stale_reason(cal, fitted_for(agent, self.settings, self.settings.artifacts))
                    if why is not None:
                        self._stale[agent] = why
                        log.warning("calibration of %s not applied: %s; refit it with `medslm train %s`", agent,
                                    why, component_for(agent))
                        cal = None
                self._cache[agent] = cal
            return self._cache[agent]

    def stale(self, agent: str) -> str | None:
        self.get(agent)
        return self._stale.get(agent)

    def apply(self, result: Any) -> Any:
        """``result`` with its calibrated confidence (raw kept); unchanged when uncalibrated or done."""
        if result.raw_confidence is not None or result.provenance.escalated:
            return result
        if "ensemble_agreement" in result.signals:  # an ensemble's vote: not what the calibration was fitted on
            return result
        cal = self.get(result.agent)
        if cal is None:
            return result
        return result.model_copy(update={"raw_confidence": result.confidence,
                                         "confidence": round(min(1.0, max(0.0, cal(result.confidence))), 6),
                                         "calibration": cal.name})

    def threshold(self, agent: str) -> ThresholdInForce:
        s = self.settings
        cal = self.get(agent)
        stale = self._stale.get(agent)
        name = cal.name if cal is not None else None
        split = cal.split if cal is not None else ""
        if agent in s.thresholds:
            t = float(s.thresholds[agent])
            return ThresholdInForce(agent, t, "settings.thresholds", name, cal.curve.at(t) if cal else None, split,
                                    stale)
        target = s.target_error_for(agent)
        if cal is not None and target is not None:
            p = cal.curve.for_error(target)
            return ThresholdInForce(agent, min(1.0, p.threshold), f"target_error={target:g}", name, p, split)
        if cal is not None:
            t = cal.default_threshold
            return ThresholdInForce(agent, t, "shipped default", name, cal.curve.at(t), split)
        return ThresholdInForce(agent, UNCALIBRATED_THRESHOLD, "uncalibrated default", None, None, "", stale)

    def thresholds(self, agents: Sequence[str]) -> dict[str, float]:
        return {a: self.threshold(a).threshold for a in agents}


__all__ = [
    "DEFAULT_MAX_ESCALATION",
    "FILE",
    "PREFIX",
    "UNCALIBRATED_THRESHOLD",
    "AgentCalibration",
    "Calibrations",
    "OperatingCurve",
    "OperatingPoint",
    "ThresholdInForce",
    "component_for",
    "fitted_for",
    "stale_reason",
    "upstream_agents",
]
