"""Where window totals, dead letters and reference data go: ClickHouse.

- :class:`ClickHouseSink` writes rows idempotently and reads the leaderboard, with
  one code path for ``http(s)://`` servers and embedded ``chdb:///path`` stores;
- :func:`migrate` applies the versioned DDL in ``sinks/migrations``.

Batching is the stream worker's flush cadence: each flush hands over the newest
totals of every window that changed, coalesced per window, as one insert per table
(``streams.sink_writer``). ``sinks`` knows ClickHouse, not Faust: the stream
processors hand it plain rows from :mod:`schemas.rows`.

:mod:`sinks.base` (what outage and refusal mean, isolation, backoff) is imported by the
stream worker, which must not load a ClickHouse client for it: so the names below are
imported on first use, not with the package.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClickHouseSink": "sinks.clickhouse",
    "ClickHouseTarget": "sinks.clickhouse",
    "LeaderRow": "sinks.clickhouse",
    "parse_clickhouse_url": "sinks.clickhouse",
    "migrate": "sinks.migrate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sinks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ClickHouseSink",
    "ClickHouseTarget",
    "LeaderRow",
    "migrate",
    "parse_clickhouse_url",
]
