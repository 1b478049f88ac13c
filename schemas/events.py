"""Post-stat events: the contract's input format, and the decoder every consumer uses.

A record value holds one event (a JSON object) or a batch of events for the record
key's creator (a JSON array of objects). Each element is validated on its own, so one
bad element becomes one dead letter and the rest still count.

Two classes describe an event:

- :class:`PostStatEvent` (pydantic) is the contract's model: producers build it, and
  its validation errors are the dead-letter reasons;
- :class:`DecodedEvent` (msgspec) is what :func:`decode_record` returns and the worker
  holds. Decoding a 100-event record into it costs 0.37 us an event against 1.77 us
  for the pydantic model, and the worker's per-event code reads its slots faster.

msgspec reads the common case (integer ``ts``, plain JSON). Whatever it refuses goes
through pydantic, which either accepts it (ISO-8601 ``ts``, JSON only pydantic's parser
takes) or says why not. ``tests/unit/test_events.py`` checks, over generated documents,
that msgspec never accepts what pydantic refuses nor reads a value differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError

from schemas.metrics import MAX_COUNT, MAX_ID_CHARS, METRICS, Count, Id

#: A record holding one event may not exceed this (contract: "payload over 64 KiB").
MAX_EVENT_BYTES = 64 * 1024
#: A batch record (a JSON array) may hold up to this many bytes; each element is still
#: checked against the contract's per-field rules.
MAX_BATCH_RECORD_BYTES = 1024 * 1024

#: A batch record may hold at most this many elements (events or not). A longer one is
#: one dead letter: checking 200,000 tiny elements one by one cost gigabytes.
MAX_BATCH_EVENTS = 10_000
#: At most this many dead letters come from one record: past it, the last one stands for
#: every further bad element and says how many there were.
MAX_DEAD_LETTERS_PER_RECORD = 100

#: Event times are epoch milliseconds before 2100-01-01T00:00:00Z: every window that
#: holds one ends inside ClickHouse's ``DateTime`` range (up to 2106-02-07).
MAX_TS_MS = 4_102_444_800_000


def _epoch_ms(value: Any) -> int:
    """Accept integer epoch milliseconds or ISO-8601 text that carries an offset."""
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 with an offset or integer epoch milliseconds")
    if isinstance(value, int):
        return _in_range(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"ts is not ISO-8601: {value[:40]!r}") from exc
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValueError("ts must carry a UTC offset (e.g. 2026-11-22T10:00:00Z)")
        return _in_range(int(parsed.timestamp() * 1000))
    raise ValueError("ts must be ISO-8601 with an offset or integer epoch milliseconds")


def _in_range(ts_ms: int) -> int:
    if ts_ms < 0:
        raise ValueError("ts must not be negative")
    if ts_ms >= MAX_TS_MS:
        raise ValueError(f"ts must be before 2100-01-01T00:00:00Z ({MAX_TS_MS} ms), got {ts_ms}")
    return ts_ms


EpochMs = Annotated[int, BeforeValidator(_epoch_ms)]


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

_FastId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
_FastCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]


class DecodedEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A valid :class:`PostStatEvent` as the worker holds it: same fields, same order.

    ``ts`` is always epoch milliseconds here. msgspec is strict like the contract: no
    bool, float or text where an integer belongs. ``gc=False``: an event holds only
    strings and integers, so the garbage collector need not track millions of them.
    """

    event_id: _FastId
    kind: Literal["delta", "snapshot"] = "delta"
    ts: Annotated[int, msgspec.Meta(ge=0, lt=MAX_TS_MS)]  # ISO-8601 takes the pydantic path
    campaign_id: _FastId
    creator_id: _FastId
    post_id: _FastId
    views: _FastCount = 0
    likes: _FastCount = 0
    comments: _FastCount = 0
    shares: _FastCount = 0
    saves: _FastCount = 0
    watch_time_ms: _FastCount = 0
    completions: _FastCount = 0
    replays: _FastCount = 0
    clicks: _FastCount = 0
    conversions: _FastCount = 0
    revenue_cents: _FastCount = 0

    @classmethod
    def from_model(cls, event: PostStatEvent) -> DecodedEvent:
        return cls(**event.model_dump())

    def partition_key(self) -> bytes:
        """The Kafka record key: the creator, so one creator's events stay in order."""
        return self.creator_id.encode()

    def counts(self) -> tuple[int, ...]:
        """The counters in :data:`METRICS` order."""
        return _counts(self)

    def as_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)

    def to_json(self) -> bytes:
        """The event as the contract's JSON (what :meth:`PostStatEvent.to_json` gives)."""
        return _ENCODER.encode(self)


_counts = attrgetter(*METRICS)
_ENCODER = msgspec.json.Encoder()
_FAST_ONE = msgspec.json.Decoder(DecodedEvent)
_FAST_MANY = msgspec.json.Decoder(list[DecodedEvent])
#: A batch record's elements as raw JSON, unread: cheap to count and to bound.
_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
#: ValidationError is a DecodeError too. Deep nesting (e.g. in an unknown field) makes
#: msgspec raise RecursionError; pydantic then names it a bad_json dead letter.
_FAST_PATH_REFUSALS = (msgspec.DecodeError, RecursionError)


def decode_event(value: bytes) -> DecodedEvent | None:
    """The event if ``value`` is exactly one event that msgspec reads, else ``None``.

    ``None`` is not a verdict: :func:`decode_record` may still accept the value (e.g.
    an ISO-8601 ``ts``) or says why not. For callers that only want the fast path.
    """
    try:
        return _FAST_ONE.decode(value)
    except _FAST_PATH_REFUSALS:
        return None


@dataclass(frozen=True, slots=True)
class Rejected:
    """One element of a record that is not a valid event: a future dead letter."""

    index: int  # position in a batch record; 0 for a single-event record
    reason: str
    payload: bytes


@dataclass(slots=True)
class Decoded:
    """What one record value decodes to: valid events and rejected elements."""

    events: list[DecodedEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    #: Where each valid event stood in the record, when bad elements left gaps.
    event_positions: list[int] | None = None

    def positions(self) -> list[int]:
        """The index in the record of each valid event (rejected ones leave gaps)."""
        if self.event_positions is not None:
            return self.event_positions
        return list(range(len(self.events)))


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
        out.rejected.append(Rejected(0, reason, value))
        return out
    # Each shape tries msgspec first; pydantic reads what it refuses (module docstring).
    if not is_array:
        event = _decode_one(value)
        if isinstance(event, str):
            out.rejected.append(Rejected(0, event, value))
        else:
            out.events.append(event)
        return out
    try:
        out.events = _FAST_MANY.decode(value)
    except _FAST_PATH_REFUSALS:
        pass
    else:
        if len(out.events) <= MAX_BATCH_EVENTS:
            return out
        out.events = []
    # The slow path: split the array without reading its elements, bound it, then read
    # each element on its own.
    try:
        elements = _ELEMENTS.decode(value)
    except _FAST_PATH_REFUSALS:
        out.rejected.append(Rejected(0, _bad_json_reason(value), value))
        return out
    if len(elements) > MAX_BATCH_EVENTS:
        reason = f"too_large: {len(elements)} elements > {MAX_BATCH_EVENTS}"
        out.rejected.append(Rejected(0, reason, value))
        return out
    rejected = out.rejected
    positions: list[int] = []
    unlisted = 0  # bad elements past the per-record bound
    for index, element in enumerate(elements):
        raw = bytes(element)
        event = _decode_one(raw)
        if not isinstance(event, str):
            out.events.append(event)
            positions.append(index)
        elif len(rejected) < MAX_DEAD_LETTERS_PER_RECORD:
            rejected.append(Rejected(index, event, raw))
        else:
            unlisted += 1
    if unlisted:
        last = rejected[-1]
        reason = (
            f"{last.reason} (and {unlisted} more bad elements after it in this record, not "
            f"listed: a record makes at most {MAX_DEAD_LETTERS_PER_RECORD} dead letters)"
        )
        rejected[-1] = Rejected(last.index, reason, last.payload)
    out.event_positions = positions
    return out


def _decode_one(value: bytes) -> DecodedEvent | str:
    """One event, or the reason it is not one."""
    event = decode_event(value)
    if event is not None:
        return event
    try:
        return DecodedEvent.from_model(EVENT_ADAPTER.validate_json(value))
    except ValidationError as exc:
        return _decode_reason(value, exc)
    except RecursionError:
        return "bad_json: nested too deeply"


def _bad_json_reason(value: bytes) -> str:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return f"bad_json: {exc}"
    except RecursionError:
        pass
    return "bad_json: not a JSON array of events"


def _decode_reason(value: bytes, exc: ValidationError) -> str:
    if any(err["type"] == "json_invalid" for err in exc.errors(include_url=False)):
        return "bad_json: " + exc.errors(include_url=False)[0]["msg"]
    return _reason(exc)
