"""Where window totals, dead letters and reference data go.

- :mod:`sinks.base`: the sink contract (:class:`~sinks.base.RowSink`: when a sink is
  called, what a refusal and an outage mean), :class:`~sinks.base.RowBatch` (the newest
  row of each window, waiting for a write), isolation of refused rows and backoff;
- :mod:`sinks.memory`: :class:`~sinks.memory.MemoryRowSink`, the contract in memory,
  for tests and demos;
- :mod:`sinks.clickhouse`: the store, a server or embedded chDB (target, sink, queries,
  migrations);
- :mod:`sinks.service`: ``creatorpulse sink``, window rows from Kafka into the store;
- :mod:`sinks.webhooks`: alerts delivered over HTTP.

``sinks`` knows stores, not Faust: the stream worker hands it plain rows from
:mod:`schemas.rows`, and it imports neither ``streams``, ``producers`` nor
``creatorpulse``. :mod:`sinks.base` is imported by the stream worker, which must not load
a ClickHouse client for it: so the names below are imported on first use, not with the
package.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClickHouseSink": "sinks.clickhouse",
    "ClickHouseTarget": "sinks.clickhouse",
    "LeaderRow": "sinks.clickhouse",
    "parse_clickhouse_url": "sinks.clickhouse",
    "migrate": "sinks.clickhouse",
    "MemoryRowSink": "sinks.memory",
    "RowBatch": "sinks.base",
    "RowSink": "sinks.base",
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
    "MemoryRowSink",
    "RowBatch",
    "RowSink",
    "migrate",
    "parse_clickhouse_url",
]
