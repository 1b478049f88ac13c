"""Rows the pipeline writes to ClickHouse: window totals and dead letters.

Plain frozen dataclasses (no validation needed: the pipeline builds them) with the
exact column order of the tables in ``sinks/migrations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.events import METRICS

#: Columns of ``creator_metrics`` in insert order (``updated_at`` is set by the sink).
CREATOR_WINDOW_COLUMNS: tuple[str, ...] = (
    "campaign_id",
    "creator_id",
    "window_size_s",
    "window_start",
    "window_end",
    *METRICS,
    "version",
)

DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "received_at",
    "topic",
    "partition",
    "offset",
    "idx",
    "reason",
    "payload",
)


@dataclass(frozen=True, slots=True)
class CreatorWindowRow:
    """The full totals of one creator's window: never a partial sum.

    ``version`` grows whenever the totals grow (it is their sum), so ClickHouse's
    ReplacingMergeTree keeps the most complete row whatever order rows arrive in.
    """

    campaign_id: str
    creator_id: str
    window_size_s: int
    window_start_ms: int
    counts: tuple[int, ...]

    @property
    def window_end_ms(self) -> int:
        return self.window_start_ms + self.window_size_s * 1000

    @property
    def version(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input element that was not counted, and why.

    ``(topic, partition, offset, idx)`` identifies it, so a replay that produces the
    same dead letter again collapses into one row.
    """

    received_at: datetime
    topic: str
    partition: int
    offset: int
    idx: int
    reason: str
    payload: bytes
