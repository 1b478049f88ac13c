"""ClickHouse URL parsing (pure) and what a sink does before start(): no I/O here."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from sinks.clickhouse import ClickHouseSink, ClickHouseTarget, is_refusal, parse_clickhouse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://user:secret@ch.example:8124/analytics",
            ClickHouseTarget(
                kind="http",
                database="analytics",
                host="ch.example",
                port=8124,
                username="user",
                password="secret",
            ),
        ),
        (
            "http://localhost",
            ClickHouseTarget(kind="http", database="creatorpulse", host="localhost", port=8123),
        ),
        (
            "https://ch.example/",
            ClickHouseTarget(
                kind="http", database="creatorpulse", host="ch.example", port=8443, secure=True
            ),
        ),
        (
            # Percent-encoded credentials are decoded; the scheme is case-insensitive.
            "HTTPS://bi%40corp:p%3Ass%2Fw@10.0.0.5:443/cp_2",
            ClickHouseTarget(
                kind="http",
                database="cp_2",
                host="10.0.0.5",
                port=443,
                username="bi@corp",
                password="p:ss/w",
                secure=True,
            ),
        ),
        (
            "chdb:///var/lib/creatorpulse",
            ClickHouseTarget(kind="chdb", database="creatorpulse", path="/var/lib/creatorpulse"),
        ),
        (
            "chdb:///tmp/store/?database=test_1",
            ClickHouseTarget(kind="chdb", database="test_1", path="/tmp/store"),
        ),
    ],
)
def test_parses_supported_forms(url: str, expected: ClickHouseTarget) -> None:
    assert parse_clickhouse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "ClickHouse URL is empty"),
        ("   ", "ClickHouse URL is empty"),
        ("ftp://host/db", "has scheme 'ftp': use http://, https:// or chdb://"),
        ("localhost:8123", "has scheme 'localhost'"),
        ("/var/lib/store", "has scheme none"),
        ("clickhouse://host:9000/db", "has scheme 'clickhouse'"),
        ("http://host:abc/db", "port 'abc' is not a number between 1 and 65535"),
        ("http://host:70000/db", "port '70000' is not a number between 1 and 65535"),
        ("http://host:0/db", "port must be between 1 and 65535"),
        ("http:///db", "has no host"),
        ("http://host/a/b", "the path must be a single database name"),
        ("http://host/my-db", "database name 'my-db' is not a plain identifier"),
        ("http://host/1db", "database name '1db' is not a plain identifier"),
        ("http://host/db?database=x", "query parameters are not supported for http"),
        ("chdb://", "has no data directory"),
        ("chdb:///", "has no data directory"),
        ("chdb://data/store", "use three slashes"),
        ("chdb:relative/store", "the chdb path must be absolute"),
        ("chdb:///tmp/s?db=x", r"unsupported query parameter\(s\) db"),
        ("chdb:///tmp/s?database=a;drop", "database name 'a;drop' is not a plain identifier"),
        ("chdb:///tmp/s?database=a&database=b", "give \\?database= once"),
    ],
)
def test_rejects_with_a_message_naming_the_fix(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_clickhouse_url(url)


def test_password_stays_out_of_repr_and_messages() -> None:
    target = parse_clickhouse_url("https://bi:hunter2@ch.example/cp")
    assert "hunter2" not in repr(target)
    assert "hunter2" not in target.display_url()
    assert target.display_url() == "https://bi:***@ch.example:8443/cp"
    with pytest.raises(ValueError, match="is not a number") as excinfo:
        parse_clickhouse_url("http://bi:hunter2@ch.example:port/cp")
    assert "hunter2" not in str(excinfo.value)
    sink = ClickHouseSink("http://bi:hunter2@ch.example/cp")
    assert "hunter2" not in repr(sink)


def test_sink_does_not_connect_before_start() -> None:
    # An unreachable host: constructing must not touch the network.
    sink = ClickHouseSink("http://nonexistent.invalid:1/cp")
    assert not sink.started
    with pytest.raises(RuntimeError, match="not started: call start"):
        sink.query_rows("SELECT 1")
    with pytest.raises(RuntimeError, match="not started"):
        sink.leaderboard()
    sink.close()  # closing a sink that never started is fine


def test_database_argument_overrides_the_url() -> None:
    assert ClickHouseSink("chdb:///tmp/x?database=a", database="b").database == "b"
    assert ClickHouseSink("http://h/a").database == "a"
    with pytest.raises(ValueError, match="not a plain identifier"):
        ClickHouseSink("http://h/a", database="x y")


def test_writing_nothing_needs_no_client() -> None:
    sink = ClickHouseSink("http://nonexistent.invalid:1/cp")
    sink.write_creator_windows([])
    sink.write_dead_letters([])
    sink.write_profiles([])
    sink.write_contracts([])


# -- refusal or outage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        # The client could not serialise a value (a DateTime past 2106, an int past 2^64).
        (DataError("Unable to create native array for column `window_start`: error"), True),
        (OverflowError("timestamp out of range for platform time_t"), True),
        (ValueError("CreatorWindowRow has 3 counts, expected 11"), True),
        (DatabaseError("Code: 53. DB::Exception: Type mismatch", code=53), True),
        (DatabaseError("Code: 321. Value out of range", code=321), True),
        (
            DatabaseError("Code: 252. Too many partitions for single INSERT block", code=252),
            True,
        ),
        # Outages: retry the whole batch, never drop a row.
        (DatabaseError("Code: 252. Too many parts (300). Merges are processing", code=252), False),
        (DatabaseError("Code: 241. Memory limit exceeded", code=241), False),
        (DatabaseError("Code: 60. Unknown table creator_metrics", code=60), False),
        (DatabaseError("Code: 516. Authentication failed", code=516), False),
        (DatabaseError("The ClickHouse server returned an error"), False),
        (OperationalError("Error HTTPConnectionPool: Read timed out."), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
        (TimeoutError("timed out"), False),
        (RuntimeError("ClickHouseSink is not started"), False),
        (TypeError("an argument is missing"), False),  # a bug here: stall, do not drop
    ],
)
def test_only_errors_about_the_data_are_refusals(error: BaseException, refusal: bool) -> None:
    assert is_refusal(error) is refusal
