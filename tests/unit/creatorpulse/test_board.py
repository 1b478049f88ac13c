"""The board model (creatorpulse/board.py) and how the terminal draws it at a width."""

from __future__ import annotations

import json
from typing import Any

import pytest

from creatorpulse.board import (
    MIN_SAMPLE_VIEWS,
    SORT_KEYS,
    Board,
    NoSuchCampaign,
    Terms,
    alert_badges,
    board_from_json,
    build_board,
    parse_sort,
    read_board,
)
from creatorpulse.terminal import progress_line, render_text, screen
from schemas.metrics import METRICS

HOUR = 3600
T0 = 1_700_000_000


def agg(
    creator: str, campaign: str = "c1", handle: str | None = None, **values: int
) -> dict[str, Any]:
    row: dict[str, Any] = {m: values.get(m, 0) for m in METRICS}
    row.update(campaign_id=campaign, creator_id=creator, handle=handle, tier="micro", windows=3)
    return row


# Four creators, all above the minimum sample, each best at something:
#   a: ER 20% (200 likes / 1000 views), CTR 1%, 10 clicks -> 1 conversion (CVR 10%)
#   b: ER 5% (100/2000), CTR 5% (100 clicks), 20 conversions (CVR 20%), revenue 500.00
#   c: ER 10% (300/3000), CTR 2% (60 clicks), 3 conversions (CVR 5%), revenue 90.00
#   d: ER 1% (50/5000), CTR 0.2% (10 clicks), no conversions, the most views
CREATORS = [
    agg("a", likes=200, views=1000, clicks=10, conversions=1, revenue_cents=1_000),
    agg("b", likes=100, views=2000, clicks=100, conversions=20, revenue_cents=50_000),
    agg("c", likes=300, views=3000, clicks=60, conversions=3, revenue_cents=9_000),
    agg("d", likes=50, views=5000, clicks=10),
]
# Fees for the whole campaign; no flight, so charged in full.
FEES = {
    ("c1", "a"): Terms(fee=100.0, currency="EUR"),
    ("c1", "b"): Terms(fee=1000.0, currency="EUR"),
    ("c1", "c"): Terms(fee=30.0, currency="EUR"),
    ("c1", "d"): Terms(fee=10.0, currency="EUR"),
}


def order(board: Board) -> list[str]:
    return [r.creator_id for r in board.rows]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("er", ["a", "c", "b", "d"]),
        ("ctr", ["b", "c", "a", "d"]),
        ("cvr", ["b", "a", "c", "d"]),
        # CPA: a 100/1, b 1000/20 = 50, c 30/3 = 10; d has no conversions: unranked.
        ("cpa", ["c", "b", "a", "d"]),
        # ROAS: a 10/100 = 0.1, b 500/1000 = 0.5, c 90/30 = 3; d 0/10 = 0.
        ("roas", ["c", "b", "a", "d"]),
        ("views", ["d", "c", "b", "a"]),
        ("revenue", ["b", "c", "a", "d"]),
    ],
)
def test_each_sort_key_ranks_by_its_metric(key: str, expected: list[str]) -> None:
    board = build_board(CREATORS, FEES, from_s=T0, to_s=T0 + HOUR, sort=parse_sort(key))
    assert order(board) == expected
    ranks = [r.rank for r in board.rows]
    if key == "cpa":  # d has no CPA: shown after the ranked, without a rank
        assert ranks == [1, 2, 3, None]
    else:
        assert ranks == [1, 2, 3, 4]


def test_every_key_is_covered_and_unknown_keys_are_refused() -> None:
    assert set(SORT_KEYS) == {"er", "ctr", "cvr", "cpa", "roas", "views", "revenue"}
    with pytest.raises(ValueError, match=r"er\|ctr\|cvr"):
        parse_sort("likes")
    with pytest.raises(ValueError, match="unknown sort key"):
        build_board(CREATORS, FEES, from_s=T0, to_s=T0 + HOUR, sort="likes")  # type: ignore[arg-type]


def test_rows_below_the_minimum_sample_are_marked_and_not_ranked() -> None:
    # One view with one like: 100% ER, the noise the board must not rank first.
    noisy = agg("tiny", likes=1, views=1)
    just_under = agg("under", likes=100, views=MIN_SAMPLE_VIEWS - 1)
    board = build_board([noisy, just_under, *CREATORS], FEES, from_s=T0, to_s=T0 + HOUR)
    assert order(board)[:4] == ["a", "c", "b", "d"]
    assert [r.rank for r in board.rows[:4]] == [1, 2, 3, 4]
    tail = board.rows[4:]
    # Unranked rows follow, most views first.
    assert [r.creator_id for r in tail] == ["under", "tiny"]
    assert all(r.below_min_sample and r.rank is None for r in tail)
    assert tail[1].er == 1.0  # the rate is still shown
    assert not any(r.below_min_sample for r in board.rows[:4])
    assert board.campaigns[0].ranked == 4
    assert board.campaigns[0].creators == 6


def test_fee_is_pro_rated_over_the_flight() -> None:
    # A 10-day flight for 2400.00: one hour of it costs 10.00.
    flight = Terms(fee=2400.0, currency="USD", flight_start_s=T0, flight_end_s=T0 + 240 * HOUR)
    spend, basis = flight.spend(T0 + 5 * HOUR, T0 + 6 * HOUR)
    assert spend == pytest.approx(10.0)
    assert basis == "flight"
    # A range that starts before the flight is charged only for its overlap.
    assert flight.spend(T0 - HOUR, T0 + HOUR)[0] == pytest.approx(10.0)
    assert flight.spend(T0 - 2 * HOUR, T0 - HOUR) == (0.0, "flight")
    assert Terms(fee=2400.0, currency="USD").spend(T0, T0 + HOUR) == (2400.0, "full")

    # b over one hour of that flight: 20 conversions, 500.00 revenue, 10.00 spent.
    board = build_board(
        [CREATORS[1]],
        {("c1", "b"): flight},
        from_s=T0 + 5 * HOUR,
        to_s=T0 + 6 * HOUR,
    )
    (row,) = board.rows
    assert (row.fee, row.fee_basis, row.currency) == (2400.0, "flight", "USD")
    assert row.spend == pytest.approx(10.0)
    assert row.cpa == pytest.approx(0.5)
    assert row.roas == pytest.approx(50.0)


def test_no_contract_no_money() -> None:
    board = build_board(CREATORS[:1], {}, from_s=T0, to_s=T0 + HOUR, sort="roas")
    (row,) = board.rows
    assert (row.fee, row.spend, row.cpa, row.roas, row.currency) == (None,) * 5
    assert row.rank is None  # nothing to rank by
    assert board.campaigns[0].spend is None


def test_campaign_summary_sums_every_creator_not_only_those_shown() -> None:
    other = agg("x", campaign="c2", likes=10, views=1000)
    board = build_board([*CREATORS, other], FEES, from_s=T0, to_s=T0 + HOUR, limit=2)
    assert len(board.rows) == 2
    assert board.total_creators == 5
    c1, c2 = board.campaigns
    assert c1.campaign_id == "c1"
    assert c2.campaign_id == "c2"
    assert (c1.creators, c1.views, c1.engagements) == (4, 11_000, 650)
    assert c1.er == pytest.approx(650 / 11_000)
    assert (c1.conversions, c1.revenue, c1.currency) == (24, 600.0, "EUR")
    assert c1.spend == pytest.approx(1140.0)
    assert c1.cpa == pytest.approx(1140.0 / 24)
    assert c1.roas == pytest.approx(600.0 / 1140.0)
    assert (c2.creators, c2.views, c2.spend, c2.currency) == (1, 1000, None, None)


def test_mixed_currencies_are_not_summed() -> None:
    fees = dict(FEES)
    fees[("c1", "d")] = Terms(fee=10.0, currency="USD")
    board = build_board(CREATORS, fees, from_s=T0, to_s=T0 + HOUR)
    (summary,) = board.campaigns
    assert summary.currency == "mixed"
    assert (summary.spend, summary.cpa, summary.roas) == (None, None, None)
    assert {r.creator_id: r.currency for r in board.rows}["d"] == "USD"


def test_json_list_keeps_the_leaderboard_keys_and_round_trips() -> None:
    board = build_board(CREATORS, FEES, from_s=T0, to_s=T0 + HOUR, sort="cpa", limit=3)
    items = json.loads(json.dumps(board.rows_json()))
    assert isinstance(items, list)
    assert len(items) == 3
    first = items[0]
    # The earlier leaderboard item's keys stay (here from the aggregate), the board adds.
    for key in ("campaign_id", "creator_id", "handle", "tier", "windows", *METRICS):
        assert key in first
    assert first["creator_id"] == "c"
    assert first["rank"] == 1
    assert first["cpa"] == 10.0
    whole = json.loads(json.dumps(board.to_json()))
    assert whole["sort"] == "cpa"
    assert whole["creators"] == items
    assert whole["campaigns"][0]["campaign_id"] == "c1"
    again = board_from_json(whole)
    assert again.rows == board.rows
    assert again.campaigns == board.campaigns
    assert (again.from_s, again.to_s, again.sort) == (T0, T0 + HOUR, "cpa")


class FakeStore:
    """A store with one campaign's windows and contracts, or none."""

    def __init__(self, rows: list[dict[str, Any]], newest_s: int | None) -> None:
        self.rows = rows
        self.newest_s = newest_s
        self.asked: list[tuple[str | None, int]] = []

    def newest_window_end_s(self, campaign_id: str | None = None) -> int | None:
        return self.newest_s if campaign_id in (None, "c1") else None

    def campaign_known(self, campaign_id: str) -> bool:
        return campaign_id == "c1"

    def contracts(self, campaign_id: str | None = None) -> list[Any]:
        return []

    def leaderboard(
        self, campaign_id: str | None, last_s: int, limit: int, now_ms: int | None
    ) -> list[dict[str, Any]]:
        self.asked.append((campaign_id, last_s))
        return self.rows


def test_read_board_over_the_range_and_unknown_campaigns() -> None:
    store = FakeStore(CREATORS, newest_s=T0 + HOUR)
    board = read_board(store, last_s=HOUR, sort="views", limit=2)
    assert (board.from_s, board.to_s) == (T0, T0 + HOUR)
    assert order(board) == ["d", "c"]
    with pytest.raises(NoSuchCampaign, match="nope"):
        read_board(store, campaign="nope")
    assert read_board(FakeStore([], newest_s=None), campaign="c1").rows == ()


# -- drawn at a width ------------------------------------------------------------------


def wide_board() -> Board:
    long = [
        agg(
            f"creator-{i:02d}",
            handle=f"@a_rather_long_handle_{i:02d}",
            views=1000 + i,
            likes=50 + i,
            clicks=10,
            conversions=2,
            revenue_cents=10_000,
        )
        for i in range(5)
    ]
    fees = {("c1", r["creator_id"]): Terms(fee=100.0, currency="USD") for r in long}
    return build_board(long, fees, from_s=T0, to_s=T0 + HOUR, sort="roas")


@pytest.mark.parametrize("width", [80, 200])
def test_the_board_fits_its_width_and_keeps_whole_handles(width: int) -> None:
    text = render_text(screen(wide_board(), title="board"), width)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    for i in range(5):
        # Whole handles on one line, each with its rank and an uncut ER cell.
        (line,) = [ln for ln in lines if f"@a_rather_long_handle_{i:02d}" in ln]
        assert line.split()[0] == str(5 - i)
        assert f"5.{i}%" in line.split()
    assert "ROAS" in text  # the sort column always stays
    assert "USD" in text  # money says its currency


def test_80_columns_drop_low_priority_columns_200_keep_them() -> None:
    narrow = render_text(screen(wide_board(), title="board"), 80)
    wide = render_text(screen(wide_board(), title="board"), 200)
    assert "watch" in wide
    assert "tier" in wide
    assert "watch" not in narrow
    for header in ("ER", "ROAS", "views"):
        assert header in narrow
    # Ids are never truncated to an ellipsis.
    assert "…" not in narrow


def test_one_currency_goes_in_the_money_headers_mixed_ones_on_each_amount() -> None:
    one = render_text(
        screen(build_board(CREATORS, FEES, from_s=T0, to_s=T0 + HOUR), title="b"), 200
    )
    assert "CPA EUR" in one
    assert "spend EUR" in one  # the campaign table's header too
    assert "1,000 EUR" not in one
    fees = dict(FEES)
    fees[("c1", "d")] = Terms(fee=10.0, currency="USD")
    mixed = render_text(
        screen(build_board(CREATORS, fees, from_s=T0, to_s=T0 + HOUR), title="b"), 200
    )
    assert "CPA EUR" not in mixed
    assert "CPA USD" not in mixed
    # b paid 1000 EUR for 20 conversions; d 10 USD and no conversions; spend says its unit.
    (b_line,) = [ln for ln in mixed.splitlines() if ln.split()[1:2] == ["b"]]
    assert "50.00 EUR" in b_line
    assert "1,000 EUR" in b_line
    (d_line,) = [ln for ln in mixed.splitlines() if ln.split()[1:2] == ["d"]]
    assert "10.00 USD" in d_line


def test_progress_line_names_campaign_totals_and_leaders() -> None:
    board = build_board(CREATORS, FEES, from_s=T0, to_s=T0 + HOUR, sort="er")
    line = progress_line(board, {"records": 12})
    assert "records=12" in line
    assert "[c1] creators=4 views=11000 er=5.9% spend=1140.00 EUR cpa=47.50 roas=0.53x" in line
    assert "top by ER: a 20.0%, c 10.0%, b 5.0%" in line
    assert "\n" not in line


# -- alert badges ----------------------------------------------------------------------


def test_firing_alerts_become_badges_and_resolved_ones_do_not() -> None:
    from tests.support.webhook_samples import alert

    badges = alert_badges(
        [
            alert("a", campaign_id="c1"),
            alert("b", campaign_id="c1", status="resolved"),
            alert("c", campaign_id="c1", metric="ctr"),
            alert("c", campaign_id="c1", metric="views_per_minute"),
        ]
    )
    assert badges == {("c1", "a"): "▲ ER", ("c1", "c"): "▲ CTR,views/min"}
    board = build_board(CREATORS, FEES, from_s=T0, to_s=T0 + HOUR, alerts=badges)
    by_id = {r.creator_id: r.alert for r in board.rows}
    assert by_id == {"a": "▲ ER", "b": None, "c": "▲ CTR,views/min", "d": None}
    assert board.campaigns[0].alerts == 2
    narrow = render_text(screen(board, title="board"), 80)
    (line,) = [ln for ln in narrow.splitlines() if ln.split()[1:2] == ["a"]]
    assert "▲ ER" in line
    assert "alerts=2" in progress_line(board)
