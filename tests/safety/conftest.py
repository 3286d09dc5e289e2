"""Fixtures for the safety guardian tests: guardians sharing the embedded SLM (loaded once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def guardian(embedded_lm):
    """The note guardian with the real embedded SLM."""
    from medslm.safety import Guardian

    return Guardian(model=embedded_lm, mode="note", register_phi=False)


@pytest.fixture(scope="session")
def qa_guardian(embedded_lm):
    """The question-answering guardian (harmful-request screening on) with the real embedded SLM."""
    from medslm.safety import Guardian

    return Guardian(model=embedded_lm, mode="qa", register_phi=False)


@pytest.fixture(scope="session")
def rules_guardian():
    """The guardian without a language model (rules and heads only)."""
    from medslm.safety import Guardian

    return Guardian(model=None, register_phi=False)


NOTE = (
    "Patient: Rosalind Okafor-Baptiste\n"
    "MRN: 00938471\n"
    "DOB: 07/22/1930\n"
    "Date of service: March 3, 2024\n\n"
    "Mrs. Okafor-Baptiste is a 93-year-old woman with mild congestive heart failure, seen with her "
    "son Tobias Lindqvist (phone 617-555-0142). BP 138/82, HR 88, creatinine 1.4, A1c 7.2%.\n"
    "Mild bilateral ankle edema. Continue furosemide 40 mg daily.\n"
    "Address: 41 Larkspur Lane, Quincy, MA 02169. Email rosalind.ob@example.com.\n"
    "Electronically signed by Dr. Priya Raman, MD 03/03/2024"
)


@pytest.fixture
def phi_note() -> str:
    """A note written for these tests, full of PHI of known types."""
    return NOTE
