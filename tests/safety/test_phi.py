"""PHI detection and de-identification on notes written for the test and the generated corpus."""

from __future__ import annotations

import re

import pytest

from medslm.safety import deidentify, find_phi
from medslm.safety.deid import date_shift_for, text_for_endpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _typed(text: str, spans) -> set[tuple[str, str]]:
    return {(s.type, text[s.start : s.end]) for s in spans}


def test_finds_each_phi_type_in_a_note(phi_note):
    got = _typed(phi_note, find_phi(phi_note))
    expected = {
        ("NAME", "Rosalind Okafor-Baptiste"),
        ("MRN", "00938471"),
        ("DATE", "07/22/1930"),
        ("DATE", "March 3, 2024"),
        ("NAME", "Okafor-Baptiste"),
        ("AGE", "93"),
        ("NAME", "Tobias Lindqvist"),
        ("PHONE", "617-555-0142"),
        ("EMAIL", "rosalind.ob@example.com"),
        ("NAME", "Priya Raman"),
        ("DATE", "03/03/2024"),
    }
    assert expected <= got, expected - got
    assert any(t == "ADDRESS" and "Larkspur Lane" in s for t, s in got)


def test_clinical_values_are_not_phi(phi_note):
    spans = find_phi(phi_note)
    flagged = " ".join(phi_note[s.start : s.end] for s in spans)
    for clinical in ("Mild", "138/82", "1.4", "7.2%", "furosemide", "40 mg", "88"):
        assert clinical not in flagged, clinical
    # an age under 90 is not PHI under Safe Harbor
    assert not find_phi("A 54-year-old man with chest pain.", use_ner=False)


@pytest.mark.parametrize(
    ("text", "typ", "value"),
    [
        ("Fax results to 617-555-0199 today.", "FAX", "617-555-0199"),
        ("SSN: 123-45-6789", "SSN", "123-45-6789"),
        ("Login from 192.168.10.4 noted.", "IP", "192.168.10.4"),
        ("See https://portal.example.org/p/123 for results.", "URL", "https://portal.example.org/p/123"),
        ("Pacemaker serial number: PX-3392011", "DEVICE", "PX-3392011"),
        ("Account #: 8837261190", "ACCOUNT", "8837261190"),
        ("Member ID: BCX99281734", "ID", "BCX99281734"),
        ("Name: Vollbrecht, Hildegard  MRN: E6501889", "NAME", "Vollbrecht"),
        ("Mr. van Bovenen is a 25-year-old male.", "NAME", "van Bovenen"),
        ("Seen on 14 March 2021 in clinic.", "DATE", "14 March 2021"),
    ],
)
def test_rule_types(text, typ, value):
    assert (typ, value) in _typed(text, find_phi(text, use_ner=False))


def test_recall_on_generated_notes_meets_goal():
    from medslm.evals.safety import evaluate_phi

    res = evaluate_phi(120, seed=3, use_ner=True)
    for typ in ("NAME", "DATE", "PHONE", "MRN"):
        assert res["per_type"][typ]["recall"] >= 0.98, (typ, res["per_type"][typ])
        assert res["per_type"][typ]["precision"] >= 0.95, (typ, res["per_type"][typ])


def test_deidentify_is_consistent_and_keeps_clinical_text(phi_note):
    d = deidentify(phi_note, seed=11)
    # nothing identifying survives
    for original in ("Rosalind", "Okafor-Baptiste", "00938471", "617-555-0142", "rosalind.ob@example.com", "Priya Raman", "Tobias"):
        assert original not in d.text, original
    # the same surname maps to the same surrogate everywhere; the full name's surname = the lone surname
    full = d.mapping["Rosalind Okafor-Baptiste"]
    lone = d.mapping["Okafor-Baptiste"]
    assert full.split()[-1] == lone
    assert d.text.count(lone) >= 2
    # clinical meaning kept
    for clinical in ("Mild bilateral ankle edema", "BP 138/82, HR 88, creatinine 1.4, A1c 7.2%", "furosemide 40 mg daily"):
        assert clinical in d.text
    assert "90+-year-old" in d.text
    # same seed: same copy; other seed: other surrogates
    assert deidentify(phi_note, seed=11).text == d.text
    assert deidentify(phi_note, seed=12).text != d.text


def test_dates_shift_by_one_offset(phi_note):
    import datetime as dt

    d = deidentify(phi_note, seed=5)
    shift = date_shift_for(5)
    assert d.date_shift_days == shift and shift < 0
    assert d.mapping["07/22/1930"] == (dt.date(1930, 7, 22) + dt.timedelta(days=shift)).strftime("%m/%d/%Y")
    assert d.mapping["03/03/2024"] == (dt.date(2024, 3, 3) + dt.timedelta(days=shift)).strftime("%m/%d/%Y")
    # the interval between two dates is preserved
    a = dt.datetime.strptime(d.mapping["07/22/1930"], "%m/%d/%Y")
    b = dt.datetime.strptime(d.mapping["03/03/2024"], "%m/%d/%Y")
    assert (b - a).days == (dt.date(2024, 3, 3) - dt.date(1930, 7, 22)).days
    # surrogate spans point at the surrogates in the new text
    for sp in d.surrogate_spans:
        assert d.text[sp.start : sp.end] in d.mapping.values()


def test_remote_endpoints_get_the_deidentified_copy(phi_note):
    assert text_for_endpoint(phi_note, remote=False) == phi_note
    assert text_for_endpoint(phi_note, remote=True, allow_phi=True) == phi_note
    remote = text_for_endpoint(phi_note, remote=True, seed=2)
    assert "Rosalind" not in remote and "00938471" not in remote
    assert re.search(r"furosemide 40 mg", remote)


def test_identification_lines():
    from medslm.safety.phi import is_identification_line

    for line in ("Pt: O'Brien-Smith, Mary. MRN: A1234567.", "Name: Vollbrecht, Hildegard", "Phone: 617-555-0142",
                 "DOB: 07/22/1944", "Address: 41 Larkspur Lane, Quincy, MA 02169", "John Whitaker 617-555-0142"):
        assert is_identification_line(line), line
    for line in ("72-year-old man with crushing chest pain.", "BP 88/50, HR 124, SpO2 89% on room air.",
                 "Mrs. Okafor-Baptiste is a 93-year-old woman with mild congestive heart failure, seen today."):
        assert not is_identification_line(line), line
