"""ClickHouseSink against a real engine (chDB in-process, or a server from the env).

Expected values are computed in the tests (by hand or from the rows the test wrote),
never read back from the table under test.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow, DeadLetter
from sinks.base import Refused
from sinks.clickhouse import ClickHouseSink, LeaderRow

pytestmark = pytest.mark.clickhouse

# Event times far from the wall clock: nothing may depend on "now".
T0_MS = int(datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def counts(**values: int) -> tuple[int, ...]:
    unknown = set(values) - set(METRICS)
    assert not unknown, unknown
    return tuple(values.get(m, 0) for m in METRICS)


def window(
    creator: str,
    start_ms: int,
    campaign: str = "camp1",
    size_s: int = 60,
    **values: int,
) -> CreatorWindowRow:
    return CreatorWindowRow(campaign, creator, size_s, start_ms, counts(**values))


def creator_rows(sink: ClickHouseSink) -> list[tuple[Any, ...]]:
    return sink.query_rows(
        f"""
        SELECT campaign_id, creator_id, window_size_s, toUnixTimestamp(window_start),
               toUnixTimestamp(window_end), {", ".join(METRICS)}, version
        FROM {{database}}.creator_metrics FINAL
        ORDER BY campaign_id, creator_id, window_size_s, window_start
        """
    )


def campaign_rows(sink: ClickHouseSink) -> list[tuple[Any, ...]]:
    return sink.query_rows(
        f"""
        SELECT campaign_id, window_size_s, toUnixTimestamp(window_start),
               toUnixTimestamp(window_end), creators, {", ".join(METRICS)}, version
        FROM {{database}}.campaign_metrics FINAL
        ORDER BY campaign_id, window_size_s, window_start
        """
    )


# -- creator_metrics -----------------------------------------------------------------


def test_rewrites_of_a_window_leave_one_row_with_the_largest_totals(
    clickhouse_sink: ClickHouseSink,
) -> None:
    small = window("alice", T0_MS, views=10, likes=1)
    large = window("alice", T0_MS, views=25, likes=3, clicks=2)
    clickhouse_sink.write_creator_windows([small])
    clickhouse_sink.write_creator_windows([large])
    # A late, stale copy of the smaller totals (a replay) must not win.
    clickhouse_sink.write_creator_windows([small])

    start_s = T0_MS // 1000
    assert creator_rows(clickhouse_sink) == [
        ("camp1", "alice", 60, start_s, start_s + 60, *large.counts, large.version)
    ]


def test_reverse_order_and_duplicates_within_a_batch_keep_the_largest(
    clickhouse_sink: ClickHouseSink,
) -> None:
    newest = window("bob", T0_MS, views=300, shares=7, watch_time_ms=90_000)
    older = window("bob", T0_MS, views=120, shares=2, watch_time_ms=30_000)
    clickhouse_sink.write_creator_windows([newest])
    clickhouse_sink.write_creator_windows([older, older])
    clickhouse_sink.write_creator_windows([older, newest, older])

    rows = creator_rows(clickhouse_sink)
    assert len(rows) == 1
    assert rows[0][5:] == (*newest.counts, newest.version)


def test_updated_at_is_set_by_the_sink(clickhouse_sink: ClickHouseSink) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    clickhouse_sink.write_creator_windows([window("alice", T0_MS, views=1)])
    ((updated_at,),) = clickhouse_sink.query_rows(
        "SELECT updated_at FROM {database}.creator_metrics FINAL"
    )
    assert before <= updated_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_row_with_the_wrong_number_of_counts_is_refused_before_writing(
    clickhouse_sink: ClickHouseSink,
) -> None:
    good = window("alice", T0_MS, views=1)
    bad = CreatorWindowRow("camp1", "bob", 60, T0_MS, (1, 2, 3))
    # A refusal (the rows are wrong), so a writer isolates the row instead of retrying.
    with pytest.raises(Refused, match=r"creator_metrics: .* has 3 counts, expected 11"):
        clickhouse_sink.write_creator_windows([good, bad])
    assert creator_rows(clickhouse_sink) == []


# -- campaign_metrics ----------------------------------------------------------------


def test_campaign_totals_equal_the_sum_of_their_creators_after_rewrites(
    clickhouse_sink: ClickHouseSink,
) -> None:
    # The test's own truth: the latest (largest) totals per creator window.
    latest: dict[tuple[str, str, int, int], CreatorWindowRow] = {}

    def write(rows: list[CreatorWindowRow]) -> None:
        clickhouse_sink.write_creator_windows(rows)
        for r in rows:
            key = (r.campaign_id, r.creator_id, r.window_size_s, r.window_start_ms)
            if key not in latest or r.version >= latest[key].version:
                latest[key] = r

    t1 = T0_MS + MINUTE_MS
    write(
        [
            window("alice", T0_MS, views=10, likes=2, revenue_cents=500),
            window("bob", T0_MS, views=5, clicks=1),
            window("alice", t1, views=7),
            window("alice", T0_MS, size_s=3600, views=17, likes=2, revenue_cents=500),
            window("carol", T0_MS, campaign="camp2", views=99, saves=9),
        ]
    )
    write(
        [
            window("bob", T0_MS, views=8, clicks=3, conversions=1),  # bob grows
            window("dave", T0_MS, views=4, comments=1),  # a new creator joins the window
            window("bob", t1, views=2),
        ]
    )
    # An identical re-write (a retried batch) and a stale one change nothing.
    write([window("dave", T0_MS, views=4, comments=1), window("alice", t1, views=3)])
    snapshot = campaign_rows(clickhouse_sink)
    write([window("dave", T0_MS, views=4, comments=1)])
    assert campaign_rows(clickhouse_sink) == snapshot

    sums: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0] * (len(METRICS) + 2))
    for r in latest.values():
        acc = sums[(r.campaign_id, r.window_size_s, r.window_start_ms)]
        acc[0] += 1  # creators
        for i, c in enumerate(r.counts):
            acc[1 + i] += c
        acc[-1] += r.version
    expected = [
        (campaign, size, start_ms // 1000, start_ms // 1000 + size, *acc)
        for (campaign, size, start_ms), acc in sorted(sums.items())
    ]
    assert campaign_rows(clickhouse_sink) == expected
    # Spot-check one row by hand: camp1, 60 s, T0 = alice 10 + bob 8 + dave 4 views.
    camp1_t0 = next(r for r in expected if r[:3] == ("camp1", 60, T0_MS // 1000))
    assert camp1_t0[4:6] == (3, 22)


def test_campaign_refresh_only_touches_the_written_keys(clickhouse_sink: ClickHouseSink) -> None:
    clickhouse_sink.write_creator_windows(
        [window("alice", T0_MS, views=1), window("carol", T0_MS, campaign="camp2", views=2)]
    )
    ((camp2_updated_at,),) = clickhouse_sink.query_rows(
        "SELECT updated_at FROM {database}.campaign_metrics FINAL WHERE campaign_id = 'camp2'"
    )
    clickhouse_sink.write_creator_windows([window("alice", T0_MS, views=5)])
    assert clickhouse_sink.query_rows(
        "SELECT updated_at FROM {database}.campaign_metrics FINAL WHERE campaign_id = 'camp2'"
    ) == [(camp2_updated_at,)]
    assert clickhouse_sink.query_rows(
        "SELECT count() FROM {database}.campaign_metrics WHERE campaign_id = 'camp2'"
    ) == [(1,)]


def test_ids_with_quotes_and_backslashes_are_data_not_sql(clickhouse_sink: ClickHouseSink) -> None:
    campaign = "it's\\'); DROP TABLE x; --"
    clickhouse_sink.write_creator_windows([window("o'hara", T0_MS, campaign=campaign, views=3)])
    assert clickhouse_sink.query_rows(
        "SELECT campaign_id, views FROM {database}.campaign_metrics FINAL"
    ) == [(campaign, 3)]
    rows = clickhouse_sink.leaderboard(campaign_id=campaign)
    assert [(r.creator_id, r.views) for r in rows] == [("o'hara", 3)]


# -- dead letters and reference data ---------------------------------------------------


def test_replayed_dead_letters_collapse(clickhouse_sink: ClickHouseSink) -> None:
    first_seen = datetime(2024, 3, 1, 12, 0, 1, 250_000, tzinfo=UTC)
    letters = [
        DeadLetter(first_seen, "post-stats", 0, 41, 0, "bad_json: EOF", b'{"views": '),
        DeadLetter(first_seen, "post-stats", 0, 42, 3, "late", b'{"event_id": "e1"}'),
    ]
    clickhouse_sink.write_dead_letters(letters)
    replayed = [DeadLetter(first_seen + timedelta(hours=1), *astuple_tail(d)) for d in letters]
    clickhouse_sink.write_dead_letters(replayed)

    rows = clickhouse_sink.query_rows(
        "SELECT topic, partition, offset, idx, reason, payload FROM {database}.dead_letters "
        "FINAL ORDER BY offset"
    )
    assert rows == [
        ("post-stats", 0, 41, 0, "bad_json: EOF", '{"views": '),
        ("post-stats", 0, 42, 3, "late", '{"event_id": "e1"}'),
    ]


def astuple_tail(letter: DeadLetter) -> tuple[Any, ...]:
    return (
        letter.topic,
        letter.partition,
        letter.offset,
        letter.idx,
        letter.reason,
        letter.payload,
    )


def test_a_cut_dead_letter_keeps_the_size_and_hash_of_its_whole_payload(
    clickhouse_sink: ClickHouseSink,
) -> None:
    payload = b"[" + b"\x01" * 900_000
    clickhouse_sink.write_dead_letters(
        [DeadLetter(datetime.now(UTC), "t", 0, 1, 0, "bad_json: x", payload)]
    )
    assert clickhouse_sink.query_rows(
        "SELECT length(payload), payload_size, payload_sha256 FROM {database}.dead_letters FINAL"
    ) == [(64 * 1024, len(payload), hashlib.sha256(payload).hexdigest())]


def test_dead_letter_time_is_stored_as_utc_millis(clickhouse_sink: ClickHouseSink) -> None:
    aware = datetime(2024, 3, 1, 14, 0, 0, 123_000, tzinfo=UTC)
    naive_means_utc = datetime(2024, 3, 1, 14, 0, 0, 456_000)  # noqa: DTZ001 - on purpose
    clickhouse_sink.write_dead_letters(
        [
            DeadLetter(aware, "t", 1, 1, 0, "r", b"x"),
            DeadLetter(naive_means_utc, "t", 1, 2, 0, "r", b"y"),
        ]
    )
    assert clickhouse_sink.query_rows(
        "SELECT toUnixTimestamp64Milli(received_at) FROM {database}.dead_letters FINAL "
        "ORDER BY offset"
    ) == [(int(aware.timestamp() * 1000),), (int(aware.timestamp() * 1000) + 333,)]


def test_newest_profile_and_contract_win(clickhouse_sink: ClickHouseSink) -> None:
    clickhouse_sink.write_profiles(
        [CreatorProfile(creator_id="alice", handle="@alice", follower_count=9_000, niche="food")]
    )
    clickhouse_sink.write_profiles(
        [CreatorProfile(creator_id="alice", handle="@alice.eats", follower_count=12_000)]
    )
    clickhouse_sink.write_contracts(
        [CampaignContract(campaign_id="camp1", creator_id="alice", fee=100)]
    )
    clickhouse_sink.write_contracts(
        [CampaignContract(campaign_id="camp1", creator_id="alice", fee=150.5, currency="EUR")]
    )
    assert clickhouse_sink.query_rows(
        "SELECT creator_id, handle, follower_count, niche, tier "
        "FROM {database}.creator_profiles FINAL"
    ) == [("alice", "@alice.eats", 12_000, "", "micro")]
    assert clickhouse_sink.query_rows(
        "SELECT campaign_id, creator_id, fee, currency FROM {database}.campaign_contracts FINAL"
    ) == [("camp1", "alice", 150.5, "EUR")]


def test_insert_rows_writes_other_tables(clickhouse_sink: ClickHouseSink) -> None:
    fired = datetime(2024, 3, 1, 12, 5, tzinfo=UTC)
    columns = ("alert_id", "fired_at", "rule", "campaign_id", "creator_id", "window_size_s",
               "window_start", "metric", "value", "baseline", "payload")  # fmt: skip
    row = ["a1", fired, "er_vs_cohort", "camp1", "alice", 60, fired, "engagement_rate", 0.2,
           0.05, "{}"]  # fmt: skip
    clickhouse_sink.insert_rows("alerts", columns, [row])
    clickhouse_sink.insert_rows("alerts", columns, [row])
    assert clickhouse_sink.query_rows(
        "SELECT alert_id, rule, value, baseline FROM {database}.alerts FINAL"
    ) == [("a1", "er_vs_cohort", 0.2, 0.05)]
    with pytest.raises(ValueError, match="table name"):
        clickhouse_sink.insert_rows("alerts; DROP", columns, [row])


# -- leaderboard ---------------------------------------------------------------------


def leaders(rows: list[LeaderRow]) -> list[tuple[str, str, int]]:
    return [(r.campaign_id, r.creator_id, r.views) for r in rows]


def test_leaderboard_ranks_by_views_relative_to_the_newest_data(
    clickhouse_sink: ClickHouseSink,
) -> None:
    sink = clickhouse_sink
    assert sink.leaderboard() == []
    newest = T0_MS + 2 * HOUR_MS  # newest 60 s window starts here, ends 1 min later
    sink.write_profiles(
        [CreatorProfile(creator_id="alice", handle="@alice", follower_count=50_000)]
    )
    sink.write_creator_windows(
        [
            # alice: two windows inside the last hour, one just outside it.
            window("alice", newest, views=100, likes=8, comments=2, shares=1, saves=1,
                   watch_time_ms=400_000, clicks=5, conversions=1, revenue_cents=2_500),
            window("alice", newest - 59 * MINUTE_MS, views=50, likes=2, clicks=5),
            window("alice", newest - 60 * MINUTE_MS, views=10_000),
            # bob: more views in total, but all of them in the last 10 minutes.
            window("bob", newest - 5 * MINUTE_MS, views=200, clicks=0),
            # carol in another campaign; hourly windows never count on the board.
            window("carol", newest, campaign="camp2", views=120, likes=12),
            window("alice", T0_MS + HOUR_MS, size_s=3600, views=99_999),
        ]
    )  # fmt: skip

    board = sink.leaderboard()
    assert leaders(board) == [
        ("camp1", "bob", 200),
        ("camp1", "alice", 150),
        ("camp2", "carol", 120),
    ]
    alice = board[1]
    assert (alice.handle, alice.tier, alice.windows) == ("@alice", "micro", 2)
    assert (alice.likes, alice.comments, alice.shares, alice.saves) == (10, 2, 1, 1)
    assert (alice.watch_time_ms, alice.clicks, alice.conversions) == (400_000, 10, 1)
    assert alice.revenue_cents == 2_500
    assert alice.revenue == 25.0
    assert alice.engagements == 14
    assert alice.engagement_rate == pytest.approx(14 / 150)
    assert alice.ctr == pytest.approx(10 / 150)
    assert alice.avg_watch_time_s == pytest.approx(400 / 150)
    assert alice.conversion_rate == pytest.approx(1 / 10)
    bob = board[0]
    assert (bob.handle, bob.tier) == (None, None)
    assert bob.conversion_rate is None  # no clicks: no rate, not 0 and not an error
    assert bob.ctr == 0.0

    assert leaders(sink.leaderboard(limit=1)) == [("camp1", "bob", 200)]
    assert leaders(sink.leaderboard(campaign_id="camp2")) == [("camp2", "carol", 120)]
    assert sink.leaderboard(campaign_id="nope") == []
    # A shorter range drops alice's older window.
    assert leaders(sink.leaderboard(last_s=30 * 60)) == [
        ("camp1", "bob", 200),
        ("camp2", "carol", 120),
        ("camp1", "alice", 100),
    ]
    # An explicit now: the hour before T0 + 1 h + 1 min holds alice's 10 000 views only.
    past = sink.leaderboard(now_ms=newest - 59 * MINUTE_MS)
    assert leaders(past) == [("camp1", "alice", 10_000)]
    # Windows starting at or after now are not in the past yet.
    assert sink.leaderboard(now_ms=newest - 60 * MINUTE_MS) == []


def test_leaderboard_default_now_is_per_campaign(clickhouse_sink: ClickHouseSink) -> None:
    # camp_old ended long before camp_new's data: its own board still shows it.
    clickhouse_sink.write_creator_windows(
        [
            window("alice", T0_MS, campaign="camp_old", views=5),
            window("bob", T0_MS + 48 * HOUR_MS, campaign="camp_new", views=7),
        ]
    )
    assert leaders(clickhouse_sink.leaderboard()) == [("camp_new", "bob", 7)]
    assert leaders(clickhouse_sink.leaderboard(campaign_id="camp_old")) == [
        ("camp_old", "alice", 5)
    ]


def test_leaderboard_rejects_nonsense(clickhouse_sink: ClickHouseSink) -> None:
    with pytest.raises(ValueError, match="last_s"):
        clickhouse_sink.leaderboard(last_s=0)
    with pytest.raises(ValueError, match="limit"):
        clickhouse_sink.leaderboard(limit=0)


# -- open windows (the embedded broker's baseline) ----------------------------------------


def test_window_totals_are_the_newest_totals_of_windows_ending_after_the_horizon(
    clickhouse_sink: ClickHouseSink,
) -> None:
    sink = clickhouse_sink
    sink.write_creator_windows(
        [
            window("alice", T0_MS, views=10, likes=2),
            window("alice", T0_MS + MINUTE_MS, views=4),
            window("bob", T0_MS + MINUTE_MS, size_s=3600, views=7, revenue_cents=99),
        ]
    )
    sink.write_creator_windows([window("alice", T0_MS + MINUTE_MS, views=6, clicks=1)])
    # alice's first window ends at T0 + 1 min: not after a horizon there.
    assert sink.window_totals(ending_after_ms=T0_MS + MINUTE_MS) == {
        ("camp1", "alice", 60, T0_MS + MINUTE_MS): counts(views=6, clicks=1),
        ("camp1", "bob", 3600, T0_MS + MINUTE_MS): counts(views=7, revenue_cents=99),
    }
    assert len(sink.window_totals(ending_after_ms=T0_MS + MINUTE_MS - 1)) == 3
    assert sink.window_totals(ending_after_ms=T0_MS + MINUTE_MS + HOUR_MS) == {}


# -- lifecycle and threads -----------------------------------------------------------


def test_a_writer_and_a_reader_thread_share_the_sink(clickhouse_sink: ClickHouseSink) -> None:
    errors: list[BaseException] = []
    rounds = 25
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(1, rounds + 1):
                clickhouse_sink.write_creator_windows(
                    [window("alice", T0_MS, views=i), window("bob", T0_MS, views=2 * i)]
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                board = clickhouse_sink.leaderboard()
                # Never a half-written state: bob always has exactly twice alice's views.
                if board:
                    by_creator = {r.creator_id: r.views for r in board}
                    assert by_creator["bob"] == 2 * by_creator["alice"], by_creator
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert leaders(clickhouse_sink.leaderboard()) == [
        ("camp1", "bob", 2 * rounds),
        ("camp1", "alice", rounds),
    ]


def test_start_and_close_are_idempotent(clickhouse_url: str) -> None:
    sink = ClickHouseSink(clickhouse_url)
    sink.start()
    sink.start()
    assert sink.started
    assert sink.query_rows("SELECT 1 + {n:UInt8}", {"n": 1}) == [(2,)]
    sink.close()
    sink.close()
    assert not sink.started
    with pytest.raises(RuntimeError, match="not started"):
        sink.query_rows("SELECT 1")
    # Restartable, and usable as a context manager.
    with sink:
        assert sink.query_rows("SELECT 3") == [(3,)]
    assert not sink.started
