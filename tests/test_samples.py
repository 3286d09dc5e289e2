from medslm import Note, load_samples


def test_samples_are_varied_synthetic_notes():
    notes = load_samples()
    assert 15 <= len(notes) <= 20
    assert len({n.id for n in notes}) == len(notes)
    assert all(isinstance(n, Note) and n.text.strip() for n in notes)
    kinds = {n.metadata["encounter"] for n in notes}
    assert kinds == {"ed_visit", "discharge_summary", "clinic_note"}
    texts = [n.text for n in notes]
    assert sum("ignore previous instructions" in t.lower() for t in texts) == 1
    assert any("Family history" in t for t in texts)
    assert sum(" denies " in t.lower() or " no " in t.lower() for t in texts) >= 10
    assert sum("SpO2" in t for t in texts) >= 5
    assert sum(" mg" in t for t in texts) >= 10


def test_limit():
    assert [n.id for n in load_samples(limit=2)] == ["ed-001", "ed-002"]


def test_sample_batch_cycles_the_samples_with_distinct_vitals():
    from medslm.samples import sample_batch

    base = load_samples()
    notes = sample_batch(40, seed=3)
    assert len(notes) == 40 and len({n.id for n in notes}) == 40
    assert notes[0].id == f"{base[0].id}~0" and notes[len(base)].id == f"{base[0].id}~1"
    assert all(n.text.startswith(base[i % len(base)].text + " Recheck: HR ") for i, n in enumerate(notes))
    assert notes[0].text != notes[len(base)].text  # same sample, other vitals
    assert [n.text for n in sample_batch(40, seed=3)] == [n.text for n in notes]
    assert [n.text for n in sample_batch(40, seed=4)] != [n.text for n in notes]
