"""The deeper audit: its statistics on known values, the exposure null, constrained decoding, probes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from pii_unlearn.audit.stats import (
    bootstrap_auc,
    clopper_pearson,
    extrapolated_exposure,
    fit_skewnorm,
    null_rank1_range,
    rate_upper,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- statistics ------------------------------------------------------------------------------------


def test_clopper_pearson_known_values() -> None:
    # 0 of n: the upper end is 1 - 0.025^(1/n); n of n mirrors it
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(0, 10)[1] == pytest.approx(0.3085, abs=1e-4)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    # 5 of 10: the textbook interval (0.187, 0.813)
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    assert rate_upper([0.0] * 213) == pytest.approx(1 - 0.025 ** (1 / 213))
    assert rate_upper([None, None]) is None


def test_null_rank1_range_is_a_binomial_range() -> None:
    lo, hi = null_rank1_range(1000, 99)  # p = 1%: about 10 of 1000, 95% between 4 and 16
    assert lo == pytest.approx(0.004, abs=0.0015) and hi == pytest.approx(0.016, abs=0.0015)


def test_skewnorm_extrapolation_on_a_known_distribution() -> None:
    from scipy.stats import skewnorm

    a, loc, scale = 4.0, -30.0, 6.0
    sample = skewnorm.rvs(a, loc=loc, scale=scale, size=20_000, random_state=np.random.default_rng(0))
    fa, floc, fscale = fit_skewnorm(sample)
    assert fa == pytest.approx(a, rel=0.35) and floc == pytest.approx(loc, abs=0.7)
    assert fscale == pytest.approx(scale, rel=0.1)
    for tail_bits in (4.0, 12.0, 20.0):  # a score whose true tail probability is 2^-bits
        score = float(skewnorm.isf(2.0**-tail_bits, a, loc=loc, scale=scale))
        assert extrapolated_exposure(score, sample) == pytest.approx(tail_bits, rel=0.15)
    assert extrapolated_exposure(float(np.median(sample)), sample) == pytest.approx(1.0, abs=0.1)
    assert extrapolated_exposure(1e9, sample) == 64.0  # capped
    assert extrapolated_exposure(0.0, [1.0, 2.0]) is None


def test_bootstrap_auc_brackets_the_auc() -> None:
    rng = np.random.default_rng(1)
    members, others = list(rng.normal(1.0, 1.0, 200)), list(rng.normal(0.0, 1.0, 200))
    lo, hi = bootstrap_auc(members, others, seed=3)  # type: ignore[misc]
    assert lo < 0.76 < hi and hi - lo < 0.15  # the AUC of a 1-sd shift is 0.76
    assert bootstrap_auc(members, others, seed=3) == (lo, hi)
    assert bootstrap_auc([1.0], [0.0], seed=0) is None
