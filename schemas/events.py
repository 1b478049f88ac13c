"""Post-stat events: the contract's input format, and the decoder every consumer uses.

A record value holds one event (a JSON object) or a batch of events for the record
key's creator (a JSON array of objects). Each element is validated on its own, so one
bad element becomes one dead letter and the rest still count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

#: The additive counters of an event, in the order used everywhere (state, rows, tables).
METRICS: tuple[str, ...] = (
    "views",
    "likes",
    "comments",
    "shares",
    "saves",
    "watch_time_ms",
    "completions",
    "replays",
    "clicks",
    "conversions",
    "revenue_cents",
)

#: A record holding one event may not exceed this (contract: "payload over 64 KiB").
MAX_EVENT_BYTES = 64 * 1024
#: A batch record (a JSON array) may hold up to this many bytes; each element is still
#: checked against the contract's per-field rules.
MAX_BATCH_RECORD_BYTES = 1024 * 1024

# Counts are stored as UInt64 in ClickHouse; capping one event at 2**53 keeps any
# realistic sum far from overflow and survives JSON round trips through JavaScript BI.
MAX_COUNT = 2**53


def _epoch_ms(value: Any) -> int:
    """Accept integer epoch milliseconds or ISO-8601 text that carries an offset."""
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 with an offset or integer epoch milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("ts must not be negative")
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"ts is not ISO-8601: {value[:40]!r}") from exc
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValueError("ts must carry a UTC offset (e.g. 2026-11-22T10:00:00Z)")
        return int(parsed.timestamp() * 1000)
    raise ValueError("ts must be ISO-8601 with an offset or integer epoch milliseconds")


EpochMs = Annotated[int, BeforeValidator(_epoch_ms)]
Id = Annotated[str, Field(min_length=1, max_length=128, strict=True)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]


class PostStatEvent(BaseModel):
    """One post-stat event. ``kind`` says how to read the counts:

    - ``delta``: the counts happened in this event;
    - ``snapshot``: the counts are the post's lifetime totals at ``ts``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id
    kind: Literal["delta", "snapshot"] = "delta"
    ts: EpochMs
    campaign_id: Id
    creator_id: Id
    post_id: Id
    views: Count = 0
    likes: Count = 0
    comments: Count = 0
    shares: Count = 0
    saves: Count = 0
    watch_time_ms: Count = 0
    completions: Count = 0
    replays: Count = 0
    clicks: Count = 0
    conversions: Count = 0
    revenue_cents: Count = 0

    def partition_key(self) -> bytes:
        """The Kafka record key: the creator, so one creator's events stay in order."""
        return self.creator_id.encode()

    def event_time_ms(self) -> int:
        return self.ts

    def counts(self) -> tuple[int, ...]:
        """The counters in :data:`METRICS` order."""
        return (
            self.views,
            self.likes,
            self.comments,
            self.shares,
            self.saves,
            self.watch_time_ms,
            self.completions,
            self.replays,
            self.clicks,
            self.conversions,
            self.revenue_cents,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump())


#: Built once: pydantic compiles the validator when the adapter is created.
EVENT_ADAPTER: TypeAdapter[PostStatEvent] = TypeAdapter(PostStatEvent)
EVENT_LIST_ADAPTER: TypeAdapter[list[PostStatEvent]] = TypeAdapter(list[PostStatEvent])


@dataclass(frozen=True, slots=True)
class Rejected:
    """One element of a record that is not a valid event: a future dead letter."""

    index: int  # position in a batch record; 0 for a single-event record
    reason: str
    payload: bytes


@dataclass(slots=True)
class Decoded:
    """What one record value decodes to: valid events and rejected elements."""

    events: list[PostStatEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def positions(self) -> list[int]:
        """The index in the record of each valid event (rejected ones leave gaps)."""
        if not self.rejected:
            return list(range(len(self.events)))
        gaps = {r.index for r in self.rejected}
        total = len(self.events) + len(gaps)
        return [i for i in range(total) if i not in gaps]


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "value"
    return f"invalid: {location}: {first['msg']}"


def decode_record(value: bytes | None) -> Decoded:
    """Decode one record value into valid events and rejected elements.

    Never raises on data: every failure is a :class:`Rejected` with a reason.
    """
    out = Decoded()
    if value is None:
        out.rejected.append(Rejected(0, "empty: record has no value", b""))
        return out
    size = len(value)
    is_array = value[:1] == b"["
    limit = MAX_BATCH_RECORD_BYTES if is_array else MAX_EVENT_BYTES
    if size > limit:
        reason = f"too_large: {size} bytes > {limit}"
        out.rejected.append(Rejected(0, reason, value[:1024]))
        return out
    if not is_array:
        try:
            out.events.append(EVENT_ADAPTER.validate_json(value))
        except ValidationError as exc:
            out.rejected.append(Rejected(0, _decode_reason(value, exc), value))
        return out
    # Fast path: a whole batch that validates at once costs one call.
    try:
        out.events = EVENT_LIST_ADAPTER.validate_json(value)
        return out
    except ValidationError:
        pass
    try:
        elements = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        out.rejected.append(Rejected(0, f"bad_json: {exc}", value))
        return out
    for index, element in enumerate(elements):
        try:
            out.events.append(EVENT_ADAPTER.validate_python(element))
        except ValidationError as exc:
            out.rejected.append(Rejected(index, _reason(exc), orjson.dumps(element)))
    return out


def _decode_reason(value: bytes, exc: ValidationError) -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors(include_url=False)):
        return "bad_json: " + exc.errors(include_url=False)[0]["msg"]
    return _reason(exc)
