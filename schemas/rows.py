"""Rows the pipeline writes to ClickHouse: window totals and dead letters.

Plain frozen dataclasses (no validation needed: the pipeline builds them) with the
exact column order of the tables in ``sinks/clickhouse/migrations``, and their JSON form
on Kafka: window rows on the window-rows topic (``sinks.service``), dead letters on
the dead-letter topic. Reading JSON back validates it: it comes from outside.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, create_model

from schemas.metrics import MAX_COUNT, MAX_ID_CHARS, METRICS, Count, Id

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
    "payload_size",
    "payload_sha256",
)

#: A dead letter keeps at most this much of its payload, wherever it is written (changelog,
#: dead-letter topic, ClickHouse): every single-event record (<= 64 KiB) whole, and the head
#: of a bad batch record (up to 1 MiB), which JSON escaping could otherwise grow past what
#: Kafka accepts. Its size and SHA-256 are those of the whole payload.
MAX_DEAD_LETTER_PAYLOAD = 64 * 1024
#: Reasons quote what was wrong; one that long says enough in its first kilobyte.
MAX_REASON_CHARS = 1000


#: A creator window's identity: campaign_id, creator_id, window_size_s, window_start_ms.
WindowKey = tuple[str, str, int, int]


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
    def key(self) -> WindowKey:
        return (self.campaign_id, self.creator_id, self.window_size_s, self.window_start_ms)

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

    Bounded by construction: ``payload`` keeps the first :data:`MAX_DEAD_LETTER_PAYLOAD`
    bytes and ``reason`` the first :data:`MAX_REASON_CHARS` characters. A new dead letter
    (``payload_size`` left at -1) measures and hashes its whole payload before the cut;
    one read back from Kafka passes the size and hash it was written with.
    """

    received_at: datetime
    topic: str
    partition: int
    offset: int
    idx: int
    reason: str
    payload: bytes
    payload_size: int = -1
    payload_sha256: str = ""

    def __post_init__(self) -> None:
        if self.payload_size < 0:
            object.__setattr__(self, "payload_size", len(self.payload))
            object.__setattr__(self, "payload_sha256", hashlib.sha256(self.payload).hexdigest())
        if len(self.payload) > MAX_DEAD_LETTER_PAYLOAD:
            object.__setattr__(self, "payload", self.payload[:MAX_DEAD_LETTER_PAYLOAD])
        if len(self.reason) > MAX_REASON_CHARS:
            object.__setattr__(self, "reason", self.reason[: MAX_REASON_CHARS - 1] + "…")

    @property
    def truncated(self) -> bool:
        """Whether ``payload`` is only the head of what was received."""
        return len(self.payload) < self.payload_size


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
    """Read one window row; raises ``ValueError`` saying what is wrong."""
    return _row(_WindowRowMessage.model_validate_json(value))


_WindowRowsMessage = TypeAdapter(list[_WindowRowMessage])  # type: ignore[valid-type]

# The fast path, as for events (schemas.events): msgspec reads what workers write, and
# whatever it refuses goes through the pydantic model above, which either accepts it
# (an integer past 64 bits) or says why not. The same constraints, generated from the
# same METRICS; tests/unit/schemas/test_rows.py checks over generated documents that
# msgspec never accepts what pydantic refuses nor reads a value differently.
_FastId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
_FastCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
_FastWindowRow = msgspec.defstruct(
    "_FastWindowRow",
    [
        ("campaign_id", _FastId),
        ("creator_id", _FastId),
        ("window_size_s", Annotated[int, msgspec.Meta(gt=0)]),
        ("window_start_ms", Annotated[int, msgspec.Meta(ge=0)]),
        *((metric, _FastCount, 0) for metric in METRICS),
    ],
    frozen=True,
    gc=False,
)
_FAST_ROWS = msgspec.json.Decoder(list[_FastWindowRow])  # type: ignore[valid-type]
_fast_counts = attrgetter(*METRICS)


def window_rows_from_json(value: bytes) -> list[CreatorWindowRow]:
    """Read a window-rows record: a JSON array of rows (what workers write), or one row
    (what workers before 1.1 wrote). Raises ``ValueError`` saying what is wrong."""
    if value[:1] != b"[":
        return [window_row_from_json(value)]
    try:
        fast: list[Any] = _FAST_ROWS.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return [_row(message) for message in _WindowRowsMessage.validate_json(value)]
    return [
        CreatorWindowRow(
            m.campaign_id, m.creator_id, m.window_size_s, m.window_start_ms, _fast_counts(m)
        )
        for m in fast
    ]


def _row(message: Any) -> CreatorWindowRow:
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
        "payload_size": dead.payload_size,
        "payload_sha256": dead.payload_sha256,
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
    # Absent in messages written before payloads were cut: then measured on reading.
    payload_size: int = Field(default=-1, ge=-1)
    payload_sha256: str = Field(default="", max_length=64)


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
        message.payload_size,
        message.payload_sha256 if message.payload_size >= 0 else "",
    )
