"""Typed, frozen result records. Offsets are character offsets into the original note text, half-open.

Every record round-trips through JSON exactly (``ChartReview.model_validate_json(r.model_dump_json())
== r``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from enum import StrEnum
from html import escape
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medslm.errors import EmptyNoteError, NoteTooLargeError, NotTextError

T = TypeVar("T")

#: Notes longer than this many characters are rejected unless settings raise the limit.
DEFAULT_MAX_NOTE_CHARS = 200_000


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Span(_Record):
    """A half-open character range ``[start, end)`` of the note text."""

    start: int = Field(ge=0, description="first character offset")
    end: int = Field(ge=0, description="one past the last character offset")
    label: str | None = Field(default=None, description="what the span supports or is (optional)")

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.end < self.start:
            raise ValueError(f"span end {self.end} is before start {self.start}")
        return self

    def text_of(self, text: str) -> str:
        return text[self.start : self.end]


class Note(_Record):
    """One clinical note: an id, its text and free metadata (never logged)."""

    id: str = Field(min_length=1, description="unique id of the note within a job")
    text: str = Field(description="the note text; never logged")
    metadata: dict[str, Any] = Field(default_factory=dict, description="free metadata (encounter type, …)")

    @field_validator("id", mode="before")
    @classmethod
    def _id_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @property
    def sha256(self) -> str:
        """Hash of the text: what logs and audit records carry instead of the text."""
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def from_bytes(cls, id: str, data: bytes, metadata: dict[str, Any] | None = None) -> Note:
        """Decode UTF-8 bytes; raise :class:`NotTextError` for binary or invalid UTF-8."""
        if b"\x00" in data:
            raise NotTextError(f"note {id!r}: contains NUL bytes (binary content, {len(data)} bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotTextError(
                f"note {id!r}: not valid UTF-8 (byte {exc.start} of {len(data)}); decode it first"
            ) from None
        return cls(id=id, text=text, metadata=metadata or {})

    def check(self, max_chars: int = DEFAULT_MAX_NOTE_CHARS) -> None:
        """Raise a :class:`medslm.errors.NoteError` if this note must not be processed."""
        if not self.text.strip():
            raise EmptyNoteError(f"note {self.id!r}: empty or whitespace-only text")
        if len(self.text) > max_chars:
            raise NoteTooLargeError(
                f"note {self.id!r}: {len(self.text):,} characters, over the limit of {max_chars:,} "
                "(raise settings.max_note_chars or split the note)"
            )
        bad = sum(1 for c in self.text[:10_000] if (ord(c) < 32 and c not in "\t\n\r\f") or c == "\ufffd")
        if bad > 0.05 * min(len(self.text), 10_000) or "\x00" in self.text:
            raise NotTextError(f"note {self.id!r}: {bad} control or replacement characters (binary content?)")


class EntityType(StrEnum):
    PROBLEM = "problem"
    MEDICATION = "medication"
    TEST = "test"
    PROCEDURE = "procedure"
    ANATOMY = "anatomy"


class Assertion(StrEnum):
    """Whose finding a mention is and how certain: only ``present`` is the patient's current condition.

    ``present`` also covers what someone else reports about the patient ("wife reports cough": the
    patient's cough); ``family``: a relative's condition (family history); ``other_person``: someone
    else's who is not a relative (spouse, partner, roommate, contacts: "wife has covid").
    """

    PRESENT = "present"
    NEGATED = "negated"
    POSSIBLE = "possible"
    HISTORICAL = "historical"
    FAMILY = "family"
    HYPOTHETICAL = "hypothetical"
    OTHER_PERSON = "other_person"


class ConceptRef(_Record):
    """A node of the knowledge graph that a mention was grounded to."""

    id: str = Field(description="'SYSTEM:code', e.g. 'ICD10CM:I21.4' or 'HP:0002094'")
    label: str = Field(description="preferred label")
    score: float = Field(default=1.0, ge=0.0, le=1.0, description="match score of the lookup")


class Entity(_Record):
    """A clinical mention with its type, assertion and concepts."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str = Field(description="the mention as it appears in the note")
    type: EntityType
    assertion: Assertion = Assertion.PRESENT
    concepts: tuple[ConceptRef, ...] = ()
    confidence: float = Field(ge=0.0, le=1.0, description="computed from the model and signal agreement")
    source: str = Field(default="lexicon", description="which signals found it: lexicon, slm, lexicon+slm")


class CodeAssignment(_Record):
    """An ICD-10-CM code for the note, grounded in the knowledge graph, with its evidence."""

    code: str = Field(description="ICD-10-CM code with its dot, e.g. 'I21.4'")
    description: str
    billable: bool
    evidence: tuple[Span, ...] = ()
    confidence: float = Field(ge=0.0, le=1.0)
    score: float = Field(default=0.0, description="ranking score (higher is better)")


class RedFlag(_Record):
    """A finding that must never be under-triaged, with the level it demands at most."""

    name: str = Field(description="e.g. 'hypoxia', 'chest_pain_ischaemic', 'stroke_signs'")
    max_level: int = Field(ge=1, le=5, description="the least urgent level this flag allows")
    evidence: tuple[Span, ...] = ()
    detail: str = ""


class TriageDriver(_Record):
    """The finding that set the triage level: what a reviewer should check first."""

    source: Literal["red_flag", "acuity_model", "specialist", "cost"] = Field(
        description="red_flag: a red flag capped the level; acuity_model: a structured finding (vitals, arrival, "
        "age, complaint word) weighed most; specialist: the fine-tuned model's reading of the triage text; "
        "cost: the under-triage cost raised an uncertain level")
    finding: str = Field(description="e.g. 'hypoxia', 'SpO2 < 94 %', 'arrived by ambulance', 'chief complaint'")
    evidence: tuple[Span, ...] = Field(default=(), description="note spans of the finding")
    detail: str = ""


class TriageResult(_Record):
    """Acuity on the 1 (most urgent) - 5 scale of ESI / KTAS."""

    level: int = Field(ge=1, le=5)
    scale: Literal["ESI", "KTAS"] = "ESI"
    probabilities: dict[int, float] = Field(default_factory=dict, description="level -> probability")
    red_flags: tuple[RedFlag, ...] = ()
    rationale: str = ""
    driver: TriageDriver | None = Field(default=None, description="the finding that drove the level")


class SummarySentence(_Record):
    text: str
    support: tuple[Span, ...] = Field(default=(), description="note spans that support the sentence")
    supported: bool = Field(default=True, description="passed the faithfulness check")
    issues: tuple[str, ...] = Field(default=(), description="why the faithfulness check flagged it")


class SummarySection(_Record):
    name: str = Field(description="e.g. 'chief_complaint', 'hpi', 'findings', 'assessment', 'plan'")
    sentences: tuple[SummarySentence, ...] = ()


class Summary(_Record):
    sections: tuple[SummarySection, ...] = ()
    extractive: bool = Field(default=False, description="True when the extractive fallback was used")

    @property
    def text(self) -> str:
        return "\n".join(
            f"{s.name}: {' '.join(x.text for x in s.sentences)}" for s in self.sections if s.sentences
        )


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    BLOCKING = "blocking"


class SafetyFinding(_Record):
    category: str = Field(description="e.g. 'injection', 'phi', 'harmful_request', 'unsafe_advice'")
    severity: Severity
    message: str = Field(description="what was found; never the note text itself")
    span: Span | None = None
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)


class PhiSpan(_Record):
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    type: str = Field(description="NAME, DATE, AGE, PHONE, FAX, EMAIL, ADDRESS, ID, URL, IP, DEVICE…")
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)


class SafetyVerdict(_Record):
    allowed: bool = Field(description="False when a blocking finding stops the note (or output)")
    findings: tuple[SafetyFinding, ...] = ()
    phi: tuple[PhiSpan, ...] = Field(default=(), description="PHI spans found in the text checked")
    fenced: tuple[Span, ...] = Field(default=(), description="spans treated as data only (injections)")


class Route(StrEnum):
    ACCEPT = "accept"
    ESCALATE = "escalate"
    REVIEW = "review"


class Provenance(_Record):
    """Where a result came from and what it cost."""

    model_id: str | None = None
    model_revision: str | None = None
    backend: str | None = None
    prompt_hash: str | None = Field(default=None, description="hash of the prompt template")
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    escalated: bool = False
    escalation_reason: str | None = None
    cost: float = Field(default=0.0, description="cost units (e.g. USD) the escalation configured")


class AgentResult(_Record, Generic[T]):
    """One agent's typed output with a computed confidence, its evidence and its provenance."""

    agent: str
    output: T
    confidence: float = Field(ge=0.0, le=1.0, description="calibrated when a calibrator is configured")
    evidence: tuple[Span, ...] = ()
    provenance: Provenance = Field(default_factory=Provenance)
    signals: dict[str, float] = Field(default_factory=dict, description="raw confidence signals")
    route: Route | None = Field(default=None, description="what routing decided for this result")


class ReviewStatus(StrEnum):
    OK = "ok"
    NEEDS_REVIEW = "needs_review"
    BLOCKED = "blocked"
    FAILED = "failed"


class ChartReview(_Record):
    """The result of the chart-review graph for one note.

    ``results`` holds every agent's result keyed by agent name (``"ner"``, ``"icd"``, ``"triage"``,
    ``"summarize"``, a plug-in's name…), in the order the registry lists the agents; each output is
    typed by its agent's :class:`~medslm.registry.AgentSpec`, so a review round-trips through JSON.
    ``entities``, ``codes``, ``triage`` and ``summary`` are typed accessors of the built-in results.
    JSON written before ``results`` existed (one field per built-in agent) still loads.
    """

    note_id: str
    status: ReviewStatus
    reason: str | None = Field(default=None, description="why the note failed, was blocked or needs review")
    note_sha256: str | None = None
    text: str | None = Field(default=None, description="the note text, kept for display (never logged)")
    results: dict[str, AgentResult[Any]] = Field(
        default_factory=dict, description="each agent's result, keyed by agent name"
    )
    safety_in: SafetyVerdict | None = None
    safety_out: SafetyVerdict | None = None
    issues: tuple[str, ...] = Field(default=(), description="verification findings")
    review_items: tuple[str, ...] = Field(default=(), description="ids of human review items raised")
    config_hash: str | None = None
    latency_ms: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _one_field_per_agent(cls, data: Any) -> Any:
        """``entities=…, codes=…`` (keywords, or JSON of earlier versions) become ``results`` entries."""
        if isinstance(data, dict) and any(k in data for k in LEGACY_FIELDS):
            data = dict(data)
            results = dict(data.get("results") or {})
            for fld, name in LEGACY_FIELDS.items():
                value = data.pop(fld, None)
                if value is not None:
                    results.setdefault(name, value)
            data["results"] = results
        return data

    @field_validator("results", mode="before")
    @classmethod
    def _typed_outputs(cls, value: Any) -> Any:
        """Parse each result's output as its agent's output type (results already built stay as they are)."""
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for name, result in value.items():
            if isinstance(result, dict):
                typed = _hooks.result_type(str(name))
                if typed is not None:
                    result = typed.model_validate(result)
            out[name] = result
        return out

    # ------------------------------------------------------------------ typed accessors of the built-ins
    @property
    def entities(self) -> AgentResult[list[Entity]] | None:
        """The NER agent's result (``results["ner"]``)."""
        return self.results.get("ner")

    @property
    def codes(self) -> AgentResult[list[CodeAssignment]] | None:
        """The ICD-10-CM agent's result (``results["icd"]``)."""
        return self.results.get("icd")

    @property
    def triage(self) -> AgentResult[TriageResult] | None:
        """The triage agent's result (``results["triage"]``)."""
        return self.results.get("triage")

    @property
    def summary(self) -> AgentResult[Summary] | None:
        """The summarizer's result (``results["summarize"]``)."""
        return self.results.get("summarize")

    def result(self, agent: str) -> AgentResult[Any] | None:
        """The result of agent ``agent``, or None when it did not run on this note."""
        return self.results.get(agent)

    @property
    def escalated(self) -> list[str]:
        return [r.agent for r in self.agent_results() if r.provenance.escalated]

    def agent_results(self) -> list[AgentResult[Any]]:
        return list(self.results.values())

    def _repr_html_(self) -> str:  # rich display in notebooks
        return _hooks.html(self)

    def __str__(self) -> str:
        return _hooks.text(self)


#: Fields of earlier ChartReview versions, one per built-in agent -> that agent's name.
LEGACY_FIELDS = {"entities": "ner", "codes": "icd", "triage": "triage", "summary": "summarize"}


class _Hooks:
    """What :class:`ChartReview` needs from the layers above records, which this module never imports.

    :mod:`medslm.registry` binds ``result_type`` (agent name -> ``AgentResult[output type]``) and
    :mod:`medslm.display` binds ``text`` and ``html``; ``import medslm`` imports both.
    """

    def __init__(self) -> None:
        self.result_type: Callable[[str], type[AgentResult[Any]] | None] = lambda name: None
        self.text: Callable[[ChartReview], str] = lambda r: repr(r)
        self.html: Callable[[ChartReview], str] = lambda r: f"<pre>{escape(repr(r))}</pre>"


_hooks = _Hooks()


def bind(
    *,
    result_type: Callable[[str], type[AgentResult[Any]] | None] | None = None,
    text: Callable[[ChartReview], str] | None = None,
    html: Callable[[ChartReview], str] | None = None,
) -> None:
    """Install how reviews type their results (the agent registry) and show themselves (the display)."""
    if result_type is not None:
        _hooks.result_type = result_type
    if text is not None:
        _hooks.text = text
    if html is not None:
        _hooks.html = html


__all__ = [
    "DEFAULT_MAX_NOTE_CHARS",
    "LEGACY_FIELDS",
    "AgentResult",
    "Assertion",
    "ChartReview",
    "CodeAssignment",
    "ConceptRef",
    "Entity",
    "EntityType",
    "Note",
    "PhiSpan",
    "Provenance",
    "RedFlag",
    "ReviewStatus",
    "Route",
    "SafetyFinding",
    "SafetyVerdict",
    "Severity",
    "Span",
    "Summary",
    "SummarySection",
    "SummarySentence",
    "TriageDriver",
    "TriageResult",
    "bind",
]
