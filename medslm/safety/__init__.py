"""Safety guardian for clinical text: injection fencing, PHI detection and de-identification, output screening.

Usable on its own::

    from medslm.safety import Guardian, deidentify, find_phi
    g = Guardian()                      # SLM loaded on first use; Guardian(model=None) for rules only
    v = g.check_input(note_text)        # SafetyVerdict: allowed, findings, phi, fenced
    text_for_agents = g.fence(note_text, v)   # injected instructions blanked, same length
    out = g.check_output(note_text, summary_text=summary, codes=["E11.9"], advice=advice)
    d = deidentify(note_text)           # keyed surrogates (installation secret), one date shift
    d.to_original(s, e); d.reidentify(answer)   # back to the original note

Importing this package imports neither torch nor spaCy; they load on first use.
"""

from medslm.safety.boundary import DeidentifyingModel, PhiBoundary
from medslm.safety.deid import DeidResult, deidentify, reidentify, text_for_endpoint
from medslm.safety.guardian import Guardian, verdict_summary
from medslm.safety.injection import fence_text, find_injection_candidates
from medslm.safety.phi import PHI_TYPES, find_phi, is_identification_line
from medslm.safety.redaction import (
    PhiRedactingFilter,
    install_log_redaction,
    redact_text,
    register_phi,
    safe_error_message,
)

__all__ = [
    "PHI_TYPES",
    "DeidResult",
    "DeidentifyingModel",
    "Guardian",
    "PhiBoundary",
    "PhiRedactingFilter",
    "deidentify",
    "fence_text",
    "find_injection_candidates",
    "find_phi",
    "install_log_redaction",
    "is_identification_line",
    "redact_text",
    "reidentify",
    "register_phi",
    "safe_error_message",
    "text_for_endpoint",
    "verdict_summary",
]
