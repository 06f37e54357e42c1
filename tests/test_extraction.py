"""Tests for the shared extraction helpers (no model needed): Min-K%."""

from __future__ import annotations

from pii_unlearn.extraction import min_k_mean


def test_min_k_mean_takes_the_lowest_share() -> None:
    lps = [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert min_k_mean(lps, 0.2) == -5.0
    assert min_k_mean(lps, 0.4) == -4.5
    assert min_k_mean([-0.5], 0.2) == -0.5  # at least one token
    assert min_k_mean([], 0.2) is None  # nothing to score
