"""One evaluation: eligibility, cohorts and their fallback, scores, and the fire condition."""

from __future__ import annotations

import pytest

from streams.alerts.evaluate import CreatorTotals, evaluate
from streams.alerts.rules import Rules

RULES = Rules()
AT = 1_795_341_600_000


def creator(
    creator_id: str,
    views: int = 10_000,
    er: float = 0.07,
    *,
    ctr: float = 0.012,
    cvr: float = 0.03,
    tier: str = "micro",
    **extra: object,
) -> CreatorTotals:
    clicks = round(views * ctr)
    return CreatorTotals(
        creator_id=creator_id,
        views=views,
        engagements=round(views * er),
        clicks=clicks,
        conversions=round(clicks * cvr),
        revenue_cents=0,
        tier=tier,
        windows=60,
        **extra,  # type: ignore[arg-type]
    )


def cohort(n: int, tier: str = "micro") -> list[CreatorTotals]:
    """``n`` ordinary creators: engagement 6-8%, 8k-20k views, CTR and CVR spread a little."""
    return [
        creator(
            f"{tier}-{i}",
            8_000 + 1_500 * (i % 9),
            0.06 + 0.0025 * (i % 9),
            ctr=0.010 + 0.0007 * (i % 7),
            cvr=0.02 + 0.003 * (i % 5),
            tier=tier,
        )
        for i in range(n)
    ]


def test_a_clear_outperformer_fires_on_engagement_rate() -> None:
    e = evaluate("spring", AT, [*cohort(8), creator("star", 20_000, 0.18)], RULES)
    star = e.verdict("star")
    assert star is not None
    assert star.fires
    assert star.decisive is not None
    d = star.decisive
    assert d.metric == "engagement_rate"
    assert d.z >= 3.5
    assert d.lift >= 1.5
    assert d.probability is not None
    assert d.probability >= 0.95
    assert (d.cohort.tier, d.cohort.scope, d.cohort.size) == ("micro", "tier", 9)
    assert star.figures.engagement_rate == pytest.approx(0.18)
    assert star.figures.engagement_rate_shrunk == pytest.approx(d.value)
    assert (e.window_start_ms, e.window_end_ms) == (AT - 3_600_000, AT)
    assert [v.creator_id for v in e.verdicts if v.fires] == ["star"]


def test_below_minimum_creators_never_fire_however_hot() -> None:
    hot = [creator("tiny", 999, 0.5), creator("few-clicks", 5_000, 0.07, ctr=0.009, cvr=0.9)]
    e = evaluate("spring", AT, [*cohort(8), *hot], RULES)
    tiny, few = e.verdict("tiny"), e.verdict("few-clicks")
    assert tiny is not None
    assert few is not None
    assert not tiny.fires
    assert tiny.scores == ()
    assert tiny.insufficient == "below min views (999 < 1000)"
    # Its shrunk figures are still shown, pulled toward the cohort.
    assert tiny.figures.engagement_rate_shrunk is not None
    assert tiny.figures.engagement_rate_shrunk < 0.5
    # 45 clicks: conversion rate is not scored, the other metrics are.
    assert few.score("conversion_rate") is None
    assert few.score("engagement_rate") is not None
    assert ("conversion_rate", "below min clicks (45 < 50)") in few.gaps
    # Control: the same hot creator at the minimum does fire.
    at_min = evaluate("spring", AT, [*cohort(8), creator("tiny", 1_000, 0.5)], RULES)
    assert at_min.verdict("tiny").fires  # type: ignore[union-attr]


def test_a_cohort_of_four_never_fires() -> None:
    e = evaluate("spring", AT, [*cohort(3), creator("star", 20_000, 0.3)], RULES)
    star = e.verdict("star")
    assert star is not None
    assert not star.fires
    assert star.scores == ()
    assert star.insufficient == "cohort too small (4 < 5)"
    # Control: one more eligible creator makes a cohort, and the star fires.
    five = evaluate("spring", AT, [*cohort(4), creator("star", 20_000, 0.3)], RULES)
    assert five.verdict("star").fires  # type: ignore[union-attr]


def test_a_small_tier_falls_back_to_the_campaign_cohort() -> None:
    creators = [*cohort(3, "nano"), *cohort(5, "micro"), creator("star", 20_000, 0.2, tier="nano")]
    e = evaluate("spring", AT, creators, RULES)
    star = e.verdict("star")
    assert star is not None
    assert star.decisive is not None
    assert (star.decisive.cohort.tier, star.decisive.cohort.scope) == ("all", "campaign")
    assert star.decisive.cohort.size == 9
    micro = e.verdict("micro-0")
    assert micro is not None
    assert micro.scores[0].cohort.scope == "tier"
    assert micro.scores[0].cohort.size == 5


def test_creators_without_a_profile_form_the_unknown_tier() -> None:
    e = evaluate("spring", AT, [*cohort(5, "unknown"), *cohort(5)], RULES)
    v = e.verdict("unknown-0")
    assert v is not None
    assert v.scores[0].cohort.tier == "unknown"


def test_mad_zero_scores_with_the_mean_absolute_deviation() -> None:
    # Five identical creators and one star: MAD is 0, the fallback still sees the star.
    same = [creator(f"same-{i}", 10_000, 0.07) for i in range(5)]
    e = evaluate("spring", AT, [*same, creator("star", 10_000, 0.15)], RULES)
    star = e.verdict("star")
    assert star is not None
    assert star.fires
    assert star.decisive is not None
    assert star.decisive.cohort.mad == 0.0
    assert star.decisive.cohort.mean_ad is not None
    assert star.decisive.cohort.mean_ad > 0
    # 6 values, one off the median by d: z = d / (1.2533 * d / 6).
    assert star.decisive.z == pytest.approx(6 / 1.2533)


def test_no_spread_at_all_scores_nothing() -> None:
    same = [creator(f"same-{i}", 10_000, 0.07, ctr=0.01, cvr=0.03) for i in range(6)]
    e = evaluate("spring", AT, same, RULES)
    assert not any(v.fires for v in e.verdicts)
    assert ("engagement_rate", "no spread in cohort") in e.verdicts[0].gaps


def test_a_high_z_without_enough_lift_does_not_fire() -> None:
    # A cohort so uniform that 8.5% is an extreme z, but 8.5 / 7 is not 1.5x.
    tight = [creator(f"t-{i}", 20_000, 0.07 + 0.0005 * i) for i in range(8)]
    e = evaluate("spring", AT, [*tight, creator("edge", 20_000, 0.085)], RULES)
    edge = e.verdict("edge")
    assert edge is not None
    er = edge.score("engagement_rate")
    assert er is not None
    assert er.z >= 3.5
    assert er.lift < 1.5
    assert not er.fires
    assert not edge.fires


def test_cost_per_acquisition_lower_is_better_within_one_currency() -> None:
    paid = [creator(f"p-{i}", 10_000, 0.07, fee=1_000.0 + 50 * i, currency="USD") for i in range(6)]
    cheap = creator("cheap", 10_000, 0.07, fee=100.0, currency="USD")
    euro = creator("euro", 10_000, 0.07, fee=100.0, currency="EUR")
    e = evaluate("spring", AT, [*paid, cheap, euro], RULES)
    c = e.verdict("cheap")
    assert c is not None
    assert c.decisive is not None
    assert c.decisive.metric == "cpa"
    assert c.decisive.z >= 3.5
    assert c.decisive.lift >= 1.5
    assert c.decisive.probability is None  # a volume: z and lift decide
    assert c.figures.cpa == pytest.approx(100.0 / c.figures.conversions)
    # The one EUR contract has no cohort to compare its cost with.
    eur = e.verdict("euro")
    assert eur is not None
    assert ("cpa", "cohort too small (1 < 5)") in eur.gaps
    # Without a fee the metric simply does not apply.
    no_fee = evaluate("spring", AT, cohort(6), RULES).verdicts[0]
    assert no_fee.score("cpa") is None
    assert "cpa" not in dict(no_fee.gaps)


def test_views_velocity_is_scored_on_log1p() -> None:
    slow = [creator(f"s-{i}", 6_000 + 600 * i, 0.07) for i in range(6)]
    fast = creator("fast", 400_000, 0.07)
    e = evaluate("spring", AT, [*slow, fast], RULES)
    f = e.verdict("fast")
    assert f is not None
    assert f.decisive is not None
    assert f.decisive.metric == "views_per_minute"
    assert f.figures.views_per_minute == pytest.approx(400_000 / 60)


def test_only_the_configured_metrics_are_scored() -> None:
    slow = [creator(f"s-{i}", 6_000 + 600 * i, 0.07) for i in range(6)]
    rules = Rules(metrics=("engagement_rate",))
    e = evaluate("spring", AT, [*slow, creator("fast", 400_000, 0.07)], rules)
    assert not any(v.fires for v in e.verdicts)
    assert {s.metric for v in e.verdicts for s in v.scores} == {"engagement_rate"}


def test_a_pure_function_of_its_inputs_in_any_order() -> None:
    creators = [*cohort(8), creator("star", 20_000, 0.18), creator("tiny", 200, 0.4)]
    first = evaluate("spring", AT, creators, RULES)
    again = evaluate("spring", AT, list(reversed(creators)), RULES)
    assert first == again
    assert [v.creator_id for v in first.verdicts] == sorted(c.creator_id for c in creators)
    with pytest.raises(ValueError, match="twice"):
        evaluate("spring", AT, [creator("a"), creator("a")], RULES)
