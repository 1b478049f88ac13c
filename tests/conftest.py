"""Shared pytest wiring: broker, ClickHouse and subprocess fixtures live in their own modules."""

pytest_plugins = [
    "tests.fixtures_kafka",
    "tests.fixtures_clickhouse",
    "tests.support.processes",  # spawn: worker and sink subprocesses, killed at teardown
]
