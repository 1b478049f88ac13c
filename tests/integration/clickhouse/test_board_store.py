"""The board read from a real store: windows, contracts with a flight, firing alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from creatorpulse.board import NoSuchCampaign, read_live_board
from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse.alerts import ClickHouseAlertStore
from tests.support.webhook_samples import alert

pytestmark = pytest.mark.clickhouse

T0_MS = 1_795_338_000_000  # 2026-11-22T09:00:00Z
MINUTE_MS = 60_000


def window(creator: str, start_ms: int, **values: int) -> CreatorWindowRow:
    return CreatorWindowRow(
        "spring", creator, 60, start_ms, tuple(values.get(m, 0) for m in METRICS)
    )


def test_live_board_from_the_store(clickhouse_sink: ClickHouseSink) -> None:
    # maya: 10 minutes of 100 views, 12 likes, 4 clicks, 1 conversion (30.00): 1000 views,
    # 12% ER, 10 conversions, 300.00 revenue. bob: 300 views in all, below the sample.
    clickhouse_sink.write_creator_windows(
        [
            window("maya", T0_MS + i * MINUTE_MS, views=100, likes=12, clicks=4,
                   conversions=1, revenue_cents=3_000)
            for i in range(10)
        ]
        + [window("bob", T0_MS + i * MINUTE_MS, views=30, likes=9) for i in range(10)]
    )  # fmt: skip
    # A 10-day flight for 2400.00: the board's hour (09:00-10:00 ends at the newest
    # window, 09:10) overlaps it from 09:00, i.e. 10 minutes: 2400 * 600 / 864000.
    start = datetime.fromtimestamp(T0_MS / 1000, UTC)
    end = datetime.fromtimestamp(T0_MS / 1000 + 10 * 86_400, UTC)
    clickhouse_sink.write_contracts(
        [
            CampaignContract(campaign_id="spring", creator_id="maya", fee=2400, currency="EUR",
                             flight_start=start, flight_end=end)
        ]
    )  # fmt: skip
    clickhouse_sink.write_profiles(
        [CreatorProfile(creator_id="maya", handle="@maya.eats", follower_count=40_000)]
    )
    ClickHouseAlertStore(clickhouse_sink).write_alerts([alert("maya")])

    board = read_live_board(clickhouse_sink, sort="cpa")
    maya, bob = board.rows
    assert (maya.creator_id, maya.rank, maya.handle, maya.tier) == (
        "maya",
        1,
        "@maya.eats",
        "micro",
    )
    spend = 2400 * 600 / 864_000
    assert maya.spend == pytest.approx(spend)
    assert maya.cpa == pytest.approx(spend / 10)
    assert maya.roas == pytest.approx(300.0 / spend)
    assert (maya.currency, maya.fee_basis, maya.alert) == ("EUR", "flight", "▲ ER")
    assert (bob.rank, bob.below_min_sample, bob.alert) == (None, True, None)
    (summary,) = board.campaigns
    assert (summary.views, summary.alerts, summary.currency) == (1300, 1, "EUR")
    with pytest.raises(NoSuchCampaign):
        read_live_board(clickhouse_sink, campaign="autumn")
