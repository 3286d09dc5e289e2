"""Confidence signals and their combination into one confidence."""

from __future__ import annotations

import pytest

from medslm.errors import ConfigurationError
from medslm.routers.confidence import (
    choice_probability,
    combine,
    ensemble_vote,
    kg_verification,
    majority,
    rule_agreement,
    sample_agreement,
)


def test_signals():
    assert choice_probability({"1": 2.0, "2": 6.0}, "2") == pytest.approx(0.75)
    assert choice_probability([0.2, 0.5, 0.3]) == pytest.approx(0.5)
    assert sample_agreement("I21.4", ["I21.4", "I21.4", "E11.9", "I21.4"]) == pytest.approx(0.75)
    assert sample_agreement("x", []) == 0.0
    assert ensemble_vote(["2", "3", "2"]) == ("2", pytest.approx(2 / 3))
    assert ensemble_vote(["2", "3"], weights=[1.0, 3.0]) == ("3", pytest.approx(0.75))
    assert ensemble_vote(["a", "b"])[0] == "a"  # tie: first member
    assert rule_agreement({"I21.4", "E11.9"}, {"I21.4"}) == pytest.approx(0.5)
    assert rule_agreement(2, 3) == pytest.approx(0.5) and rule_agreement(2, 5) == 0.0
    assert rule_agreement("a", None) == 0.5
    assert kg_verification(3, 4) == pytest.approx(0.75) and kg_verification(0, 0) == 1.0
    assert majority([1, 2, 2]) == (2, pytest.approx(2 / 3))
    with pytest.raises(ConfigurationError, match="one vote"):
        ensemble_vote([])


def test_combine_is_computed_and_any_doubt_pulls_down():
    assert combine({}) == 0.0  # nothing measured: no confidence, not a constant
    assert combine({"choice_prob": 0.9}) == pytest.approx(0.9)
    both = combine({"choice_prob": 0.9, "kg_verified": 0.25})
    assert both == pytest.approx((0.9 * 0.25) ** 0.5)
    assert both < 0.9
    assert combine({"choice_prob": 0.9, "unknown_signal": 0.0}) == pytest.approx(0.9)
    assert combine({"choice_prob": 0.8, "rule_agreement": 1.0}, {"choice_prob": 1.0}) == pytest.approx(0.8)
