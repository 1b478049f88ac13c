"""Shared pytest wiring: broker, ClickHouse and subprocess fixtures live in their own modules."""

pytest_plugins = [
    "tests.support.fixtures.kafka",
    "tests.support.fixtures.clickhouse",
    "tests.support.processes",  # spawn: worker and sink subprocesses, killed at teardown
]
