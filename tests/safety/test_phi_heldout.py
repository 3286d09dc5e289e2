"""PHI detection on a test set from another generator (``phi_heldout.py``: other templates, casing,
international formats), the probe's misses, and precision on real clinical dialogue."""

from __future__ import annotations

import pytest
from phi_heldout import heldout_phi_notes, score

from medslm.safety import find_phi

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_recall_per_type_on_the_heldout_generator():
    # seed 2: the rules were extended while looking at seeds 0 and 1 of this generator, never at seed 2
    res = score(heldout_phi_notes(400, seed=2), find_phi)
    types = {k: v for k, v in res.items() if not k.startswith("_")}
    assert set(types) == {"NAME", "DATE", "AGE", "PHONE", "ADDRESS", "MRN", "EMAIL", "ID", "SSN"}
    low = {k: round(v["recall"], 4) for k, v in types.items() if v["recall"] < 0.99}
    assert not low, low
    assert res["_all"]["precision"] >= 0.98


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("pt name - mary o'connor, seen for cough.", "mary o'connor"),
        ("Handover given to nurse Li at 07:00.", "Li"),
        ("Home address: Hauptstraße 27, 10548 Berlin", "Hauptstraße 27"),
        ("Lives at 43 rue de la Paix, 75002 Paris.", "rue de la Paix"),
        ("Daughter can be reached on 555-0187.", "555-0187"),
        ("MRN#: 99-887766. Admitted with pneumonia.", "99-887766"),
        ("Contact +44 20 7946 0958 after 5pm.", "+44 20 7946 0958"),
        ("SURNAME: VAN DER BERG   FORENAME: MARÍA", "VAN DER BERG"),
        ("husband niamh el-amin visited this evening.", "niamh el-amin"),
        ("SSN on file 245 55 6111.", "245 55 6111"),
        ("D.O.B.: 17.09.1984", "17.09.1984"),
        ("At 97 she remains independent.", "97"),
    ],
)
def test_the_probe_misses_are_found(text, value):
    spans = find_phi(text)
    covered = [text[s.start : s.end] for s in spans]
    assert any(value in c or (c in value and len(c) >= 2) for c in covered), (value, covered)


def test_dialogue_speaker_labels_and_interjections_are_not_names():
    text = ("Doctor: Any injury?\nPatient: Yeah, it started after lifting boxes.\nDoctor: Okay.\n"
            "Patient: Nope, nothing else. Oh, and thank you, Doctor.\nDoctor: Hello again.")
    assert [text[s.start : s.end] for s in find_phi(text, use_ner=False)] == []
