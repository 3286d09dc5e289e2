"""``-v`` / ``MEDSLM_LOG_LEVEL`` and the PHI redaction the CLI installs; note text cannot restyle or crash
the terminal output of ``medslm review`` or ``medslm review-queue``."""

from __future__ import annotations

import io
import json
import logging

import pytest
from typer.testing import CliRunner

from medslm.cli import app
from medslm.cli.logs import configure_logging, level_for
from medslm.errors import ConfigurationError


def test_levels_from_flags_and_environment():
    assert level_for(0, "") == logging.WARNING
    assert level_for(1, "") == logging.INFO and level_for(2, "ERROR") == logging.DEBUG
    assert level_for(0, "debug") == logging.DEBUG and level_for(0, "ERROR") == logging.ERROR
    with pytest.raises(ConfigurationError, match="MEDSLM_LOG_LEVEL"):
        level_for(0, "LOUD")


def test_a_cli_run_inside_a_configured_process_leaves_its_logging_alone(monkeypatch):
    monkeypatch.delenv("MEDSLM_LOG_LEVEL", raising=False)
    logger = logging.getLogger("medslm")
    before = (logger.level, list(logger.handlers))
    assert CliRunner().invoke(app, ["models", "list"]).exit_code == 0
    assert (logger.level, list(logger.handlers)) == before  # pytest's handlers are there: nothing added


def test_the_cli_handler_redacts_registered_and_rule_phi(monkeypatch):
    from medslm.safety.redaction import register_phi, uninstall_log_redaction

    monkeypatch.delenv("MEDSLM_LOG_PHI", raising=False)
    buf = io.StringIO()
    logger = logging.getLogger("medslm")
    saved = (logger.level, list(logger.handlers), logging.raiseExceptions)
    try:
        assert configure_logging(2, stream=buf) == logging.DEBUG
        register_phi([("Quixfeather", "NAME")])
        logging.getLogger("medslm.test").debug("note for Zebulon Quixfeather, MRN: A1234567, call 617-555-0142")
        out = buf.getvalue()
        assert "Quixfeather" not in out and "A1234567" not in out and "617-555-0142" not in out
        assert "[PHI:" in out and "DEBUG medslm.test" in out
    finally:
        uninstall_log_redaction()
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logging.raiseExceptions = saved[2]


def test_bad_log_level_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("MEDSLM_LOG_LEVEL", "chatty")
    res = CliRunner().invoke(app, ["models", "list"])
    assert res.exit_code == 2 and "MEDSLM_LOG_LEVEL" in res.output


def test_note_text_cannot_restyle_or_crash_review_output():
    from rich.console import Console

    from medslm.cli.review import print_review, review_table
    from medslm.records import (
        AgentResult,
        ChartReview,
        ReviewStatus,
        Summary,
        SummarySection,
        SummarySentence,
    )

    evil = "Chest pain [/] [bold red]x[/bold red] \x1b[31mRED\x1b[0m \x9b2J \u202eevil"
    summary = Summary(sections=(SummarySection(name="hpi", sentences=(SummarySentence(text=evil),)),))
    r = ChartReview(note_id="n[/]1", status=ReviewStatus.OK, text=evil,
                    summary=AgentResult[Summary](agent="summarize", output=summary, confidence=0.5))
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=200, color_system="truecolor")
    print_review(r, con)
    con.print(review_table(r))
    out = buf.getvalue()
    assert "[/]" in out and "[bold red]x[/bold red]" in out  # printed as text, not taken as markup
    assert "\x1b[31mRED" not in out and "\\x1b[31mRED" in out  # the note's escape sequence is shown, not run
    assert "\x9b" not in out and "\u202e" not in out


def test_review_queue_output_is_terminal_safe(tmp_path):
    from medslm.records import AgentResult, TriageResult
    from medslm.routers import ReviewQueue

    q = ReviewQueue(tmp_path / "q.sqlite")
    res = AgentResult[TriageResult](agent="triage", output=TriageResult(level=3, rationale="[/] \x1b[2J"), confidence=0.3)
    iid = q.add("n[/]\x1b]0;title\x07", "triage", res, "low_confidence: [bold]0.3[/]")
    runner = CliRunner()
    listed = runner.invoke(app, ["review-queue", "list", "--queue", str(tmp_path / "q.sqlite")])
    assert listed.exit_code == 0, listed.output
    assert "\x1b]0;" not in listed.output and "\x07" not in listed.output
    shown = runner.invoke(app, ["review-queue", "show", iid, "--queue", str(tmp_path / "q.sqlite")])
    assert shown.exit_code == 0 and "\x1b" not in shown.output
    assert json.loads(shown.output)["id"] == iid
