"""Where window totals, dead letters and reference data go: ClickHouse.

- :class:`BatchPolicy` decides when a batch is big or old enough to write;
- :class:`ClickHouseSink` writes rows idempotently and reads the leaderboard, with
  one code path for ``http(s)://`` servers and embedded ``chdb:///path`` stores;
- :func:`migrate` applies the versioned DDL in ``sinks/migrations``.

``sinks`` knows ClickHouse, not Faust: the stream processors hand it plain rows from
:mod:`schemas.rows`.
"""

from sinks.batching import BatchPolicy
from sinks.clickhouse import ClickHouseSink, ClickHouseTarget, LeaderRow, parse_clickhouse_url
from sinks.migrate import migrate

__all__ = [
    "BatchPolicy",
    "ClickHouseSink",
    "ClickHouseTarget",
    "LeaderRow",
    "migrate",
    "parse_clickhouse_url",
]
