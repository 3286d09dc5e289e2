"""medslm.evals.harness: the side-by-side probe on real KTAS rows, the cascade and Pareto logic, the CLI."""

from __future__ import annotations

import json

import pytest

from medslm.errors import UnknownNameError
from medslm.evals import harness as H


def test_pareto_sweep_hand_values() -> None:
    spec = H.TASKS["triage"]
    items = [H.Item("a", 1, pred=2, confidence=0.2), H.Item("b", 3, pred=3, confidence=0.9),
             H.Item("c", 4, pred=5, confidence=0.5), H.Item("d", 2, pred=2, confidence=0.8)]
    pts = H._pareto(spec, items, None)  # to a reviewer: escalated items become right
    assert [p["escalation_share"] for p in pts] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p["quality"] for p in pts] == [0.5, 0.75, 1.0, 1.0, 1.0]  # a (0.2) then c (0.5) go up first
    # to an LLM that answers 3 everywhere: right only for b (gold 3)
    pts = H._pareto(spec, items, [3, 3, 3, 3])
    assert [p["quality"] for p in pts] == [0.5, 0.5, 0.5, 0.25, 0.25]  # d loses its right answer at step 3


def test_cascade_counts_reviewed_items_as_corrected(monkeypatch, data_dir) -> None:
    """Routing logic only (a fake probe): review items take the gold, accepted ones keep the SLM answer."""
    from medslm.settings import Settings

    def fake_probe(spec, system, records, settings):
        routes = ["accept", "review", "accept", "escalate"]
        return [H.Item(rid, gold, pred=1, confidence=0.1 * k, route=routes[k], tokens_in=10)
                for k, (rid, _, gold) in enumerate(records)]

    monkeypatch.setattr(H, "_probe", fake_probe)
    out = H.run_task(H.TASKS["triage"], data_dir, 4, probe=4, settings=Settings(), systems=("slm", "cascade"),
                     task_eval=False, n_boot=50)
    golds = [g for _, _, g in H.TASKS["triage"].load(data_dir, 4)]
    slm_acc = sum(g == 1 for g in golds) / 4
    assert out["systems"]["slm"]["metrics"]["accuracy"] == pytest.approx(slm_acc)
    expect = sum(1 for k, g in enumerate(golds) if k in (1, 3) or g == 1) / 4
    assert out["systems"]["cascade"]["metrics"]["accuracy"] == pytest.approx(expect)
    c = out["systems"]["cascade"]["cost"]
    assert (c["escalation_share"], c["review_share"]) == (0.0, 0.5)  # no LLM: escalations go to review
    assert out["systems"]["slm"]["cost"]["tokens_in_per_note"] == 10
    assert out["pareto"]["to"] == "human review" and len(out["pareto"]["points"]) == 5


def test_rules_probe_on_ktas_is_real(data_dir) -> None:
    out = H.run_eval("triage", data_dir, limit=6, probe=6, systems=("rules", "llm"), task_eval=False, n_boot=50)
    t = out["tasks"]["triage"]
    r = t["systems"]["rules"]
    assert r["n"] == 6 and r["cost"]["failed"] == 0
    m = r["metrics"]
    assert m["accuracy"] + m["under_triage"] + m["over_triage"] == pytest.approx(1.0)
    assert 0.0 <= r["ci"]["accuracy"][0] <= m["accuracy"] <= r["ci"]["accuracy"][1] <= 1.0
    assert r["cost"]["tokens_in_per_note"] == 0  # no language model in the rules system
    assert "MEDSLM_ESCALATION_MODEL" in t["systems"]["llm"]["skipped"]
    assert out["meta"]["probe"] == 6 and out["meta"]["tasks"] == ["triage"]
    json.dumps(out)  # JSON-ready


def test_unknown_task_or_system() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'triage'"):
        H.run_eval("triag")
    with pytest.raises(UnknownNameError, match="eval system"):
        H.run_eval("triage", systems=("slm", "gpt"))


def test_missing_task_eval_is_recorded(data_dir) -> None:
    spec = H.TaskSpec("x", "triage", "d", "medslm.evals.no_such_module", "evaluate_x", "accuracy",
                      H._load_triage, H._triage_pred, H._triage_score)
    got = H._call_task_eval(spec, data_dir, 3)
    assert got["status"] == "missing" and got["function"] == "medslm.evals.no_such_module.evaluate_x"


def test_cli_writes_report(tmp_path, data_dir) -> None:
    from typer.testing import CliRunner

    from medslm.cli import app

    res = CliRunner().invoke(app, ["eval", "--task", "triage", "--data", str(data_dir), "--limit", "3",
                                   "--system", "rules", "--no-task-eval", "--bootstrap", "50", "-q",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| triage | rules | accuracy |" in res.output
    assert (tmp_path / "report.md").exists() and (tmp_path / "pareto_triage.png").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["tasks"]["triage"]["systems"]["rules"]["n"] == 3


def test_icd_probe_runs_ner_upstream(data_dir) -> None:
    # icd reads ner's entities: the probe graph must put ner first, for every system, and score icd's result
    out = H.run_eval("icd", data_dir, limit=2, probe=2, systems=("rules", "slm"), task_eval=False, n_boot=20)
    for system in ("rules", "slm"):
        r = out["tasks"]["icd"]["systems"][system]
        assert "skipped" not in r and "error" not in r, r
        assert r["n"] == 2 and r["cost"]["failed"] == 0
        assert 0.0 < r["metrics"]["precision"] <= 1.0  # real codes, scored against CodiEsp gold


def test_triage_model_fits_on_two_levels() -> None:
    # a small --limit can leave two KTAS levels in a training fold: sklearn then fits one binary row
    from medslm.agents.triage_features import AcuityModel, note_features
    from medslm.evals.triage import fit_triage_model

    rows = [{"note": f"chief complaint: {c}. vitals: HR {hr}", "expert": lvl, "Chief_complain": c}
            for c, hr, lvl in [("chest pain", 130, 2), ("cough", 80, 4)] * 6]
    m = AcuityModel(fit_triage_model(rows))
    p = m.predict_proba(note_features(rows[0]["note"], m.vocabulary).values)
    assert sum(p.values()) == pytest.approx(1.0) and max(p, key=p.get) == 2
    assert p[1] < 1e-6 and p[3] < 1e-6  # levels absent from training keep a vanishing prior
