"""medslm: clinical text through a team of small language models.

``import medslm`` is light: it imports pydantic and medslm's records, never torch, transformers, vllm or
ray. The graph builders and the batch runner load on first use.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from medslm.errors import (
    ConfigurationError,
    EmptyNoteError,
    GraphContractError,
    InvalidCodeError,
    MedslmError,
    MissingExtraError,
    NoteError,
    NoteTooLargeError,
    NotTextError,
)
from medslm.records import (
    AgentResult,
    Assertion,
    ChartReview,
    CodeAssignment,
    ConceptRef,
    Entity,
    EntityType,
    Note,
    PhiSpan,
    Provenance,
    RedFlag,
    ReviewStatus,
    Route,
    SafetyFinding,
    SafetyVerdict,
    Span,
    Summary,
    SummarySection,
    SummarySentence,
    TriageResult,
)
from medslm.registry import AgentSpec
from medslm.settings import Settings

# ChartReview's print() and notebook HTML: medslm.display binds them (records imports nothing above it).
from medslm import display as _display  # noqa: E402,F401  isort: skip

try:
    __version__ = version("medslm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

# Public names that live in heavier modules, imported on first use.
_LAZY = {
    "chart_review": "medslm.graphs.builders",
    "review": "medslm.graphs.builders",
    "review_batch": "medslm.graphs.runner",
    "areview_batch": "medslm.graphs.runner",
    "Pipeline": "medslm.graphs.pipeline",
    "load_samples": "medslm.samples",
    "KnowledgeGraph": "medslm.knowledge",
    "Guardian": "medslm.safety",
    "load_model": "medslm.models.catalog",
    "read_reviews": "medslm.export.frames",
    "Reviews": "medslm.export.frames",
}
#: subpackages reachable as attributes without an import (``medslm.export.to_fhir``)
_SUBMODULES = ("export",)

if TYPE_CHECKING:  # pragma: no cover
    from medslm import export
    from medslm.export.frames import Reviews, read_reviews
    from medslm.graphs.builders import chart_review, review
    from medslm.graphs.pipeline import Pipeline
    from medslm.graphs.runner import areview_batch, review_batch
    from medslm.knowledge import KnowledgeGraph
    from medslm.models.catalog import load_model
    from medslm.safety import Guardian
    from medslm.samples import load_samples


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"medslm.{name}")
    raise AttributeError(f"module 'medslm' has no attribute {name!r}")


__all__ = [
    "AgentResult",
    "AgentSpec",
    "Assertion",
    "ChartReview",
    "CodeAssignment",
    "ConceptRef",
    "ConfigurationError",
    "EmptyNoteError",
    "Entity",
    "EntityType",
    "Guardian",
    "GraphContractError",
    "InvalidCodeError",
    "KnowledgeGraph",
    "MedslmError",
    "MissingExtraError",
    "Note",
    "NoteError",
    "NoteTooLargeError",
    "NotTextError",
    "PhiSpan",
    "Pipeline",
    "Provenance",
    "RedFlag",
    "ReviewStatus",
    "Reviews",
    "Route",
    "SafetyFinding",
    "SafetyVerdict",
    "Settings",
    "Span",
    "Summary",
    "SummarySection",
    "SummarySentence",
    "TriageResult",
    "__version__",
    "areview_batch",
    "chart_review",
    "export",
    "load_model",
    "load_samples",
    "read_reviews",
    "review",
    "review_batch",
]
