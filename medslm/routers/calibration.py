"""Calibration of confidences on labelled data: temperature scaling, isotonic regression, histogram binning.

A :class:`Calibrator` maps a raw confidence onto the accuracy observed for that confidence on labelled
data. It is fitted with :meth:`Calibrator.fit`, applied by calling it, and saved as JSON next to the
configuration it was fitted for (``config_hash``), so a run never applies a calibration made for other
models. Everything here is plain Python (no numpy / scikit-learn needed), so ``import medslm.routers``
stays light.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medslm.errors import ConfigurationError

Method = Literal["isotonic", "temperature", "histogram", "identity"]
METHODS: tuple[str, ...] = ("isotonic", "temperature", "histogram", "identity")
_EPS = 1e-6


def _check(confidences: Sequence[float], correct: Sequence[bool | int | float]) -> tuple[list[float], list[float]]:
    c = [float(x) for x in confidences]
    y = [float(bool(v)) if isinstance(v, bool) else float(v) for v in correct]
    if len(c) != len(y):
        raise ConfigurationError(
            f"calibration got {len(c)} confidences but {len(y)} correctness labels; pass one label per confidence"
        )
    if not c:
        raise ConfigurationError("calibration needs labelled examples; got none")
    bad = [x for x in c if not 0.0 <= x <= 1.0 or math.isnan(x)]
    if bad:
        raise ConfigurationError(f"confidences must lie in [0, 1]; got {len(bad)} outside (e.g. {bad[0]!r})")
    return c, y


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram."""

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float


def reliability(
    confidences: Sequence[float], correct: Sequence[bool | int | float], n_bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]: per bin, how many, mean confidence and observed accuracy."""
    c, y = _check(confidences, correct)
    if n_bins < 1:
        raise ConfigurationError(f"n_bins must be >= 1, got {n_bins}")
    sums = [[0, 0.0, 0.0] for _ in range(n_bins)]
    for conf, ok in zip(c, y, strict=True):
        b = min(n_bins - 1, int(conf * n_bins))
        sums[b][0] += 1
        sums[b][1] += conf
        sums[b][2] += ok
    out = []
    for i, (n, sc, sy) in enumerate(sums):
        out.append(
            ReliabilityBin(
                lower=i / n_bins,
                upper=(i + 1) / n_bins,
                count=int(n),
                mean_confidence=sc / n if n else 0.0,
                accuracy=sy / n if n else 0.0,
            )
        )
    return out


def ece(confidences: Sequence[float], correct: Sequence[bool | int | float], n_bins: int = 10) -> float:
    """Expected calibration error: count-weighted mean |accuracy - confidence| over equal-width bins."""
    bins = reliability(confidences, correct, n_bins)
    total = sum(b.count for b in bins)
    return sum(b.count * abs(b.accuracy - b.mean_confidence) for b in bins) / total


def _isotonic(x: list[float], y: list[float]) -> tuple[list[float], list[float]]:
    """scikit-learn's isotonic regression (pool-adjacent-violators) of y on x, as (knots, values)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    return [float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_]


def _logit(p: float) -> float:
    p = min(1.0 - _EPS, max(_EPS, p))
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _fit_temperature(c: list[float], y: list[float]) -> float:
    """Temperature T minimizing the negative log-likelihood of sigmoid(logit(c) / T) (scipy's bounded Brent
    search over log T in [log 0.02, log 50])."""
    import numpy as np
    from scipy.optimize import minimize_scalar

    z = np.asarray([_logit(v) for v in c])
    t = np.asarray(y, dtype=float)

    def nll(log_t: float) -> float:
        p = np.clip(1.0 / (1.0 + np.exp(-z / math.exp(log_t))), _EPS, 1.0 - _EPS)
        return float(-(t * np.log(p) + (1.0 - t) * np.log(1.0 - p)).sum())

    res = minimize_scalar(nll, bounds=(math.log(0.02), math.log(50.0)), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from raw confidence to calibrated confidence.

    >>> cal = Calibrator.fit([0.9, 0.8, 0.3, 0.2], [True, False, False, False], method="histogram", n_bins=2)
    >>> round(cal(0.85), 2)
    0.5
    """

    method: str
    params: Mapping[str, Any]
    n_examples: int = 0
    ece_before: float | None = None
    ece_after: float | None = None
    config_hash: str | None = None
    agent: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        confidences: Sequence[float],
        correct: Sequence[bool | int | float],
        method: str = "isotonic",
        *,
        n_bins: int = 10,
        agent: str | None = None,
        config_hash: str | None = None,
    ) -> Calibrator:
        """Fit on labelled data; ``correct[i]`` says whether the result with ``confidences[i]`` was right."""
        c, y = _check(confidences, correct)
        if method not in METHODS:
            from medslm.errors import UnknownNameError

            raise UnknownNameError("calibration method", method, METHODS)
        params: dict[str, Any]
        if method == "isotonic":
            knots, values = _isotonic(c, y)
            params = {"knots": knots, "values": values}
        elif method == "temperature":
            params = {"temperature": _fit_temperature(c, y)}
        elif method == "histogram":
            bins = reliability(c, y, n_bins)
            # empty bins fall back to their mean confidence (the identity)
            params = {
                "n_bins": n_bins,
                "values": [b.accuracy if b.count else (b.lower + b.upper) / 2 for b in bins],
            }
        else:
            params = {}
        made = cls(method=method, params=params, n_examples=len(c), agent=agent, config_hash=config_hash)
        after = [made(v) for v in c]
        return cls(
            method=method,
            params=params,
            n_examples=len(c),
            ece_before=ece(c, y, n_bins),
            ece_after=ece(after, y, n_bins),
            agent=agent,
            config_hash=config_hash,
        )

    def __call__(self, confidence: float) -> float:
        x = min(1.0, max(0.0, float(confidence)))
        p = self.params
        if self.method == "isotonic":
            knots, values = p["knots"], p["values"]
            if x <= knots[0]:
                return float(values[0])
            if x >= knots[-1]:
                return float(values[-1])
            i = bisect.bisect_right(knots, x)
            x0, x1, v0, v1 = knots[i - 1], knots[i], values[i - 1], values[i]
            return float(v0 if x1 == x0 else v0 + (v1 - v0) * (x - x0) / (x1 - x0))
        if self.method == "temperature":
            return _sigmoid(_logit(x) / float(p["temperature"]))
        if self.method == "histogram":
            n = int(p["n_bins"])
            return float(p["values"][min(n - 1, int(x * n))])
        return x

    def transform(self, confidences: Sequence[float]) -> list[float]:
        return [self(c) for c in confidences]

    # -- persistence ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": dict(self.params),
            "n_examples": self.n_examples,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "config_hash": self.config_hash,
            "agent": self.agent,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        if d.get("method") not in METHODS:
            raise ConfigurationError(
                f"calibration file names method {d.get('method')!r}; expected one of {', '.join(METHODS)}"
            )
        return cls(**{k: d[k] for k in ("method", "params") if k in d},
                   **{k: d.get(k) for k in ("n_examples", "ece_before", "ece_after", "config_hash", "agent")},
                   metadata=d.get("metadata") or {})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path, *, config_hash: str | None = None) -> Calibrator:
        """Load from JSON; with ``config_hash`` given, refuse a calibration fitted for another configuration."""
        cal = cls.from_dict(json.loads(Path(path).read_text()))
        _check_hash(cal.config_hash, config_hash, path)
        return cal


def _check_hash(saved: str | None, wanted: str | None, path: Any) -> None:
    if wanted is not None and saved is not None and saved != wanted:
        raise ConfigurationError(
            f"calibration in {path} was fitted for configuration {saved}, not {wanted}; "
            "refit it for these models (medslm.routers.Calibrator.fit) or drop config_hash"
        )


@dataclass(frozen=True)
class CalibrationSet:
    """One calibrator per agent, saved together with the configuration hash they were fitted for."""

    calibrators: Mapping[str, Calibrator]
    config_hash: str | None = None

    def __call__(self, agent: str, confidence: float) -> float:
        cal = self.calibrators.get(agent)
        return cal(confidence) if cal else confidence

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"config_hash": self.config_hash,
                   "agents": {k: v.to_dict() for k, v in self.calibrators.items()}}
        path.write_text(json.dumps(payload, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path, *, config_hash: str | None = None) -> CalibrationSet:
        d = json.loads(Path(path).read_text())
        _check_hash(d.get("config_hash"), config_hash, path)
        return cls({k: Calibrator.from_dict(v) for k, v in d.get("agents", {}).items()}, d.get("config_hash"))


def reliability_plot(
    curves: Mapping[str, tuple[Sequence[float], Sequence[bool | int | float]]],
    path: str | Path,
    *,
    n_bins: int = 10,
    title: str = "Reliability",
) -> Path:
    """Draw reliability diagrams (one line per named curve, e.g. 'triage raw' / 'triage calibrated') to PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from medslm.errors import MissingExtraError

        raise MissingExtraError(package="matplotlib", extra="eval", feature="reliability plots") from exc
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    for name, (conf, ok) in curves.items():
        bins = [b for b in reliability(conf, ok, n_bins) if b.count]
        ax.plot([b.mean_confidence for b in bins], [b.accuracy for b in bins], marker="o",
                label=f"{name} (ECE {ece(conf, ok, n_bins):.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


__all__ = ["METHODS", "CalibrationSet", "Calibrator", "ReliabilityBin", "ece", "reliability", "reliability_plot"]
