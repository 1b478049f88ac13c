"""The contract's validation rules: every bad input is a rejection with a reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.events import MAX_EVENT_BYTES, METRICS, PostStatEvent, decode_record


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "ts": "2026-11-22T10:00:00+01:00",
        "campaign_id": "spring",
        "creator_id": "alice",
        "post_id": "p-1",
        "views": 100,
        "likes": 7,
    }
    base.update(overrides)
    return base


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def test_a_valid_event_decodes_with_defaults_and_utc_millis() -> None:
    decoded = decode_record(encode(event()))
    assert decoded.rejected == []
    (ev,) = decoded.events
    assert ev.kind == "delta"
    assert ev.ts == 1_795_338_000_000  # 09:00 UTC
    assert ev.counts() == (100, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert ev.partition_key() == b"alice"


def test_epoch_millis_and_z_suffix_are_accepted() -> None:
    a = decode_record(encode(event(ts=1_795_338_000_000))).events[0]
    b = decode_record(encode(event(ts="2026-11-22T09:00:00Z"))).events[0]
    assert a.ts == b.ts == 1_795_338_000_000


def test_unknown_fields_are_ignored() -> None:
    decoded = decode_record(encode(event(source="api-poller", extra={"x": 1})))
    assert len(decoded.events) == 1 and not decoded.rejected


@pytest.mark.parametrize(
    ("value", "reason_start"),
    [
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (encode(5), "invalid"),
        (encode({k: v for k, v in event().items() if k != "event_id"}), "invalid: event_id"),
        (encode({k: v for k, v in event().items() if k != "ts"}), "invalid: ts"),
        (encode({k: v for k, v in event().items() if k != "creator_id"}), "invalid: creator_id"),
        (encode(event(event_id="")), "invalid: event_id"),
        (encode(event(event_id="x" * 129)), "invalid: event_id"),
        (encode(event(creator_id=42)), "invalid: creator_id"),
        (encode(event(kind="cumulative")), "invalid: kind"),
        (encode(event(ts="2026-11-22T10:00:00")), "invalid: ts"),  # no offset
        (encode(event(ts="yesterday")), "invalid: ts"),
        (encode(event(ts=1.5)), "invalid: ts"),
        (encode(event(ts=True)), "invalid: ts"),
        (encode(event(ts=-1)), "invalid: ts"),
        (encode(event(views=-1)), "invalid: views"),
        (encode(event(likes="7")), "invalid: likes"),
        (encode(event(likes=7.0)), "invalid: likes"),
        (encode(event(saves=True)), "invalid: saves"),
        (encode(event(revenue_cents=None)), "invalid: revenue_cents"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(value: bytes, reason_start: str) -> None:
    decoded = decode_record(value)
    assert decoded.events == []
    (rejected,) = decoded.rejected
    assert rejected.reason.startswith(reason_start), rejected.reason
    assert rejected.payload == value


@pytest.mark.parametrize("name", METRICS)
def test_every_counter_rejects_negatives(name: str) -> None:
    decoded = decode_record(encode(event(**{name: -5})))
    assert decoded.rejected and decoded.rejected[0].reason.startswith(f"invalid: {name}")


def test_a_payload_over_64_kib_is_rejected() -> None:
    value = encode(event(padding="x" * MAX_EVENT_BYTES))
    decoded = decode_record(value)
    assert decoded.events == []
    assert decoded.rejected[0].reason.startswith("too_large")


def test_a_missing_value_is_rejected() -> None:
    assert decode_record(None).rejected[0].reason.startswith("empty")


def test_batch_records_validate_each_element_on_its_own() -> None:
    value = encode(
        [event(event_id="a"), event(event_id="b", views=-1), "junk", event(event_id="c")]
    )
    decoded = decode_record(value)
    assert [e.event_id for e in decoded.events] == ["a", "c"]
    assert [r.index for r in decoded.rejected] == [1, 2]
    assert decoded.positions() == [0, 3]
    assert orjson.loads(decoded.rejected[0].payload)["event_id"] == "b"


def test_a_clean_batch_keeps_positions_in_order() -> None:
    decoded = decode_record(encode([event(event_id=str(i)) for i in range(5)]))
    assert decoded.positions() == [0, 1, 2, 3, 4]
    assert [e.event_id for e in decoded.events] == ["0", "1", "2", "3", "4"]


def test_an_event_round_trips_through_its_json() -> None:
    ev = PostStatEvent.model_validate(event(kind="snapshot", ts=1_000))
    again = decode_record(ev.to_json()).events[0]
    assert again == ev
