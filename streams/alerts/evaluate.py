"""One evaluation of rule ``creator.outperforming`` for one campaign at one event time.

Input: each creator's totals over the trailing window (views, engagements, clicks,
conversions, revenue), its tier and, where a contract says so, its fee. Output: per
creator, its figures, a score per metric against its cohort, whether the fire condition
holds and which metric decided it, or why there is "insufficient data". A pure function of
its inputs: the same totals at the same time give the same verdicts, in any input order.

How a metric is scored (docs/alerts.md has the reasoning):

- **Eligible** creators have at least ``min_views`` views (and ``min_clicks`` clicks for
  conversion rate and cost per acquisition; a known fee and a conversion for the latter).
- The **cohort** is campaign x tier, among eligible creators; a tier with fewer than
  ``min_cohort`` falls back to the whole campaign (tier ``all``), and with fewer than that
  the metric is not scored. Cost per acquisition compares creators paid in one currency.
- **Rates** are shrunk toward the cohort (a Beta prior fitted to its eligible creators) and
  scored as logit(shrunk rate); **volumes** (views per minute, cost per acquisition) as
  log1p. The score is the modified z-score against the cohort's median and MAD, signed so
  that higher is better (cost per acquisition: lower cost scores higher).
- The condition holds when z >= ``z``, lift >= ``lift`` (value over the cohort median;
  median over value for cost) and, for rates, P(rate > cohort median) >= ``probability``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from schemas.alerts import Cohort, Figures
from streams.alerts.rules import METRICS, Rules
from streams.alerts.stats import Prior, Spread, expit, fit_prior, logit, probs_above, shrink, spread

UNKNOWN_TIER = "unknown"  # creators without a profile
CAMPAIGN_TIER = "all"  # the campaign-wide fallback cohort


@dataclass(frozen=True, slots=True)
class CreatorTotals:
    """One creator's totals over the trailing window at the evaluation time."""

    creator_id: str
    views: int
    engagements: int  # likes + comments + shares + saves
    clicks: int
    conversions: int
    revenue_cents: int
    tier: str = UNKNOWN_TIER  # schemas.reference.tier_for(followers); "unknown" without profile
    windows: int = 1  # 60 s windows of the trailing window in which the creator has data
    fee: float | None = None  # from the campaign contract, if any
    currency: str | None = None
    handle: str | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """One metric of one creator against its cohort."""

    metric: str
    value: float  # shrunk rate, views per minute, or cost per acquisition
    baseline: float  # the cohort's median, in the same unit
    z: float  # modified z-score, higher is better
    lift: float  # value / baseline (cost: baseline / value)
    probability: float | None  # P(rate > baseline) for rates; None for volumes
    cohort: Cohort
    fires: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """One creator at one evaluation."""

    creator_id: str
    tier: str
    handle: str | None
    figures: Figures
    scores: tuple[Score, ...]  # the metrics it could be scored on, in METRICS order
    gaps: tuple[tuple[str, str], ...]  # (metric, why it was not scored)
    decisive: Score | None  # the firing metric with the highest z; None if none fires

    @property
    def fires(self) -> bool:
        return self.decisive is not None

    @property
    def insufficient(self) -> str | None:
        """Why nothing could be scored, for the dashboard's "insufficient data"."""
        return self.gaps[0][1] if not self.scores and self.gaps else None

    def score(self, metric: str) -> Score | None:
        for s in self.scores:
            if s.metric == metric:
                return s
        return None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every creator of a campaign at one event time, in creator-id order."""

    campaign_id: str
    at_ms: int
    window_start_ms: int
    window_end_ms: int
    verdicts: tuple[Verdict, ...]

    def verdict(self, creator_id: str) -> Verdict | None:
        for v in self.verdicts:
            if v.creator_id == creator_id:
                return v
        return None


@dataclass(frozen=True, slots=True)
class _Metric:
    """How one metric reads a creator's totals."""

    name: str
    # (successes, trials) for a rate; the figure for a volume (None: not applicable)
    counts: Callable[[CreatorTotals], tuple[int, int]] | None
    figure: Callable[[CreatorTotals], float | None] | None
    higher_is_better: bool = True


def _engagements(c: CreatorTotals) -> tuple[int, int]:
    # Counts above the denominator (a post liked by people who saw it elsewhere) are capped:
    # a rate above 1 has no Beta posterior.
    return min(c.engagements, c.views), c.views


def _clicks(c: CreatorTotals) -> tuple[int, int]:
    return min(c.clicks, c.views), c.views


def _conversions(c: CreatorTotals) -> tuple[int, int]:
    return min(c.conversions, c.clicks), c.clicks


def views_per_minute(c: CreatorTotals) -> float:
    """Views per minute the creator had data in: how fast it gathers views while live."""
    return c.views / max(c.windows, 1)


def cost_per_acquisition(c: CreatorTotals) -> float | None:
    if c.fee is None or c.fee <= 0 or c.conversions <= 0:
        return None
    return c.fee / c.conversions


_METRICS: dict[str, _Metric] = {
    "engagement_rate": _Metric("engagement_rate", _engagements, None),
    "ctr": _Metric("ctr", _clicks, None),
    "conversion_rate": _Metric("conversion_rate", _conversions, None),
    "views_per_minute": _Metric("views_per_minute", None, views_per_minute),
    "cpa": _Metric("cpa", None, cost_per_acquisition, higher_is_better=False),
}
assert tuple(_METRICS) == METRICS


def _gap(metric: str, c: CreatorTotals, rules: Rules) -> str | None:
    """Why ``c`` is not eligible for ``metric`` (None: eligible)."""
    if c.views < rules.min_views:
        return f"below min views ({c.views} < {rules.min_views})"
    if metric in ("conversion_rate", "cpa") and c.clicks < rules.min_clicks:
        return f"below min clicks ({c.clicks} < {rules.min_clicks})"
    if metric == "cpa" and c.conversions <= 0:
        return "no conversions"
    return None


def _applies(metric: str, c: CreatorTotals) -> bool:
    """Cost per acquisition needs a fee: without a contract it is not a gap in the data."""
    return metric != "cpa" or (c.fee is not None and c.fee > 0)


@dataclass(frozen=True, slots=True)
class _CohortStats:
    cohort: Cohort
    prior: Prior | None  # rates only
    spread: Spread
    #: each member's figure on the score's scale, by creator: scored without recomputing
    scaled: dict[str, float]
    #: rates only: each member's P(rate > the cohort's median rate), by creator
    probability: dict[str, float]


def _pool(metric: str, c: CreatorTotals) -> str | None:
    """Creators are compared within one pool: costs only within one currency."""
    return c.currency if metric == "cpa" else None


def evaluate(
    campaign_id: str, at_ms: int, creators: Iterable[CreatorTotals], rules: Rules
) -> Evaluation:
    """Score every creator of ``campaign_id`` at event time ``at_ms``."""
    ordered = sorted(creators, key=lambda c: c.creator_id)
    if len({c.creator_id for c in ordered}) != len(ordered):
        raise ValueError("a creator appears twice in one evaluation")
    scores: dict[str, list[Score]] = {c.creator_id: [] for c in ordered}
    gaps: dict[str, list[tuple[str, str]]] = {c.creator_id: [] for c in ordered}
    shrunk: dict[tuple[str, str], float] = {}  # (creator, rate) -> shrunk rate
    for name in rules.metrics:
        metric = _METRICS[name]
        applicable = [c for c in ordered if _applies(name, c)]
        eligible = [c for c in applicable if _gap(name, c, rules) is None]
        cohorts: dict[tuple[str | None, str], list[CreatorTotals]] = {}
        for c in eligible:
            cohorts.setdefault((_pool(name, c), c.tier), []).append(c)
            cohorts.setdefault((_pool(name, c), CAMPAIGN_TIER), []).append(c)
        stats: dict[tuple[str | None, str], _CohortStats] = {}
        for c in applicable:
            gap = _gap(name, c, rules)
            key = (_pool(name, c), c.tier)
            if len(cohorts.get(key, ())) < rules.min_cohort:
                key = (key[0], CAMPAIGN_TIER)
            members = cohorts.get(key, [])
            if len(members) < rules.min_cohort:
                gaps[c.creator_id].append(
                    (name, gap or f"cohort too small ({len(members)} < {rules.min_cohort})")
                )
                continue
            if key not in stats:
                stats[key] = _cohort_stats(campaign_id, name, key[1], members, rules)
            cs = stats[key]
            if metric.counts is not None and cs.prior is not None:
                k, n = metric.counts(c)
                if n > 0:
                    shrunk[(c.creator_id, name)] = shrink(k, n, cs.prior)
            if gap is not None:
                gaps[c.creator_id].append((name, gap))
                continue
            score = _score(metric, c, cs, rules)
            if score is None:
                gaps[c.creator_id].append((name, "no spread in cohort"))
            else:
                scores[c.creator_id].append(score)
    verdicts = []
    for c in ordered:
        mine = scores[c.creator_id]
        firing = [s for s in mine if s.fires]
        decisive = max(firing, key=lambda s: s.z) if firing else None  # first of equals
        verdicts.append(
            Verdict(
                creator_id=c.creator_id,
                tier=c.tier,
                handle=c.handle,
                figures=_figures(c, shrunk),
                scores=tuple(mine),
                gaps=tuple(gaps[c.creator_id]),
                decisive=decisive,
            )
        )
    return Evaluation(
        campaign_id=campaign_id,
        at_ms=at_ms,
        window_start_ms=at_ms - rules.trailing_window_s * 1000,
        window_end_ms=at_ms,
        verdicts=tuple(verdicts),
    )


def _scale(metric: _Metric, c: CreatorTotals, prior: Prior | None) -> float:
    """The creator's figure on the score's scale: logit(shrunk rate) or log1p(volume)."""
    if metric.counts is not None:
        assert prior is not None
        return logit(shrink(*metric.counts(c), prior))
    assert metric.figure is not None
    value = metric.figure(c)
    assert value is not None  # eligibility guarantees it
    return math.log1p(value)


def _cohort_stats(
    campaign_id: str, name: str, tier: str, members: list[CreatorTotals], rules: Rules
) -> _CohortStats:
    metric = _METRICS[name]
    prior = None
    if metric.counts is not None:
        prior = fit_prior(
            [metric.counts(c) for c in members], rules.prior_strength_min, rules.prior_strength_max
        )
    scaled = {c.creator_id: _scale(metric, c, prior) for c in members}
    sp = spread(list(scaled.values()))
    probability = {}
    if metric.counts is not None:
        assert prior is not None
        counts = [metric.counts(c) for c in members]
        above = probs_above(counts, prior, expit(sp.median))
        probability = {c.creator_id: p for c, p in zip(members, above)}
    cohort = Cohort(
        campaign_id=campaign_id,
        tier=tier,
        scope="campaign" if tier == CAMPAIGN_TIER else "tier",
        size=len(members),
        median=sp.median,
        mad=sp.mad,
        mean_ad=sp.mean_ad if sp.uses_mean_ad else None,
    )
    return _CohortStats(cohort, prior, sp, scaled, probability)


def _score(metric: _Metric, c: CreatorTotals, cs: _CohortStats, rules: Rules) -> Score | None:
    """``c`` is an eligible member of the cohort ``cs`` describes."""
    x = cs.scaled[c.creator_id]
    z = cs.spread.z(x)
    if z is None:
        return None
    probability = None
    if metric.counts is not None:
        assert cs.prior is not None
        k, n = metric.counts(c)
        value = shrink(k, n, cs.prior)
        baseline = expit(cs.spread.median)
        probability = cs.probability[c.creator_id]
    else:
        value = math.expm1(x)
        baseline = math.expm1(cs.spread.median)
    if metric.higher_is_better:
        lift = value / baseline
    else:
        z = -z
        lift = baseline / value
    fires = (
        z >= rules.z
        and lift >= rules.lift
        and (probability is None or probability >= rules.probability)
    )
    return Score(
        metric=metric.name,
        value=value,
        baseline=baseline,
        z=z,
        lift=lift,
        probability=probability,
        cohort=cs.cohort,
        fires=fires,
    )


def _figures(c: CreatorTotals, shrunk: dict[tuple[str, str], float]) -> Figures:
    def rate(k: int, n: int) -> float | None:
        return k / n if n > 0 else None

    return Figures(
        views=c.views,
        engagements=c.engagements,
        clicks=c.clicks,
        conversions=c.conversions,
        revenue_cents=c.revenue_cents,
        engagement_rate=rate(c.engagements, c.views),
        engagement_rate_shrunk=shrunk.get((c.creator_id, "engagement_rate")),
        ctr=rate(c.clicks, c.views),
        ctr_shrunk=shrunk.get((c.creator_id, "ctr")),
        conversion_rate=rate(c.conversions, c.clicks),
        conversion_rate_shrunk=shrunk.get((c.creator_id, "conversion_rate")),
        views_per_minute=views_per_minute(c),
        fee=c.fee,
        currency=c.currency,
        cpa=cost_per_acquisition(c),
    )
