"""The BI views compute each rate as schemas.metrics defines it (one definition, mirrored)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import metrics
from schemas.reference import CampaignContract
from schemas.rows import CreatorWindowRow
from sinks.clickhouse import ClickHouseSink

T0 = 1_795_338_000_000
COUNTS = dict(
    views=9_000,
    likes=700,
    comments=55,
    shares=31,
    saves=120,
    watch_time_ms=104_000_000,
    completions=2_100,
    replays=340,
    clicks=410,
    conversions=23,
    revenue_cents=91_977,
)
FEE = 1_250.0


@pytest.fixture
def written(clickhouse_sink: ClickHouseSink) -> ClickHouseSink:
    counts = tuple(COUNTS[m] for m in metrics.METRICS)
    clickhouse_sink.write_creator_windows(
        [CreatorWindowRow("camp", "maya", size, T0, counts) for size in (60, 3600)]
    )
    clickhouse_sink.write_contracts(
        [CampaignContract(campaign_id="camp", creator_id="maya", fee=FEE)]
    )
    return clickhouse_sink


def one_row(sink: ClickHouseSink, sql: str) -> dict[str, object]:
    rows = sink.query_rows(sql)
    assert len(rows) == 1
    names = [
        n.strip().split(" ")[-1] for n in sql.split("SELECT", 1)[1].split("FROM")[0].split(",")
    ]
    return dict(zip(names, rows[0], strict=True))


def test_creator_rates_view_matches_the_rate_functions(written: ClickHouseSink) -> None:
    row = one_row(
        written,
        "SELECT engagement_rate, ctr, conversion_rate, avg_watch_time_s, completion_rate, "
        "replay_rate FROM {database}.creator_metrics_rates WHERE window_size_s = 60",
    )
    assert row == pytest.approx(
        {
            "engagement_rate": metrics.engagement_rate(COUNTS),
            "ctr": metrics.ctr(COUNTS),
            "conversion_rate": metrics.conversion_rate(COUNTS),
            "avg_watch_time_s": metrics.avg_watch_time_s(COUNTS),
            "completion_rate": metrics.completion_rate(COUNTS),
            "replay_rate": metrics.replay_rate(COUNTS),
        }
    )


def test_the_roi_view_matches_the_cost_functions(written: ClickHouseSink) -> None:
    row = one_row(
        written,
        "SELECT cost_per_engagement, cost_per_view, cost_per_acquisition, roas "
        "FROM {database}.creator_roi",
    )
    assert row == pytest.approx(
        {
            "cost_per_engagement": metrics.cost_per_engagement(FEE, COUNTS),
            "cost_per_view": metrics.cost_per_view(FEE, COUNTS),
            "cost_per_acquisition": metrics.cost_per_acquisition(FEE, COUNTS),
            "roas": metrics.return_on_spend(FEE, COUNTS),
        }
    )


def test_rates_without_a_denominator_are_none_like_the_views_nulls() -> None:
    zero = dict.fromkeys(metrics.METRICS, 0)
    assert metrics.engagement_rate(zero) is None
    assert metrics.conversion_rate(zero) is None
    assert metrics.cost_per_acquisition(None, COUNTS) is None
    assert datetime.fromtimestamp(T0 / 1000, UTC).second == 0  # a window boundary
