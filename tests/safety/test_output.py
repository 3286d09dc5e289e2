"""Output screening: PHI in a summary is redacted (never only reported), summaries skip identification lines."""

from __future__ import annotations

from medslm.records import Note, Severity

NOTE = Note(id="ident-1", text=(
    "Patient: O'Brien-Smith, Mary\nMRN: A1234567\nPhone: 617-555-0142\n"
    "CHIEF COMPLAINT: Chest pain.\nHPI: 68-year-old woman with crushing chest pain for 2 hours, diaphoretic.\n"
    "VITALS: BP 150/92, HR 104.\nASSESSMENT: Suspected acute coronary syndrome.\n"
    "PLAN: Aspirin 325 mg, ECG, troponin, cardiology consult."))


def test_summaries_never_select_identification_lines():
    from medslm.agents.summarize import SummarizeAgent

    res = SummarizeAgent(abstractive=False).run(NOTE, {})
    text = res.output.text
    assert "chest pain" in text.lower()
    for phi in ("O'Brien-Smith", "A1234567", "617-555-0142"):
        assert phi not in text
    for s in res.evidence:  # no support span lies on the first three (identification) lines
        assert s.start >= NOTE.text.index("CHIEF COMPLAINT")


def test_phi_in_a_summary_is_redacted_and_reported_as_a_warning(rules_guardian):
    from medslm.records import AgentResult, Summary, SummarySection, SummarySentence
    from medslm.safety.output import redact_summary

    verdict_in = rules_guardian.check_input(NOTE)
    summary = Summary(sections=(SummarySection(name="hpi", sentences=(
        SummarySentence(text="Mary O'Brien-Smith (MRN A1234567) has chest pain."),
        SummarySentence(text="Call 617-555-0142 with results."),
    )),))
    out = rules_guardian.check_output(NOTE.text, summary_text=summary.text, input_verdict=verdict_in)
    leaks = [f for f in out.findings if f.category == "phi_leak"]
    assert leaks and all(f.severity == Severity.WARNING and "redacted" in f.message for f in leaks)
    phi = {NOTE.text[p.start : p.end] for p in verdict_in.phi}
    red, n = redact_summary(summary, phi)
    assert n >= 3
    assert "O'Brien-Smith" not in red.text and "A1234567" not in red.text and "617-555-0142" not in red.text
    assert "chest pain" in red.text and "[MRN]" in red.text
    # the graph node applies it: guard_out hands on the redacted summary
    from medslm.graphs.context import ReviewContext
    from medslm.graphs.nodes import guard_out

    class _Rt:
        context = ReviewContext(guardian=rules_guardian)

    res = AgentResult[Summary](agent="summarize", output=summary, confidence=0.5)
    upd = guard_out({"note": NOTE, "summary": res, "safety_in": verdict_in}, _Rt())
    assert "O'Brien-Smith" not in upd["summary"].output.text and "A1234567" not in upd["summary"].output.text
