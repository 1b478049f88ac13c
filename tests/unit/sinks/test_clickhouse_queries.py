"""What the ClickHouse sink's reads return, from its rows: no engine here."""

from __future__ import annotations

from dataclasses import fields

import pytest

from schemas import metrics
from schemas.metrics import METRICS
from sinks.clickhouse import LeaderRow
from sinks.clickhouse.queries import leader_row, window_totals

COUNTS = dict(
    zip(METRICS, (9_000, 700, 55, 31, 120, 104_000_000, 2_100, 340, 410, 23, 91_977), strict=True)
)


def test_a_leader_row_carries_the_counters_in_metrics_order() -> None:
    names = [f.name for f in fields(LeaderRow)]
    assert [n for n in names if n in METRICS] == list(METRICS)


def test_a_leader_rows_rates_are_those_of_schemas_metrics() -> None:
    leader = leader_row(("camp", "maya", "@maya", "micro", 3, *(COUNTS[m] for m in METRICS)))
    assert (leader.campaign_id, leader.creator_id, leader.windows) == ("camp", "maya", 3)
    assert leader.views == 9_000
    assert leader.revenue == pytest.approx(919.77)
    assert leader.engagements == metrics.engagements(COUNTS)
    assert leader.engagement_rate == metrics.engagement_rate(COUNTS)
    assert leader.ctr == metrics.ctr(COUNTS)
    assert leader.conversion_rate == metrics.conversion_rate(COUNTS)
    assert leader.avg_watch_time_s == metrics.avg_watch_time_s(COUNTS)


def test_a_leader_row_without_views_or_clicks_has_no_rates() -> None:
    leader = leader_row(("camp", "new", None, None, 1, *(0 for _ in METRICS)))
    assert (leader.handle, leader.tier) == (None, None)
    rates = (leader.engagement_rate, leader.ctr, leader.conversion_rate, leader.avg_watch_time_s)
    assert rates == (None, None, None, None)


def test_window_totals_are_keyed_by_window_with_counters_as_ints() -> None:
    record = ("camp", "maya", 60, 1_795_338_000_000, *(str(COUNTS[m]) for m in METRICS))
    assert window_totals([record]) == {
        ("camp", "maya", 60, 1_795_338_000_000): tuple(COUNTS[m] for m in METRICS)
    }
