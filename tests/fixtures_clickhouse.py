"""pytest plugin: ClickHouse for integration tests, embedded chDB by default.

Fixtures:

- ``clickhouse_url``: a URL with a store or database of its own for this test.
  With ``CREATORPULSE_TEST_CLICKHOUSE_URL`` set (an ``http(s)://`` server), the
  server's URL with a random database per run and test
  (``creatorpulse_test_<run>_<n>``, dropped afterwards); otherwise
  ``chdb:///<tmp_path>/store``, a fresh chDB store per test.
- ``clickhouse_sink``: a started :class:`~sinks.ClickHouseSink` on that URL, migrated,
  closed after the test.

Tests using them are marked ``clickhouse`` automatically.

Why a fresh chDB store per test works (measured with clickhouse-connect 1.12.0 and
chdb 4.4.0): a process hosts one chDB engine path at a time; any number of clients
may share it, and a different path can be opened once every client on the old one
is closed (about 0.05 s; only the first engine start in a process costs ~1 s). So
each test must close every client it opens on its store (the sink fixture does):
a client left open makes the *next* test's store fail with "EmbeddedServer already
initialized with path ...". Two stores can never be open at once in one process, and
a second process cannot open a store this one holds.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from sinks.clickhouse import ClickHouseSink, migrate

ENV_URL = "CREATORPULSE_TEST_CLICKHOUSE_URL"

_RUN_ID = uuid.uuid4().hex[:8]
_COUNTER = itertools.count(1)
_FIXTURES = {"clickhouse_url", "clickhouse_sink"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever uses ClickHouse carries the marker, so `-m "not clickhouse"` is reliable.
    for item in items:
        if _FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.clickhouse)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() == "chdb":
        return urlunsplit(parts._replace(query=urlencode({"database": database})))
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def clickhouse_url(tmp_path: Path) -> Iterator[str]:
    server_url = os.environ.get(ENV_URL, "").strip()
    if not server_url:
        pytest.importorskip("chdb", reason="chdb is not installed and no server URL is set")
        yield f"chdb://{tmp_path / 'store'}"
        return
    database = f"creatorpulse_test_{_RUN_ID}_{next(_COUNTER)}"
    url = _with_database(server_url, database)
    yield url
    # A server outlives the run: leave nothing behind.
    with ClickHouseSink(url) as sink, sink.locked_client() as client:
        client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def clickhouse_sink(clickhouse_url: str) -> Iterator[ClickHouseSink]:
    sink = ClickHouseSink(clickhouse_url)
    sink.start()
    try:
        migrate(sink)
        yield sink
    finally:
        sink.close()
