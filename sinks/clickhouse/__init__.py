"""ClickHouse as the pipeline's store: one code path for ``http(s)://`` servers and chDB.

- :mod:`~sinks.clickhouse.target`: where to connect (URL parsing, identifiers); pure;
- :mod:`~sinks.clickhouse.sink`: :class:`ClickHouseSink`, its lifecycle and its writes,
  and which errors are refusals (:class:`sinks.base.Refused`) and which are outages;
- :mod:`~sinks.clickhouse.queries`: the SQL it runs and what its reads return
  (:class:`LeaderRow`);
- :mod:`~sinks.clickhouse.migrate`: :func:`migrate` applies the versioned DDL in
  ``migrations/*.sql``.

Importing this package loads clickhouse-connect; :mod:`sinks.base` does not.
"""

from sinks.clickhouse.migrate import load_migrations, migrate, split_statements
from sinks.clickhouse.queries import ContractRow, LeaderRow
from sinks.clickhouse.sink import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    ClickHouseSink,
    is_refusal,
)
from sinks.clickhouse.target import (
    DEFAULT_DATABASE,
    ClickHouseTarget,
    parse_clickhouse_url,
    validate_identifier,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_DATABASE",
    "DEFAULT_TIMEOUT_S",
    "ClickHouseSink",
    "ClickHouseTarget",
    "ContractRow",
    "LeaderRow",
    "is_refusal",
    "load_migrations",
    "migrate",
    "parse_clickhouse_url",
    "split_statements",
    "validate_identifier",
]
