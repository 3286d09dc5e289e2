"""medslm.evals.report / plots: Markdown, JSON and PNGs from a hand-made result."""

from __future__ import annotations

import json

from medslm.evals.report import headline_rows, markdown, write_report


def _result() -> dict:
    pts = [{"escalation_share": 0.0, "quality": 0.5, "threshold": 0.0},
           {"escalation_share": 0.5, "quality": 0.75, "threshold": 0.3},
           {"escalation_share": 1.0, "quality": 1.0, "threshold": 0.9}]
    bins = [{"lower": 0.2, "upper": 0.3, "count": 1, "confidence": 0.25, "accuracy": 0.0},
            {"lower": 0.9, "upper": 1.0, "count": 1, "confidence": 0.95, "accuracy": 1.0}]
    cost = {"tokens_in_per_note": 178.0, "tokens_out_per_note": 1.0, "latency_ms_p50": 812.4, "latency_ms_p95": 900.0,
            "notes_per_s": 1.23, "escalation_share": 0.0, "review_share": 0.5, "failed": 0}
    return {
        "meta": {"created": "2026-01-01T00:00:00+00:00", "tasks": ["triage"], "limit": 2, "probe": 2, "seconds": 3.0,
                 "cpus": 2, "config_hash": "abc", "models": {"triage": "embedded"}, "escalation_model": None},
        "tasks": {"triage": {
            "task": "triage", "dataset": "KTAS", "headline": "accuracy",
            "task_eval": {"status": "ok", "function": "medslm.evals.triage.evaluate_triage", "seconds": 1.0,
                          "figures": {"rows": {"nurse": {"accuracy": 0.6, "kappa_qw": 0.5},
                                               "agent": {"accuracy": 0.7, "kappa_qw": 0.66}},
                                      "protocol": "5-fold CV", "latency_ms": {"p50": 12.5}}},
            "systems": {
                "rules": {"metrics": {"accuracy": 0.5}, "ci": {"accuracy": [0.0, 1.0]}, "n": 2,
                          "cost": {**cost, "tokens_in_per_note": 0.0, "review_share": 0.0}},
                "slm": {"metrics": {"accuracy": 0.5}, "ci": {"accuracy": [0.0, 1.0]}, "n": 2, "cost": cost,
                        "ece": 0.175, "reliability": bins, "calibration_units": 2},
                "llm": {"skipped": "no LLM endpoint configured (set MEDSLM_ESCALATION_MODEL)"},
                "cascade": {"metrics": {"accuracy": 0.75}, "ci": {"accuracy": [0.5, 1.0]}, "n": 2, "cost": cost,
                            "assumption": "results routed to human review count as corrected"},
            },
            "pareto": {"to": "human review", "points": pts},
        }},
    }


def test_headline_rows_values() -> None:
    rows = {r["system"]: r for r in headline_rows(_result())}
    assert rows["slm"]["quality"] == "0.500 [0.00, 1.00]"
    assert rows["slm"]["tokens_in_per_note"] == "178" and rows["slm"]["latency_ms_p50"] == "812"
    assert rows["slm"]["review_share"] == "50%" and rows["slm"]["ece"] == "0.175"
    assert rows["cascade"]["quality"] == "0.750 [0.50, 1.00]" and rows["cascade"]["note"] == "reviewed = corrected"
    assert rows["llm"]["quality"] == "-" and "MEDSLM_ESCALATION_MODEL" in rows["llm"]["note"]


def test_markdown_has_headline_and_task_tables() -> None:
    md = markdown(_result(), {"triage": {"pareto": "pareto_triage.png"}})
    assert "| triage | slm | accuracy | 0.500 [0.00, 1.00] | 2 | 178 | 1.0 | 812 | 1.23 | 0% | 50% | 0.175 |" in md
    assert "| agent | 0.700 | 0.660 |" in md  # the task's own table of systems
    assert "| protocol | 5-fold CV |" in md and "| latency_ms.p50 | 12.500 |" in md
    assert "![triage pareto](pareto_triage.png)" in md


def test_write_report_files(tmp_path) -> None:
    files = write_report(_result(), tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["tasks"]["triage"]["systems"]["cascade"]["metrics"]["accuracy"] == 0.75
    assert data["plots"] == {"triage": {"pareto": "pareto_triage.png", "reliability": "reliability_triage.png"}}
    for key in ("pareto_triage", "reliability_triage"):
        assert files[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[key].stat().st_size > 5_000
    md = files["markdown"].read_text()
    assert "![triage reliability](reliability_triage.png)" in md
