"""The statistics of an audit: Clopper–Pearson bounds, the null of a rank, skew-normal tails, bootstrap.

Pure functions on numbers (no model code), each tested against known values:

* :func:`clopper_pearson`: the exact 95% interval of a rate, so "0 of 213" reads
  "at most 1.7% at 95%";
* :func:`null_rank1_range`: how many of ``n`` never-seen values a chance ranking
  puts first among ``C`` candidates (binomial with ``p = 1/(C+1)``);
* :func:`fit_skewnorm` and :func:`extrapolated_exposure`: the secret sharer's
  extrapolation beyond ``log2(C+1)`` bits, a skew-normal fitted to the
  candidates' scores and the true score's tail probability under it;
* :func:`bootstrap_auc`: a seeded percentile interval of a paired ROC AUC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Confidence of every interval an audit reports.
CONFIDENCE = 0.95
#: Extrapolated exposure is capped here (a tail probability below 2^-64 is "never by chance").
MAX_EXTRAPOLATED_BITS = 64.0


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact two-sided interval of a binomial rate ``k / n`` (``(0, 1)`` when ``n`` is 0)."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def rate_upper(values: Sequence[float | None], confidence: float = CONFIDENCE) -> float | None:
    """Upper end of the Clopper–Pearson interval of a share of 0/1 hits (``None``: nothing measured)."""
    hits = [v for v in values if v is not None]
    if not hits:
        return None
    return clopper_pearson(round(sum(hits)), len(hits), confidence)[1]


def null_rank1_range(n: int, candidates: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Central ``confidence`` range of the share of ``n`` never-seen values ranked first by chance.

    Each is first among ``candidates`` same-shape values with probability
    ``1 / (candidates + 1)``; the count is binomial.
    """
    from scipy.stats import binom

    if n <= 0:
        return 0.0, 1.0
    p = 1.0 / (candidates + 1)
    alpha = 1.0 - confidence
    return float(binom.ppf(alpha / 2, n, p)) / n, float(binom.ppf(1 - alpha / 2, n, p)) / n


def fit_skewnorm(scores: Sequence[float]) -> tuple[float, float, float]:
    """Skew-normal ``(a, loc, scale)`` with the sample's mean, variance and skewness (method of moments).

    The sample skewness is clipped to what a skew-normal can have (|γ| < 0.995).
    A constant sample gives a tiny scale, so every other score is far in a tail.
    """
    x = np.asarray(scores, dtype=np.float64)
    mean, sd = float(x.mean()), float(x.std())
    if sd <= 1e-12:
        return 0.0, mean, 1e-9
    gamma = float(np.mean(((x - mean) / sd) ** 3))
    gamma = max(-0.995, min(0.995, gamma))
    # |delta| from the skewness: gamma = (4 - pi)/2 * (d sqrt(2/pi))^3 / (1 - 2 d^2 / pi)^1.5
    g = abs(gamma) ** (2 / 3)
    k = ((4 - math.pi) / 2) ** (2 / 3)
    delta = math.copysign(math.sqrt(math.pi / 2 * g / (g + k)), gamma)
    delta = max(-0.999, min(0.999, delta))
    a = delta / math.sqrt(1 - delta**2)
    scale = sd / math.sqrt(1 - 2 * delta**2 / math.pi)
    loc = mean - scale * delta * math.sqrt(2 / math.pi)
    return a, loc, scale


def extrapolated_exposure(true_score: float, candidate_scores: Sequence[float]) -> float | None:
    """``-log2 P(score >= true_score)`` under a skew-normal fitted to the candidates' scores.

    Resolves beyond ``log2(C+1)``: a value far above every candidate gets more bits
    the further it is. Capped at :data:`MAX_EXTRAPOLATED_BITS`; ``None`` with fewer
    than 3 candidates.
    """
    from scipy.stats import skewnorm

    if len(candidate_scores) < 3:
        return None
    a, loc, scale = fit_skewnorm(candidate_scores)
    logsf = float(skewnorm.logsf(true_score, a, loc=loc, scale=scale))
    if math.isnan(logsf):
        return None
    return min(MAX_EXTRAPOLATED_BITS, max(0.0, -logsf / math.log(2)))


def bootstrap_auc(
    members: Sequence[float | None],
    others: Sequence[float | None],
    *,
    seed: int,
    resamples: int = 1000,
    confidence: float = CONFIDENCE,
) -> tuple[float, float] | None:
    """Percentile interval of the ROC AUC of paired member/non-member scores (pairs resampled).

    ``None`` with fewer than 2 complete pairs.
    """
    pairs = [(m, o) for m, o in zip(members, others, strict=True) if m is not None and o is not None]
    if len(pairs) < 2:
        return None
    m = np.array([p[0] for p in pairs])
    o = np.array([p[1] for p in pairs])
    rng = np.random.default_rng(seed)
    aucs = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(0, len(pairs), len(pairs))
        mm, oo = m[idx][:, None], o[idx][None, :]
        aucs[b] = float(((mm > oo).sum() + 0.5 * (mm == oo).sum()) / (len(idx) ** 2))
    alpha = 1.0 - confidence
    return float(np.quantile(aucs, alpha / 2)), float(np.quantile(aucs, 1 - alpha / 2))
