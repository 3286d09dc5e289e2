"""One exception root for medslm.

Usage errors (bad configuration, a missing optional extra, an unknown model spec) are apart from run
errors (a model that fails to load, an endpoint that keeps failing). Clinical outcomes - a note that is
blocked, uncertain, escalated or failed - are *data* in a :class:`medslm.ChartReview`, never exceptions.

Messages never carry note text (PHI): they name note ids, offsets, sizes and hashes.
"""

from __future__ import annotations

from collections.abc import Sequence


class MedslmError(Exception):
    """Root of every error medslm raises on purpose."""


class ConfigurationError(MedslmError, ValueError):
    """The configuration asks for something that cannot work (a usage error)."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional dependency group is not installed."""

    def __init__(self, *, package: str, extra: str, feature: str) -> None:
        self.package, self.extra, self.feature = package, extra, feature
        super().__init__(f'{feature} needs {package}: pip install "medslm[{extra}]"')


class UnknownNameError(ConfigurationError, KeyError):
    """A name (backend, node, role, dataset) is not known; the message suggests the nearest ones."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        import difflib

        self.kind, self.name, self.known = kind, name, tuple(known)
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        choices = ", ".join(sorted(self.known)) or "none"
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {choices})")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ModelError(MedslmError, RuntimeError):
    """A language model could not be loaded or did not answer."""


class EndpointError(ModelError):
    """An OpenAI-compatible endpoint failed (connection, timeout, 5xx) after its retries."""


class KnowledgeError(MedslmError):
    """A terminology could not be loaded or a concept could not be resolved."""


class InvalidCodeError(KnowledgeError, ValueError):
    """A code is not in the terminology; the message lists the nearest valid codes."""

    def __init__(self, code: str, system: str, nearest: Sequence[str] = ()) -> None:
        self.code, self.system, self.nearest = code, system, tuple(nearest)
        near = f"; nearest valid codes: {', '.join(self.nearest)}" if self.nearest else ""
        super().__init__(f"{system} code {code!r} does not exist{near}")


class NoteError(MedslmError, ValueError):
    """A note cannot be processed. Recorded in that note's result; it never stops a batch."""

    reason_code = "invalid_note"


class EmptyNoteError(NoteError):
    reason_code = "empty_note"


class NoteTooLargeError(NoteError):
    reason_code = "note_too_large"


class NotTextError(NoteError):
    """Binary content, or bytes that are not valid UTF-8."""

    reason_code = "not_text"


class GraphContractError(ConfigurationError):
    """A composed graph reads a field nobody writes, or two parallel nodes write one field."""


class ExportError(MedslmError, ValueError):
    """Reviews cannot be read or exported (a bad line in a reviews file, an unknown export target)."""


__all__ = [
    "ConfigurationError",
    "EmptyNoteError",
    "EndpointError",
    "ExportError",
    "GraphContractError",
    "InvalidCodeError",
    "KnowledgeError",
    "MedslmError",
    "MissingExtraError",
    "ModelError",
    "NoteError",
    "NoteTooLargeError",
    "NotTextError",
    "UnknownNameError",
]
