"""Rows the pipeline writes to ClickHouse: window totals and dead letters.

Plain frozen dataclasses (no validation needed: the pipeline builds them) with the
exact column order of the tables in ``sinks/migrations``, and their JSON form on
Kafka: window rows on the window-rows topic (``sinks.row_topic``), dead letters on
the dead-letter topic. Reading JSON back validates it: it comes from outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from schemas.events import METRICS, Count, Id

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


# -- JSON on Kafka ----------------------------------------------------------------------


def window_row_to_json(row: CreatorWindowRow) -> bytes:
    """A window row as the window-rows topic carries it: named counters, no version
    (it is their sum, so it cannot disagree with them)."""
    return orjson.dumps(
        {
            "campaign_id": row.campaign_id,
            "creator_id": row.creator_id,
            "window_size_s": row.window_size_s,
            "window_start_ms": row.window_start_ms,
            **dict(zip(METRICS, row.counts, strict=True)),
        }
    )


# Validation of the flat message, one field per counter: generated from METRICS so the
# message cannot miss a counter the events have.
_WINDOW_ROW_FIELDS: dict[str, Any] = {
    "campaign_id": (Id, ...),
    "creator_id": (Id, ...),
    "window_size_s": (int, Field(gt=0, strict=True)),
    "window_start_ms": (int, Field(ge=0, strict=True)),
    **{metric: (Count, 0) for metric in METRICS},
}
_WindowRowMessage = create_model(
    "WindowRowMessage",
    __config__=ConfigDict(frozen=True, extra="ignore"),
    **_WINDOW_ROW_FIELDS,
)


def window_row_from_json(value: bytes) -> CreatorWindowRow:
    """Read a window-rows message; raises ``ValueError`` saying what is wrong."""
    message = _WindowRowMessage.model_validate_json(value)
    return CreatorWindowRow(
        message.campaign_id,
        message.creator_id,
        message.window_size_s,
        message.window_start_ms,
        tuple(getattr(message, metric) for metric in METRICS),
    )


def dead_letter_fields(dead: DeadLetter) -> dict[str, Any]:
    """A dead letter's fields for JSON (the payload as text; the time left to the caller)."""
    return {
        "received_at": dead.received_at,
        "topic": dead.topic,
        "partition": dead.partition,
        "offset": dead.offset,
        "idx": dead.idx,
        "reason": dead.reason,
        "payload": dead.payload.decode("utf-8", "replace"),
    }


def dead_letter_to_json(dead: DeadLetter) -> bytes:
    """A dead letter as the dead-letter topic carries it (contract section 1): the
    time as RFC 3339 text."""
    return orjson.dumps(dead_letter_fields(dead))


class _DeadLetterMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    received_at: AwareDatetime
    topic: str = Field(min_length=1)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    idx: int = Field(ge=0)
    reason: str
    payload: str


def dead_letter_from_json(value: bytes) -> DeadLetter:
    """Read a dead-letter message; raises ``ValueError`` saying what is wrong."""
    message = _DeadLetterMessage.model_validate_json(value)
    return DeadLetter(
        message.received_at,
        message.topic,
        message.partition,
        message.offset,
        message.idx,
        message.reason,
        message.payload.encode(),
    )
