"""The rule's statistics: the issue's shrinkage vector, the prior fit, robust z, the posterior."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import betaincc

from streams.alerts.stats import (
    Prior,
    expit,
    fit_prior,
    logit,
    prob_above,
    probs_above,
    shrink,
    spread,
)

PRIOR = Prior(20, 380)  # the issue's worked vector


def test_the_issues_shrinkage_vector() -> None:
    assert round(shrink(30, 300, PRIOR), 4) == 0.0714  # 7.14%
    assert round(shrink(900, 9000, PRIOR), 4) == 0.0979  # 9.79%


def test_a_300_view_creator_at_10pct_ranks_below_a_9000_view_creator_at_10pct() -> None:
    small, large = shrink(30, 300, PRIOR), shrink(900, 9000, PRIOR)
    assert small < large
    # The posterior agrees: the larger sample is surer of beating the same median.
    assert prob_above(30, 300, PRIOR, 0.06) < prob_above(900, 9000, PRIOR, 0.06)


def test_the_posterior_against_closed_forms() -> None:
    # Beta(1, 1) is uniform: P(p > x) = 1 - x.
    assert prob_above(0, 0, Prior(1, 1), 0.3) == pytest.approx(0.7, abs=1e-12)
    # Beta(2, 1) has density 2p: P(p > x) = 1 - x^2.
    assert prob_above(1, 1, Prior(1, 1), 0.5) == pytest.approx(0.75, abs=1e-12)
    # Beta(1, 3): P(p > x) = (1 - x)^3.
    assert prob_above(0, 2, Prior(1, 1), 0.2) == pytest.approx(0.8**3, abs=1e-12)


def test_the_posterior_is_a_number_at_campaign_sized_counts() -> None:
    # 20k views at 18% against a 7% median: certain.
    assert prob_above(3600, 20_000, PRIOR, 0.07) == 1.0
    # At its own posterior mean, a large sample is a coin flip (mean ~ median).
    at_mean = shrink(1400, 20_000, PRIOR)
    assert prob_above(1400, 20_000, PRIOR, at_mean) == pytest.approx(0.5, abs=0.01)


def test_the_method_of_moments_recovers_the_spread_of_true_rates() -> None:
    # Samples so large that binomial noise is nil: mean 0.1, variance 0.0025.
    n = 10**9
    prior = fit_prior([(int(0.05 * n), n), (int(0.15 * n), n)], 1, 10_000)
    assert prior.fitted
    assert prior.mean == pytest.approx(0.1)
    assert prior.strength == pytest.approx(0.1 * 0.9 / 0.0025 - 1)


def test_the_binomial_noise_is_taken_out_before_the_fit() -> None:
    # Three creators at 1,000 views whose rates differ by little more than sampling noise:
    # their true rates are alike, so the prior is as strong as allowed. On the raw variance
    # alone (6.67e-5) the fit would say 0.0651 / 6.67e-5 - 1 = 975.
    counts = [(60, 1000), (70, 1000), (80, 1000)]
    assert fit_prior(counts, 10, 1000).strength == pytest.approx(1000)
    assert fit_prior(counts, 10, 1e9).strength > 10_000


def test_the_prior_strength_is_clamped_at_both_ends() -> None:
    n = 10**9
    wide = fit_prior([(int(0.01 * n), n), (int(0.9 * n), n)], 10, 1000)
    assert wide.strength == pytest.approx(10)
    narrow = fit_prior([(int(0.070 * n), n), (int(0.0701 * n), n)], 10, 1000)
    assert narrow.strength == pytest.approx(1000)
    assert narrow.mean == pytest.approx(0.07005)


@pytest.mark.parametrize(
    "counts",
    [
        [(70, 1000)] * 5,  # identical creators: no spread beyond noise
        [(0, 1000)] * 5,  # nobody converted
        [(1000, 1000)] * 5,  # everybody did
    ],
    ids=["uniform", "all-zero", "all-one"],
)
def test_a_degenerate_cohort_gets_the_weak_prior(counts: list[tuple[int, int]]) -> None:
    prior = fit_prior(counts, 10, 1000)
    assert not prior.fitted
    assert prior.strength == pytest.approx(10)
    assert 0 < prior.mean < 1  # a proper prior, so every shrunk rate has a logit
    assert math.isfinite(logit(shrink(0, 1000, prior)))


def test_the_modified_z_score() -> None:
    s = spread([1, 2, 3, 4, 100])
    assert (s.median, s.mad) == (3, 1)
    assert s.z(100) == pytest.approx(0.6745 * 97)
    assert s.z(3) == 0


def test_mad_zero_falls_back_to_the_mean_absolute_deviation() -> None:
    s = spread([1, 1, 1, 1, 2])  # over half identical: MAD is 0
    assert s.mad == 0
    assert s.mean_ad == pytest.approx(0.2)
    assert s.uses_mean_ad
    assert s.z(2) == pytest.approx(1 / (1.2533 * 0.2))


def test_no_spread_at_all_gives_no_score() -> None:
    assert spread([5, 5, 5, 5, 5]).z(6) is None


def test_logit_and_expit_are_inverse_and_bounded() -> None:
    assert expit(logit(0.0714)) == pytest.approx(0.0714)
    assert math.isfinite(logit(0.0))
    assert math.isfinite(logit(1.0))


@given(
    st.lists(
        st.integers(0, 50_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
        min_size=1,
        max_size=40,
    ),
    st.floats(0.001, 50.0),
    st.floats(1.0, 5_000.0),
    st.floats(0.0, 1.0),
)
def test_a_cohorts_probabilities_at_once_are_those_of_one_call_each(
    counts: list[tuple[int, int]], alpha: float, beta: float, threshold: float
) -> None:
    prior = Prior(alpha, beta)
    one_each = [float(betaincc(alpha + k, beta + n - k, threshold)) for k, n in counts]
    assert probs_above(counts, prior, threshold) == one_each  # exactly: the same kernel
