"""Versioned migrations and the BI views they create, on a real engine.

The view tests use a small dataset whose every derived number is computed by hand
in the test (see the comments next to each expectation).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.metrics import METRICS
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import CreatorWindowRow
from sinks.clickhouse import ClickHouseSink, load_migrations, migrate, split_statements

T0_MS = int(datetime(2023, 6, 1, 0, 0, tzinfo=UTC).timestamp() * 1000)
T0_S = T0_MS // 1000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MAX_VIEWS = 2**53 - 1  # the upstream bound per creator window and metric
# The module, not the package's ``migrate`` function of the same name.
migrate_module = importlib.import_module("sinks.clickhouse.migrate")

TABLES = {
    "alert_deliveries",
    "alert_notifications",
    "alert_silences",
    "alerts",
    "campaign_contracts",
    "campaign_metrics",
    "creator_metrics",
    "creator_profiles",
    "dead_letters",
    "schema_migrations",
}
VIEWS = {
    "campaign_metrics_rates",
    "creator_last_1h",
    "creator_last_24h",
    "creator_metrics_rates",
    "creator_roi",
}


def window(
    creator: str, start_ms: int, size_s: int = 60, campaign: str = "camp1", **values: int
) -> CreatorWindowRow:
    return CreatorWindowRow(
        campaign, creator, size_s, start_ms, tuple(values.get(m, 0) for m in METRICS)
    )


def as_dicts(sink: ClickHouseSink, sql: str) -> list[dict[str, Any]]:
    """Rows as dicts, so expectations name their columns."""
    with sink.locked_client() as client:
        result = client.query(sql.replace("{database}", sink.database))
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


# -- pure: the files themselves ---------------------------------------------------------


def test_split_statements_on_line_ending_semicolons() -> None:
    sql = (
        "\n    -- a header comment; not a statement\n"
        "    CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory;\n"
        "    -- between statements\n"
        "    CREATE VIEW v AS SELECT 1;   \n"  # trailing blanks after ';' still end it
        "\n"
        "    -- trailing comment only\n"
    )
    assert split_statements(sql) == [
        "-- a header comment; not a statement\n"
        "    CREATE TABLE a (x String DEFAULT 'a;b') ENGINE = Memory",
        "-- between statements\n    CREATE VIEW v AS SELECT 1",
    ]


def test_packaged_migrations_are_ordered_and_idempotent_statements() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert [m.name for m in migrations] == [
        "core_tables",
        "bi_views",
        "dead_letter_payload_cut",
        "campaign_sums_uint128",
        "alert_outbox",
        "contract_flight",
    ]
    for migration in migrations:
        statements = migration.statements("db_x")
        assert statements
        for statement in statements:
            code = "\n".join(
                line for line in statement.splitlines() if not line.strip().startswith("--")
            ).strip()
            # Re-running a half-applied file must be safe (DDL is not transactional).
            idempotent = code.startswith(
                (
                    "CREATE TABLE IF NOT EXISTS db_x.",
                    "CREATE OR REPLACE VIEW db_x.",
                    "DROP TABLE IF EXISTS db_x.",  # 0005: rebuilds the never-written alerts
                )
            ) or (
                code.startswith("ALTER TABLE db_x.")
                and all(
                    "IF NOT EXISTS" in clause or "MODIFY COLUMN" in clause
                    for clause in code.split(",")
                )
            )
            assert idempotent, code
            assert "{database}" not in code


def table_columns(code: str) -> tuple[str, list[str]]:
    """The table a CREATE TABLE or ALTER TABLE names, and the columns it defines or
    modifies, in order."""
    lines = [line.strip() for line in code.splitlines()]
    table = lines[0].split()[-1]
    if lines[0].startswith("CREATE TABLE"):
        return table, [line.split()[0] for line in lines[lines.index("(") + 1 : lines.index(")")]]
    return table, [line.split()[2] for line in lines[1:] if line.startswith("MODIFY COLUMN")]


def test_every_metrics_column_list_in_the_table_ddl_is_metrics_in_order() -> None:
    # The sink names its columns from METRICS, so a table listing them in another order
    # would still work; it would no longer read as the contract does, nor guard its order.
    checked = []
    for migration in load_migrations():
        for statement in migration.statements("db"):
            code = "\n".join(
                line for line in statement.splitlines() if not line.strip().startswith("--")
            ).strip()
            if not code.startswith(("CREATE TABLE", "ALTER TABLE")):
                continue
            table, columns = table_columns(code)
            listed = [column for column in columns if column in METRICS]
            # Window-aggregate tables; others (alerts) may carry a metric as a figure.
            if listed and table.endswith("_metrics"):
                assert listed == list(METRICS), f"{migration.version}_{migration.name}: {table}"
                checked.append(table)
    assert checked == ["db.creator_metrics", "db.campaign_metrics", "db.campaign_metrics"]


# -- on a real engine ---------------------------------------------------------------------


@pytest.mark.clickhouse
def test_migrate_is_idempotent(clickhouse_url: str) -> None:
    with ClickHouseSink(clickhouse_url) as sink:
        assert migrate(sink) == ["0001", "0002", "0003", "0004", "0005", "0006"]
        assert migrate(sink) == []
        assert sink.query_rows(
            "SELECT version, name FROM {database}.schema_migrations FINAL ORDER BY version"
        ) == [
            ("0001", "core_tables"),
            ("0002", "bi_views"),
            ("0003", "dead_letter_payload_cut"),
            ("0004", "campaign_sums_uint128"),
            ("0005", "alert_outbox"),
            ("0006", "contract_flight"),
        ]
        objects = sink.query_rows(
            "SELECT name, engine FROM system.tables WHERE database = {db:String}",
            {"db": sink.database},
        )
        assert {name for name, engine in objects if engine == "View"} == VIEWS
        assert {name for name, engine in objects if engine != "View"} == TABLES


@pytest.mark.clickhouse
def test_migrate_with_a_bare_client_and_another_database(clickhouse_url: str) -> None:
    with ClickHouseSink(clickhouse_url) as sink:
        other = f"{sink.database}_other"
        try:
            with sink.locked_client() as client:
                assert migrate(client, other) == ["0001", "0002", "0003", "0004", "0005", "0006"]
                assert migrate(client, other) == []
            assert sink.query_rows(
                "SELECT count() FROM system.tables WHERE database = {db:String}", {"db": other}
            ) == [(len(TABLES | VIEWS),)]
        finally:
            with sink.locked_client() as client:
                client.command(f"DROP DATABASE IF EXISTS {other}")


@pytest.mark.clickhouse
def test_migrate_rejects_a_database_name_that_needs_quoting(clickhouse_url: str) -> None:
    with ClickHouseSink(clickhouse_url) as sink, pytest.raises(ValueError, match="identifier"):
        migrate(sink, "x; DROP DATABASE y")


# -- the BI views ---------------------------------------------------------------------


@pytest.mark.clickhouse
def test_rate_views_compute_rates_and_null_on_zero(clickhouse_sink: ClickHouseSink) -> None:
    clickhouse_sink.write_creator_windows(
        [
            window("alice", T0_MS, views=200, likes=20, comments=6, shares=4, saves=10,
                   watch_time_ms=1_500_000, completions=50, replays=10, clicks=16,
                   conversions=4, revenue_cents=12_000),
            # No views and no clicks: every rate must be NULL, not inf/NaN/0.
            window("bob", T0_MS, likes=3),
        ]
    )  # fmt: skip
    rates = as_dicts(
        clickhouse_sink,
        "SELECT * FROM {database}.creator_metrics_rates ORDER BY creator_id",
    )
    alice, bob = rates
    assert alice["engagements"] == 40
    assert alice["engagement_rate"] == pytest.approx(0.20)  # (20+6+4+10)/200
    assert alice["engagement_rate_tiktok"] == pytest.approx(0.15)  # (20+6+4)/200
    assert alice["ctr"] == pytest.approx(0.08)  # 16/200
    assert alice["conversion_rate"] == pytest.approx(0.25)  # 4/16
    assert alice["avg_watch_time_s"] == pytest.approx(7.5)  # 1500 s / 200
    assert alice["completion_rate"] == pytest.approx(0.25)  # 50/200
    assert alice["replay_rate"] == pytest.approx(0.05)  # 10/200
    assert alice["revenue"] == pytest.approx(120.0)
    assert alice["window_start"] == datetime.fromtimestamp(T0_S, UTC)
    assert bob["engagements"] == 3
    for column in ("engagement_rate", "engagement_rate_tiktok", "ctr", "conversion_rate",
                   "avg_watch_time_s", "completion_rate", "replay_rate"):  # fmt: skip
        assert bob[column] is None, column

    (campaign,) = as_dicts(clickhouse_sink, "SELECT * FROM {database}.campaign_metrics_rates")
    assert (campaign["creators"], campaign["views"], campaign["engagements"]) == (2, 200, 43)
    assert campaign["engagement_rate"] == pytest.approx(43 / 200)
    assert campaign["engagement_rate_tiktok"] == pytest.approx(33 / 200)
    assert campaign["ctr"] == pytest.approx(16 / 200)
    assert campaign["conversion_rate"] == pytest.approx(4 / 16)
    assert campaign["avg_watch_time_s"] == pytest.approx(7.5)
    assert campaign["revenue"] == pytest.approx(120.0)


@pytest.mark.clickhouse
def test_roi_view_uses_hourly_windows_and_known_fees(clickhouse_sink: ClickHouseSink) -> None:
    sink = clickhouse_sink
    sink.write_creator_windows(
        [
            # alice, two hours: 2000 views, 160 engagements, 50 clicks, 10 conversions,
            # 40 000 cents = 400.00 revenue.
            window("alice", T0_MS, 3600, views=1000, likes=50, comments=20, shares=10,
                   saves=20, clicks=40, conversions=5, revenue_cents=25_000),
            window("alice", T0_MS + HOUR_MS, 3600, views=1000, likes=30, comments=10,
                   shares=10, saves=10, clicks=10, conversions=5, revenue_cents=15_000),
            # A 60 s window must not be added on top of the hourly totals.
            window("alice", T0_MS, 60, views=777, likes=77),
            # bob: no contract.  carol: no conversions.  dave: a zero fee.
            window("bob", T0_MS, 3600, views=500, likes=5),
            window("carol", T0_MS, 3600, views=400, likes=20, clicks=4),
            window("dave", T0_MS, 3600, views=100, likes=10, revenue_cents=1_000),
        ]
    )  # fmt: skip
    sink.write_contracts(
        [
            CampaignContract(campaign_id="camp1", creator_id="alice", fee=999.0),
            CampaignContract(campaign_id="camp1", creator_id="carol", fee=100.0, currency="EUR"),
            CampaignContract(campaign_id="camp1", creator_id="dave", fee=0.0),
            # A contract in another campaign must not leak into camp1.
            CampaignContract(campaign_id="camp2", creator_id="bob", fee=50.0),
        ]
    )
    sink.write_contracts([CampaignContract(campaign_id="camp1", creator_id="alice", fee=200.0)])
    sink.write_profiles(
        [CreatorProfile(creator_id="alice", handle="@al", follower_count=2_000_000)]
    )

    roi = {r["creator_id"]: r for r in as_dicts(sink, "SELECT * FROM {database}.creator_roi")}
    assert set(roi) == {"alice", "bob", "carol", "dave"}
    alice = roi["alice"]
    assert (alice["views"], alice["engagements"], alice["conversions"]) == (2000, 160, 10)
    assert (alice["handle"], alice["tier"]) == ("@al", "mega")
    assert alice["first_window_start"] == datetime.fromtimestamp(T0_S, UTC)
    assert alice["last_window_end"] == datetime.fromtimestamp(T0_S + 7200, UTC)
    assert (alice["fee"], alice["currency"]) == (200.0, "USD")  # the newest contract
    assert alice["revenue"] == pytest.approx(400.0)
    assert alice["engagement_rate"] == pytest.approx(160 / 2000)
    assert alice["cost_per_engagement"] == pytest.approx(1.25)  # 200 / 160
    assert alice["cost_per_view"] == pytest.approx(0.1)  # 200 / 2000
    assert alice["cost_per_acquisition"] == pytest.approx(20.0)  # 200 / 10
    assert alice["roas"] == pytest.approx(2.0)  # 400 / 200

    bob = roi["bob"]
    assert (bob["views"], bob["handle"], bob["tier"]) == (500, None, None)
    for column in ("fee", "currency", "cost_per_engagement", "cost_per_view",
                   "cost_per_acquisition", "roas"):  # fmt: skip
        assert bob[column] is None, column

    carol = roi["carol"]
    assert carol["cost_per_engagement"] == pytest.approx(5.0)  # 100 / 20
    assert carol["cost_per_view"] == pytest.approx(0.25)  # 100 / 400
    assert carol["cost_per_acquisition"] is None  # no conversions
    assert carol["roas"] == 0.0  # no revenue on a real fee is a real 0
    assert carol["currency"] == "EUR"

    dave = roi["dave"]
    assert dave["fee"] == 0.0
    assert dave["cost_per_engagement"] == 0.0
    assert dave["roas"] is None  # revenue / a zero fee


@pytest.mark.clickhouse
def test_rolling_views_are_relative_to_the_newest_window(clickhouse_sink: ClickHouseSink) -> None:
    sink = clickhouse_sink
    newest = T0_MS + 5 * HOUR_MS  # start of the newest 60 s window (ends 1 min later)
    newest_hour = T0_MS + 30 * HOUR_MS  # start of the newest 3600 s window
    sink.write_creator_windows(
        [
            # Last hour = window_start >= newest + 1 min - 60 min.
            window("alice", newest, views=100, likes=10, clicks=4, conversions=1),
            window("alice", newest - 59 * MINUTE_MS, views=50, likes=5, watch_time_ms=60_000),
            window("alice", newest - 60 * MINUTE_MS, views=1_000_000),  # just outside
            window("bob", newest - 30 * MINUTE_MS, views=10),
            window("carol", T0_MS, views=5),  # hours older than the newest: not in 1 h
            # Last 24 h = window_start >= newest_hour + 1 h - 24 h.
            window("alice", newest_hour, 3600, views=300, saves=30),
            window("alice", newest_hour - 23 * HOUR_MS, 3600, views=700, saves=20),
            window("alice", newest_hour - 24 * HOUR_MS, 3600, views=9_999_999),  # outside
            window("bob", newest_hour - 2 * HOUR_MS, 3600, views=40),
        ]
    )  # fmt: skip
    sink.write_profiles([CreatorProfile(creator_id="bob", handle="@bob", follower_count=5_000)])

    hour = {r["creator_id"]: r for r in as_dicts(sink, "SELECT * FROM {database}.creator_last_1h")}
    assert set(hour) == {"alice", "bob"}
    alice = hour["alice"]
    assert (alice["windows"], alice["views"], alice["likes"], alice["clicks"]) == (2, 150, 15, 4)
    assert alice["first_window_start"] == datetime.fromtimestamp(
        (newest - 59 * MINUTE_MS) // 1000, UTC
    )
    assert alice["last_window_end"] == datetime.fromtimestamp((newest + MINUTE_MS) // 1000, UTC)
    assert alice["engagement_rate"] == pytest.approx(15 / 150)
    assert alice["ctr"] == pytest.approx(4 / 150)
    assert alice["conversion_rate"] == pytest.approx(1 / 4)
    assert alice["avg_watch_time_s"] == pytest.approx(60 / 150)
    assert (alice["handle"], alice["tier"]) == (None, None)
    bob = hour["bob"]
    assert (bob["views"], bob["handle"], bob["tier"]) == (10, "@bob", "nano")
    assert bob["conversion_rate"] is None

    day = {r["creator_id"]: r for r in as_dicts(sink, "SELECT * FROM {database}.creator_last_24h")}
    assert set(day) == {"alice", "bob"}
    assert (day["alice"]["windows"], day["alice"]["views"], day["alice"]["saves"]) == (2, 1000, 50)
    assert day["alice"]["engagement_rate"] == pytest.approx(50 / 1000)
    assert day["alice"]["engagement_rate_tiktok"] == 0.0
    assert day["bob"]["views"] == 40


@pytest.mark.clickhouse
def test_views_work_on_empty_tables(clickhouse_sink: ClickHouseSink) -> None:
    for view in sorted(VIEWS):
        assert clickhouse_sink.query_rows(f"SELECT count() FROM {{database}}.{view}") == [(0,)]


# -- sums past 2^64 (migration 0004) ------------------------------------------------------


@pytest.mark.clickhouse
def test_a_campaign_of_3000_creators_at_the_bound_sums_exactly(
    clickhouse_sink: ClickHouseSink,
) -> None:
    sink = clickhouse_sink
    creators = 3000
    sink.write_creator_windows(
        [window(f"c-{i:04d}", T0_MS, views=MAX_VIEWS, likes=MAX_VIEWS) for i in range(creators)]
    )
    total = creators * MAX_VIEWS
    assert total > 2**64  # what a UInt64 sum wrapped silently
    assert sink.query_rows(
        "SELECT creators, views, likes, version FROM {database}.campaign_metrics FINAL"
    ) == [(creators, total, total, 2 * total)]
    assert sink.query_rows("SELECT views, engagements FROM {database}.campaign_metrics_rates") == [
        (total, total)
    ]


@pytest.mark.clickhouse
def test_bi_views_and_the_leaderboard_sum_creator_windows_past_2_64(
    clickhouse_sink: ClickHouseSink,
) -> None:
    sink = clickhouse_sink
    big = 2**63  # a stored creator window (and its version) holds up to 2^64 - 1
    sink.write_creator_windows(
        [window("c", T0_MS + h * HOUR_MS, 3600, views=big, likes=big // 2) for h in range(3)]
        + [window("c", T0_MS + m * MINUTE_MS, 60, views=big) for m in range(4)]
    )
    assert sink.query_rows("SELECT views, engagements FROM {database}.creator_roi") == [
        (3 * big, 3 * (big // 2))
    ]
    assert sink.query_rows("SELECT views FROM {database}.creator_last_1h") == [(4 * big,)]
    assert sink.query_rows("SELECT views, likes FROM {database}.creator_last_24h") == [
        (3 * big, 3 * (big // 2))
    ]
    (leader,) = sink.leaderboard(last_s=3600)
    assert leader.views == 4 * big


@pytest.mark.clickhouse
def test_migration_0004_keeps_existing_campaign_rows(
    clickhouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ClickHouseSink(clickhouse_url) as sink:
        packaged = migrate_module.load_migrations()
        monkeypatch.setattr(migrate_module, "load_migrations", lambda: packaged[:3])
        assert migrate(sink) == ["0001", "0002", "0003"]
        sink.write_creator_windows(
            [window("a", T0_MS, views=5, likes=1), window("b", T0_MS, views=7)]
        )
        monkeypatch.undo()
        assert migrate(sink) == ["0004", "0005", "0006"]
        assert sink.query_rows(
            "SELECT views, likes, version, toTypeName(version) "
            "FROM {database}.campaign_metrics FINAL"
        ) == [(12, 1, 13, "UInt128")]
        sink.write_creator_windows([window(f"c-{i}", T0_MS, views=MAX_VIEWS) for i in range(3000)])
        assert sink.query_rows("SELECT views FROM {database}.campaign_metrics FINAL") == [
            (12 + 3000 * MAX_VIEWS,)
        ]


@pytest.mark.clickhouse
def test_migration_0006_adds_contract_flights_and_keeps_old_contracts(
    clickhouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ClickHouseSink(clickhouse_url) as sink:
        packaged = migrate_module.load_migrations()
        monkeypatch.setattr(migrate_module, "load_migrations", lambda: packaged[:5])
        assert migrate(sink) == ["0001", "0002", "0003", "0004", "0005"]
        # A contract written before flights existed (the columns of 0001).
        sink.query_rows(
            "INSERT INTO {database}.campaign_contracts (campaign_id, creator_id, fee, currency, "
            "updated_at) VALUES ('camp1', 'old', 1200, 'EUR', now())"
        )
        monkeypatch.undo()
        assert migrate(sink) == ["0006"]
        start = datetime(2023, 6, 1, tzinfo=UTC)
        end = datetime(2023, 6, 11, tzinfo=UTC)
        sink.write_contracts(
            [
                CampaignContract(
                    campaign_id="camp1",
                    creator_id="new",
                    fee=2400,
                    currency="USD",
                    flight_start=start,
                    flight_end=end,
                )
            ]
        )
        by_creator = {c.creator_id: c for c in sink.contracts("camp1")}
        old, new = by_creator["old"], by_creator["new"]
        assert (old.fee, old.currency, old.flight_start_s, old.flight_end_s) == (
            1200.0,
            "EUR",
            None,
            None,
        )
        assert (new.fee, new.currency) == (2400.0, "USD")
        assert (new.flight_start_s, new.flight_end_s) == (
            int(start.timestamp()),
            int(end.timestamp()),
        )
        assert sink.contracts("other") == []
        assert sink.campaign_known("camp1")
        assert not sink.campaign_known("other")
