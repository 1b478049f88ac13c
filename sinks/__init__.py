"""Where window totals, dead letters and reference data go: ClickHouse.

- :class:`ClickHouseSink` writes rows idempotently and reads the leaderboard, with
  one code path for ``http(s)://`` servers and embedded ``chdb:///path`` stores;
- :func:`migrate` applies the versioned DDL in ``sinks/migrations``.

Batching is the stream worker's flush cadence: each flush hands over the newest
totals of every window that changed, coalesced per window, as one insert per table
(``streams.sink_writer``). ``sinks`` knows ClickHouse, not Faust: the stream
processors hand it plain rows from :mod:`schemas.rows`.
"""

from sinks.clickhouse import ClickHouseSink, ClickHouseTarget, LeaderRow, parse_clickhouse_url
from sinks.migrate import migrate

__all__ = [
    "ClickHouseSink",
    "ClickHouseTarget",
    "LeaderRow",
    "migrate",
    "parse_clickhouse_url",
]
