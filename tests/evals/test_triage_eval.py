"""KTAS triage evaluation: the note styles keep the row's facts, the nested CV never lets a fold see its test
rows, and the ablation scores the three systems on the same items."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def rows(data_dir):
    from medslm.evals.triage import read_ktas

    return read_ktas(data_dir)


@pytest.mark.parametrize("style", ["terse", "prose"])
def test_note_styles_keep_the_facts_the_acuity_model_reads(rows, style) -> None:
    from medslm.agents.triage_features import note_features
    from medslm.evals.triage import ktas_note_styled

    for i, r in enumerate(rows[::40]):
        text = ktas_note_styled(r, style, seed=i)
        assert text != r["note"]
        a, b = note_features(r["note"]).values, note_features(text).values
        same = {k for k in a if abs(a[k] - b[k]) < 1e-6}
        # "Pain 0/10" reads as a pain score of 0 where "No pain." leaves the score missing: the only difference
        assert set(a) - same <= {"pain_missing"}, (text, {k: (a[k], b[k]) for k in set(a) - same})
        assert str(r["KTAS_RN"]) not in text.split("Vital")[0][-2:]  # no label leaks into the text


def test_unknown_style_is_a_typed_error(rows) -> None:
    from medslm.errors import UnknownNameError
    from medslm.evals.triage import ktas_note_styled

    with pytest.raises(UnknownNameError, match="terse"):
        ktas_note_styled(rows[0], "terce")


def test_dev_split_is_stratified_and_disjoint(rows) -> None:
    from collections import Counter

    from medslm.evals.ktas import split_dev

    fit, dev = split_dev(rows, seed=1)
    assert {r["id"] for r in fit}.isdisjoint({r["id"] for r in dev}) and len(fit) + len(dev) == len(rows)
    cf, cd = Counter(r["expert"] for r in fit), Counter(r["expert"] for r in dev)
    for level in (2, 3, 4):
        assert abs(cd[level] / len(dev) - cf[level] / len(fit)) < 0.03


def test_quick_ablation_scores_three_systems_on_the_same_held_out_rows(data_dir) -> None:
    from medslm.evals.ablation import summarize
    from medslm.evals.triage import ablation

    ab = ablation(data_dir, limit=40, seed=0)
    assert set(ab.items) == {"classical", "slm", "combined"}
    n = len(ab.items["slm"])
    assert n >= 40 and all(len(v) == n for v in ab.items.values())
    truth = [t for t, _ in ab.items["classical"]]
    assert all([t for t, _ in v] == truth for v in ab.items.values())
    assert all(1 <= p <= 5 for v in ab.items.values() for _, p in v)
    res = summarize(ab, n_boot=50)
    assert set(res["differences"]) == {"slm - classical", "combined - classical"}
    assert "nurses" in ab.notes[0] or "nurse" in ab.notes[0]
    # every row was scored by a fold that did not train on it: the folds partition the rows
    params = ab.extra["fold_params"]
    assert len(params) == 2 and all(p["train_rows"] + p["dev_rows"] < n for p in params)
