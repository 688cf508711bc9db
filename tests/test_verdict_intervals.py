"""Paired drop intervals and the pass / fail / inconclusive verdict they give."""

from __future__ import annotations

import numpy as np
import pytest

from zoocompat.verdict.stats import mean_interval, paired_drop


def accuracy_pair(n: int, worse: int, better: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample 0/1 scores of a reference and a candidate with the given discordant pairs."""
    reference = np.ones(n)
    reference[:better] = 0
    candidate = reference.copy()
    candidate[:better] = 1
    candidate[better : better + worse] = 0
    return reference, candidate


def test_identical_predictions_pass_only_with_enough_samples():
    # No discordant pair: the interval still has a width (rule-of-three-like), so 100 samples
    # cannot show that a 1-point tolerance holds, 400 can.
    small = paired_drop(*accuracy_pair(100, 0))
    large = paired_drop(*accuracy_pair(400, 0))
    assert small.drop == large.drop == 0.0
    assert small.verdict(0.01) == "inconclusive"
    assert large.verdict(0.01) == "pass"
    needed = small.samples_needed(0.01)
    assert needed is not None and 100 < needed
    assert paired_drop(*accuracy_pair(needed, 0)).verdict(0.01) == "pass"


def test_clear_regression_fails_and_straddling_drop_is_inconclusive():
    assert paired_drop(*accuracy_pair(400, 40)).verdict(0.01) == "fail"  # 10 points down
    straddling = paired_drop(*accuracy_pair(256, 5))  # ~2 points down on 256 samples
    assert straddling.interval[0] < 0.01 < straddling.interval[1]
    assert straddling.verdict(0.01) == "inconclusive"
    assert straddling.method.startswith("bonett-price")


def test_improvements_count_against_losses_pair_by_pair():
    mixed = paired_drop(*accuracy_pair(500, worse=6, better=6))
    assert mixed.drop == 0.0
    assert mixed.interval[0] < 0 < mixed.interval[1]


def test_lower_is_better_metrics_flip_the_sign():
    reference, candidate = np.full(50, 0.1), np.full(50, 0.3)
    assert paired_drop(reference, candidate, higher_is_better=False).drop == pytest.approx(0.2)
    assert paired_drop(reference, candidate, higher_is_better=True).drop == pytest.approx(-0.2)


def test_continuous_scores_use_a_deterministic_paired_bootstrap():
    rng = np.random.default_rng(3)
    reference = rng.random(64)
    candidate = reference - 0.05 - 0.01 * rng.random(64)
    first, again = paired_drop(reference, candidate), paired_drop(reference, candidate)
    assert first == again
    assert first.method.startswith("paired bootstrap")
    assert first.interval[0] <= first.drop <= first.interval[1]
    assert first.verdict(0.01) == "fail"
    assert first.samples_needed(first.drop) is None  # a drop equal to the tolerance never resolves


def test_mean_interval_wilson_for_accuracy_bootstrap_otherwise():
    low, high = mean_interval(np.ones(160))
    assert high == 1.0 and 0.97 < low < 0.98
    values = np.linspace(0.5, 1.0, 100)
    low, high = mean_interval(values)
    assert low < values.mean() < high


def test_mismatched_or_empty_scores_are_refused():
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_drop(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        paired_drop(np.ones(0), np.ones(0))
