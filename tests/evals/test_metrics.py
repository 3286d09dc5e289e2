"""medslm.evals.metrics: hand-computed values on tiny inputs, and agreement with sklearn / seqeval."""

from __future__ import annotations

import pytest

from medslm.evals import metrics as m


def test_span_prf_strict_and_lenient() -> None:
    gold = [[(0, 5, "problem"), (10, 20, "problem")], [(3, 8, "medication")]]
    pred = [[(0, 5, "problem"), (12, 22, "problem"), (30, 35, "test")], [(3, 8, "problem")]]
    s = m.span_prf(gold, pred, mode="strict")
    assert (s["tp"], s["fp"], s["fn"]) == (1, 3, 2)
    assert s["precision"] == pytest.approx(1 / 4) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))
    le = m.span_prf(gold, pred, mode="lenient")
    assert (le["tp"], le["fp"], le["fn"]) == (2, 2, 1)  # overlap counts; the wrong type does not
    un = m.span_prf(gold, pred, mode="lenient", typed=False)
    assert (un["tp"], un["fp"], un["fn"]) == (3, 1, 0)
    # one gold span cannot be matched twice
    two = m.span_prf([[(0, 10, "p")]], [[(0, 4, "p"), (5, 10, "p")]], mode="lenient")
    assert (two["tp"], two["fp"], two["fn"]) == (1, 1, 0)
    with pytest.raises(ValueError):
        m.span_prf(gold, pred, mode="fuzzy")


def test_iob_prf_matches_seqeval_and_hand_value() -> None:
    from seqeval.metrics import f1_score

    yt = [["B-Disease", "I-Disease", "O", "B-Chemical"], ["O", "B-Disease"]]
    yp = [["B-Disease", "I-Disease", "O", "O"], ["O", "B-Chemical"]]
    r = m.iob_prf(yt, yp)
    assert r["precision"] == pytest.approx(1 / 2) and r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(0.4)
    assert r["f1"] == pytest.approx(f1_score(yt, yp))


def test_micro_prf_and_map() -> None:
    gold = [{"I21.4", "E11.9"}, {"J18.9"}]
    pred = [{"I21.4", "I10"}, set()]
    r = m.micro_prf(gold, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 2)
    assert r["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # AP: relevant at ranks 1 and 3 of 2 gold -> (1/1 + 2/3) / 2
    assert m.average_precision({"a", "b"}, ["a", "x", "b"]) == pytest.approx((1 + 2 / 3) / 2)
    assert m.average_precision({"a", "b"}, ["x", "a"]) == pytest.approx(0.25)
    assert m.mean_average_precision([{"a", "b"}, {"c"}], [["a", "x", "b"], ["c"]]) == pytest.approx(
        ((1 + 2 / 3) / 2 + 1) / 2)


def test_triage_scores_against_sklearn() -> None:
    from sklearn.metrics import cohen_kappa_score

    t = [1, 2, 3, 4, 5, 3]
    p = [1, 3, 3, 3, 5, 2]
    r = m.triage_scores(t, p)
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["under_triage"] == pytest.approx(1 / 6)  # 2 -> 3
    assert r["over_triage"] == pytest.approx(2 / 6)  # 4 -> 3, 3 -> 2
    assert r["kappa_qw"] == pytest.approx(cohen_kappa_score(t, p, weights="quadratic"))
    assert m.triage_scores([2, 2], [2, 2])["kappa_qw"] == 1.0


def test_rouge_identity_and_disjoint() -> None:
    r = m.rouge(["chest pain since morning", "fever"], ["chest pain since morning", "cough"])
    assert r["rouge1"] == pytest.approx(0.5) and r["rougeL"] == pytest.approx(0.5)
    # "the cat sat" vs "the cat ran": unigram F = 2/3, bigram F = 1/2
    r2 = m.rouge(["the cat sat"], ["the cat ran"])
    assert r2["rouge1"] == pytest.approx(2 / 3) and r2["rouge2"] == pytest.approx(0.5)


def test_embedding_similarity_with_given_embedder() -> None:
    vecs = {"a": [1.0, 0.0], "b": [0.0, 2.0], "c": [3.0, 3.0]}

    def emb(texts):
        return [vecs[t] for t in texts]

    assert m.embedding_similarity(["a", "a"], ["a", "b"], embed=emb) == pytest.approx(0.5)
    assert m.embedding_similarity(["a"], ["c"], embed=emb) == pytest.approx(2 ** -0.5)


def test_safety_scores() -> None:
    r = m.safety_scores([True, True, True, False, False], [True, False, True, True, False])
    assert r["recall"] == pytest.approx(2 / 3) and r["fpr"] == pytest.approx(0.5)
    assert (r["n_harmful"], r["n_benign"]) == (3, 2)


def test_ece_and_bins_hand_value() -> None:
    conf = [0.95, 0.95, 0.55, 0.55]
    correct = [1, 0, 1, 1]
    # bin 9: conf .95 acc .5 -> .45; bin 5: conf .55 acc 1 -> .45; weighted mean .45
    assert m.ece(conf, correct) == pytest.approx(0.45)
    bins = [b for b in m.reliability_bins(conf, correct) if b["count"]]
    assert [(b["count"], round(b["confidence"], 2), b["accuracy"]) for b in bins] == [(2, 0.55, 1.0), (2, 0.95, 0.5)]


def test_bootstrap_ci_brackets_the_estimate_and_is_deterministic() -> None:
    gold = [1, 2, 3, 4, 5] * 8
    pred = [1, 2, 3, 3, 5] * 8

    def acc(g, p):
        return sum(a == b for a, b in zip(g, p)) / len(g)

    lo, hi = m.bootstrap_ci(acc, gold, pred, n=300, seed=1)
    assert lo <= 0.8 <= hi and 0.55 < lo < 0.8 and 0.8 < hi <= 1.0
    assert m.bootstrap_ci(acc, gold, pred, n=300, seed=1) == (lo, hi)
    assert m.bootstrap_ci(acc, [1] * 5, [1] * 5, n=50) == (1.0, 1.0)
