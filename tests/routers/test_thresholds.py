"""Calibration in the running graph: operating curves, thresholds by target error, stale calibrations."""

from __future__ import annotations

import json

import pytest

from medslm.records import AgentResult, TriageResult
from medslm.routers.calibration import Calibrator
from medslm.routers.thresholds import (
    AgentCalibration,
    Calibrations,
    OperatingCurve,
    fitted_for,
    stale_reason,
    upstream_agents,
)
from medslm.settings import Settings


def test_the_operating_curve_counts_escalations_and_accepted_errors() -> None:
    conf = [0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95]
    ok = [False, False, True, False, True, True, True, True]
    curve = OperatingCurve.from_data(conf, ok)
    p = curve.at(0.6)  # 3 of 8 under it; of the 5 accepted, 1 wrong
    assert p.escalation_share == pytest.approx(3 / 8) and p.accepted_error == pytest.approx(1 / 5)
    assert curve.at(0.0).escalation_share == 0.0 and curve.at(0.0).accepted_error == pytest.approx(3 / 8)
    best = curve.for_error(0.0)  # the lowest threshold with no accepted error escalates 4 of 8
    assert best.threshold == pytest.approx(0.7) and best.escalation_share == pytest.approx(0.5)
    assert curve.for_share(0.25).threshold == pytest.approx(0.3)  # 2 of 8 escalated
    assert OperatingCurve.from_list(curve.to_list(), curve.n) == curve


def _calibration(agent: str, settings: Settings, **kw) -> AgentCalibration:
    conf = [i / 20 for i in range(20)]
    ok = [c > 0.4 for c in conf]
    cal = Calibrator.fit(conf, ok, method="isotonic", agent=agent)
    curve = OperatingCurve.from_data([cal(c) for c in conf], ok)
    return AgentCalibration(agent=agent, calibrator=cal, curve=curve, default_threshold=0.5,
                            fitted_for=kw.pop("fitted_for", fitted_for(agent, settings)), split="test data",
                            correct="test", component=f"calibration-{agent}", **kw)


def _save(tmp_path, cal: AgentCalibration) -> None:
    from medslm.artifacts import FileRecord, Manifest, now_iso, sha256_file, write_manifest

    folder = tmp_path / cal.component
    path = cal.save(folder)
    write_manifest(folder, Manifest(component=cal.component, agent=cal.agent, created=now_iso(), medslm_version="t",
                                    files={path.name: FileRecord(sha256=sha256_file(path), bytes=path.stat().st_size)}))


def test_route_thresholds_come_from_settings_then_target_error_then_the_shipped_default(tmp_path) -> None:
    s = Settings(artifacts=tmp_path)
    _save(tmp_path, _calibration("triage", s))
    cals = Calibrations(s)
    t = cals.threshold("triage")
    assert t.source == "shipped default" and t.threshold == 0.5 and t.expected is not None
    t = Calibrations(s.model_copy(update={"target_error": 0.0})).threshold("triage")
    assert t.source == "target_error=0" and t.expected.accepted_error == 0.0 and t.threshold > 0.0
    t = Calibrations(s.model_copy(update={"target_error": 0.0, "thresholds": {"triage": 0.9}})).threshold("triage")
    assert t.source == "settings.thresholds" and t.threshold == 0.9
    assert Calibrations(s).threshold("medication").source == "uncalibrated default"  # none ships
    # a result gets the calibrated confidence; its own stays in raw_confidence
    r = AgentResult[TriageResult](agent="triage", output=TriageResult(level=3), confidence=0.1)
    out = cals.apply(r)
    assert out.raw_confidence == 0.1 and out.confidence == 0.0 and out.calibration == "calibration-triage:isotonic"
    assert cals.apply(out) == out  # never twice


def test_a_calibration_fitted_for_other_models_or_components_is_not_applied(tmp_path) -> None:
    s = Settings(artifacts=tmp_path)
    now = fitted_for("icd", s)
    assert set(now["models"]) == {"icd", "ner"} and "icd-coder" in now["components"]
    assert set(upstream_agents("icd")) == {"icd", "ner"}
    other = {**now, "components": {**now["components"], "icd-coder": "0" * 16}}
    assert "icd-coder" in stale_reason(_calibration("icd", s, fitted_for=other), now)
    _save(tmp_path, _calibration("icd", s, fitted_for=other))
    cals = Calibrations(s)
    assert cals.get("icd") is None and "other trained components" in cals.stale("icd")
    assert cals.threshold("icd").source == "uncalibrated default"
    # another model for the agent: also not applied
    s2 = s.with_models(icd="openai:http://127.0.0.1:9/v1#big")
    _save(tmp_path, _calibration("icd", s))
    assert Calibrations(s).get("icd") is not None and Calibrations(s2).get("icd") is None


def test_target_error_is_checked_and_read_per_agent() -> None:
    s = Settings(target_error={"icd": 0.3, "default": 0.1})
    assert s.target_error_for("icd") == 0.3 and s.target_error_for("ner") == 0.1
    assert Settings(target_error=0.2).target_error_for("x") == 0.2 and Settings().target_error_for("x") is None
    with pytest.raises(ValueError, match="target_error"):
        Settings(target_error=1.5)
    assert Settings(target_error=0.1).config_hash() != Settings().config_hash()


def test_the_shipped_calibrations_fit_the_shipped_components() -> None:
    """A retrained component without its calibration refitted fails here: `medslm train calibration`."""
    from medslm.artifacts import list_artifacts

    shipped = [c for c, _, _ in list_artifacts() if c.startswith("calibration-")]
    assert {"calibration-triage", "calibration-icd", "calibration-ner", "calibration-summarize"} <= set(shipped)
    cals = Calibrations(Settings())
    for comp in shipped:
        agent = comp.removeprefix("calibration-")
        assert cals.get(agent) is not None, cals.stale(agent)
        data = json.loads((list_artifacts()[0][1].parent / comp / "calibration.json").read_text())
        assert data["correct"] and data["split"]
        # the shipped default escalates at most 5 % of the held-out calls
        assert cals.threshold(agent).expected.escalation_share <= 0.05 + 1e-9
