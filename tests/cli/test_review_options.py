"""``medslm review`` option checks that fail before any model loads."""

from __future__ import annotations

from typer.testing import CliRunner

from medslm.cli import app


def test_a_bad_threshold_fails_with_its_reason(tmp_path):
    res = CliRunner().invoke(app, ["review", "--samples", "-o", str(tmp_path / "r.jsonl"), "--threshold", "icd=2"])
    assert res.exit_code == 2
    assert "AGENT=VALUE" in res.output
    assert not (tmp_path / "r.jsonl").exists()
