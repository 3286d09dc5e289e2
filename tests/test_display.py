"""medslm.display: terminal text and notebook HTML of a hand-made ChartReview."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser

from medslm.display import highlight_note, review_html, review_text
from medslm.records import (
    AgentResult,
    Assertion,
    ChartReview,
    CodeAssignment,
    ConceptRef,
    Entity,
    EntityType,
    Provenance,
    RedFlag,
    ReviewStatus,
    Route,
    SafetyFinding,
    SafetyVerdict,
    Severity,
    Span,
    Summary,
    SummarySection,
    SummarySentence,
    TriageResult,
)

NOTE = "Pt <b>58M</b> with chest pain & dyspnea. Denies fever. SpO2 88%. Started aspirin."


def _span(word: str) -> tuple[int, int]:
    i = NOTE.index(word)
    return i, i + len(word)


def _ent(word: str, type_: EntityType, assertion: Assertion = Assertion.PRESENT) -> Entity:
    s, e = _span(word)
    return Entity(start=s, end=e, text=word, type=type_, assertion=assertion, confidence=0.9,
                  concepts=(ConceptRef(id="HP:0100749", label="Chest pain"),) if word == "chest pain" else ())


def make_review(text: str | None = NOTE) -> ChartReview:
    ents = [
        _ent("chest pain", EntityType.PROBLEM),
        _ent("dyspnea", EntityType.PROBLEM),
        _ent("fever", EntityType.PROBLEM, Assertion.NEGATED),
        _ent("aspirin", EntityType.MEDICATION),
    ]
    cp = Span(start=_span("chest pain")[0], end=_span("chest pain")[1])
    codes = [CodeAssignment(code="R07.9", description="Chest pain, unspecified", billable=True, evidence=(cp,),
                            confidence=0.81)]
    spo2 = Span(start=_span("SpO2 88%")[0], end=_span("SpO2 88%")[1])
    triage = TriageResult(level=2, probabilities={1: 0.2, 2: 0.6, 3: 0.2},
                          red_flags=(RedFlag(name="hypoxia", max_level=2, evidence=(spo2,), detail="SpO2 < 90"),))
    summary = Summary(sections=(SummarySection(name="assessment", sentences=(
        SummarySentence(text="Chest pain with hypoxia.", support=(spo2,)),
        SummarySentence(text="Febrile.", supported=False, issues=("negation flipped",)),
    )),))
    return ChartReview(
        note_id="n-1", status=ReviewStatus.NEEDS_REVIEW, reason="codes below threshold", text=text,
        entities=AgentResult(agent="ner", output=ents, confidence=0.88,
                             provenance=Provenance(model_id="SmolLM2-135M", backend="transformers",
                                                   tokens_in=100, tokens_out=20)),
        codes=AgentResult(agent="icd", output=codes, confidence=0.41, route=Route.ESCALATE,
                          provenance=Provenance(model_id="qwen-7b", backend="openai", escalated=True,
                                                escalation_reason="confidence 0.41 < threshold 0.62",
                                                tokens_in=300, tokens_out=12, cost=0.002)),
        triage=AgentResult(agent="triage", output=triage, confidence=0.7, route=Route.ACCEPT),
        summary=AgentResult(agent="summarize", output=summary, confidence=0.6, route=Route.REVIEW),
        safety_in=SafetyVerdict(allowed=True, findings=(SafetyFinding(category="phi", severity=Severity.INFO,
                                                                      message="1 AGE span"),)),
        latency_ms=1234.0,
    )


class _Marks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.marks: list[dict[str, str]] = []
        self._cur: dict[str, str] | None = None
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "mark" and a.get("class") == "medslm-ent":
            self._cur = {**a, "text": ""}

    def handle_endtag(self, tag):
        if tag == "mark" and self._cur is not None:
            self.marks.append(self._cur)
            self._cur = None

    def handle_data(self, data):
        if self._cur is not None:
            self._cur["text"] += data


def test_html_highlights_entities_by_type_and_assertion() -> None:
    html_out = review_html(make_review())
    p = _Marks()
    p.feed(html_out)
    got = [(m["text"], m["data-type"], m["data-assertion"], int(m["data-start"]), int(m["data-end"]))
           for m in p.marks if "data-start" in m]
    assert got == [
        ("chest pain", "problem", "present", *_span("chest pain")),
        ("dyspnea", "problem", "present", *_span("dyspnea")),
        ("fever", "problem", "negated", *_span("fever")),
        ("aspirin", "medication", "present", *_span("aspirin")),
    ]
    for _, _, _, s, e in got:  # offsets point into the note
        assert NOTE[s:e] in {"chest pain", "dyspnea", "fever", "aspirin"}


def test_html_escapes_note_text() -> None:
    html_out = review_html(make_review())
    assert "<b>58M</b>" not in html_out
    assert "&lt;b&gt;58M&lt;/b&gt;" in html_out
    assert "chest pain &amp; dyspnea" not in html_out  # the & sits between two marks
    assert "</mark> &amp; <mark" in html_out
    note_div = html_out.split("<div class='medslm-note'>", 1)[1].split("</div>", 1)[0]
    assert "<b>" not in note_div  # no tag from the note survives
    import html as _html

    assert _html.unescape(re.sub(r"<[^>]+>", "", note_div)) == NOTE  # the note, whole, once


def test_html_shows_codes_triage_summary_routes_cost() -> None:
    h = review_html(make_review())
    assert "R07.9" in h and "&ldquo;chest pain&rdquo;" in h
    assert "KTAS 2" not in h and "ESI 2" in h
    assert "hypoxia" in h and "SpO2 88%" in h
    assert 'class="medslm-support"' in h  # summary support span highlighted
    assert "negation flipped" in h
    assert "confidence 0.41 &lt; threshold 0.62" in h
    assert re.search(r"data-agent='icd' data-route='escalate'", h)
    assert re.search(r"data-agent='summarize' data-route='review'", h)
    assert "400 tokens in, 32 out" in h and "1234 ms" in h
    assert "<style>" in h and "mark.medslm-ent" in h


def test_html_without_text() -> None:
    h = review_html(make_review(text=None))
    assert "note text not kept" in h and "medslm-ent" in h.split("</style>")[0]  # CSS only
    assert 'class="medslm-ent"' not in h
    assert "[" in review_text(make_review(text=None))


def test_text_form() -> None:
    t = str(make_review())
    assert t.startswith("ChartReview n-1  status=needs_review  reason=codes below threshold")
    assert "'fever'" in t and "negated" in t
    assert "R07.9" in t and "evidence: 'chest pain'" in t and "conf 0.81" in t
    assert "Triage: ESI 2" in t and "RED FLAG hypoxia (level <= 2) - SpO2 < 90 evidence: 'SpO2 88%'" in t
    assert "[UNSUPPORTED: negation flipped]" in t
    assert "icd: escalate (confidence 0.41) - confidence 0.41 < threshold 0.62" in t
    assert "summarize: review" in t and "triage: accept" not in t
    assert "Cost: 400 tokens in, 32 out, 0.0020 cost units, 1234 ms" in t
    assert "model=SmolLM2-135M  backend=transformers" in t


def test_overlapping_and_out_of_range_spans_do_not_break_html() -> None:
    text = "acute chest pain"
    ents = [Entity(start=0, end=16, text=text, type=EntityType.PROBLEM, confidence=0.5),
            Entity(start=6, end=16, text="chest pain", type=EntityType.PROBLEM, confidence=0.5),
            Entity(start=10, end=99, text="x", type=EntityType.ANATOMY, confidence=0.5)]
    h = highlight_note(text, ents)
    assert h.count("<mark") == 1 and 'data-start="0" data-end="16"' in h
    assert re.sub(r"<[^>]+>", "", h) == text


def test_display_import_stays_light() -> None:
    code = ("import sys, medslm.display; "
            "print(sorted(m for m in ('torch','transformers','pandas','matplotlib','numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
