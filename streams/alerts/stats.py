"""The statistics of the rule: shrinkage, robust z-scores and the Beta posterior. Pure.

- A creator's rate is estimated by **empirical-Bayes beta-binomial shrinkage**: a Beta prior
  fitted to its cohort by the method of moments, updated with the creator's own counts. Few
  views pull the estimate toward the cohort; many views keep the creator's own rate, so a
  300-view creator at 10% ranks below a 9,000-view creator at 10%.
- A creator is compared with its cohort by the **modified z-score** (Iglewicz and Hoaglin),
  0.6745 * (x - median) / MAD, on logit(shrunk rate) for rates and log1p for volumes. Where
  MAD is 0 (over half the cohort identical) it falls back to the mean absolute deviation
  around the median, times 1.2533; where that is 0 too there is no spread and no score.
- The **posterior** P(rate > cohort median) comes from the Beta posterior's survival
  function, ``scipy.special.betaincc`` (Boost's incomplete beta, in C). It runs for every
  eligible creator and rate each minute, with counts in the tens of thousands, where
  mpmath's arbitrary-precision series is orders of magnitude too slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from scipy.special import betaincc

#: MAD to standard deviation, for normal data: 1 / 0.6745 (Iglewicz and Hoaglin).
MAD_FACTOR = 0.6745
#: Mean absolute deviation to standard deviation, for normal data: sqrt(pi / 2).
MEAN_AD_FACTOR = 1.2533
#: A rate of exactly 0 or 1 has no logit; a Beta posterior mean never reaches them, and
#: this keeps a degenerate prior's mean inside (0, 1) as well.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Prior:
    """A Beta(alpha, beta) prior on a rate. ``fitted`` is False for the weak fallback."""

    alpha: float
    beta: float
    fitted: bool = True

    @property
    def strength(self) -> float:
        """alpha + beta: how many observations the prior is worth."""
        return self.alpha + self.beta

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


def fit_prior(counts: Sequence[tuple[int, int]], strength_min: float, strength_max: float) -> Prior:
    """The Beta prior of a cohort's rates by the method of moments, strength clamped.

    ``counts`` are (successes, trials) of the cohort's eligible creators, trials > 0. The
    variance of the observed rates holds the binomial noise of each creator's sample as
    well as the spread of the true rates; the noise (mean of m(1-m)/n) is taken out, and
    the rest gives alpha + beta = m(1-m)/v - 1. Where nothing is left (the cohort is as
    uniform as sampling noise alone makes it), or every rate is 0 or 1, the prior is the
    weak one: the pooled rate at the minimum strength.
    """
    if not counts:
        raise ValueError("a prior needs at least one creator")
    rates = [k / n for k, n in counts]
    m = sum(rates) / len(rates)
    observed = sum((r - m) ** 2 for r in rates) / len(rates)
    noise = sum(m * (1.0 - m) / n for _, n in counts) / len(counts)
    spread = observed - noise
    if spread <= 0.0 or not _EPS < m < 1.0 - _EPS:
        successes = sum(k for k, _ in counts)
        trials = sum(n for _, n in counts)
        pooled = (successes + 0.5) / (trials + 1.0)  # never exactly 0 or 1
        return Prior(pooled * strength_min, (1.0 - pooled) * strength_min, fitted=False)
    strength = min(max(m * (1.0 - m) / spread - 1.0, strength_min), strength_max)
    return Prior(m * strength, (1.0 - m) * strength)


def shrink(successes: int, trials: int, prior: Prior) -> float:
    """The posterior mean of a creator's rate: (k + alpha) / (n + alpha + beta)."""
    return (successes + prior.alpha) / (trials + prior.strength)


def prob_above(successes: int, trials: int, prior: Prior, threshold: float) -> float:
    """P(rate > threshold) under the creator's posterior Beta(alpha + k, beta + n - k)."""
    return probs_above([(successes, trials)], prior, threshold)[0]


def probs_above(counts: Sequence[tuple[int, int]], prior: Prior, threshold: float) -> list[float]:
    """:func:`prob_above` of each (successes, trials), in one call of the same kernel:
    a cohort's members share the prior and the threshold, and one call per creator cost
    more in dispatch than in the function itself."""
    alphas = [prior.alpha + k for k, _ in counts]
    betas = [prior.beta + n - k for k, n in counts]
    return [float(p) for p in betaincc(alphas, betas, threshold)]


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True, slots=True)
class Spread:
    """The robust centre and spread of a cohort's scores."""

    median: float
    mad: float  # median absolute deviation from the median
    mean_ad: float  # mean absolute deviation from the median

    @property
    def uses_mean_ad(self) -> bool:
        return self.mad == 0.0

    def z(self, x: float) -> float | None:
        """The modified z-score of ``x``, or ``None`` where the cohort has no spread."""
        if self.mad > 0.0:
            return MAD_FACTOR * (x - self.median) / self.mad
        if self.mean_ad > 0.0:
            return (x - self.median) / (MEAN_AD_FACTOR * self.mean_ad)
        return None


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("a spread needs at least one value")
    centre = median(values)
    deviations = [abs(v - centre) for v in values]
    return Spread(centre, median(deviations), sum(deviations) / len(deviations))
