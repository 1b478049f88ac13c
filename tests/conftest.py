"""Shared pytest wiring: broker and ClickHouse fixtures live in their own modules."""

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_clickhouse"]
