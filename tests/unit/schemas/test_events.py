"""The contract's validation rules: every bad input is a rejection with a reason."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import orjson
import pytest
from pydantic import ValidationError

from schemas.events import (
    EVENT_ADAPTER,
    MAX_BATCH_EVENTS,
    MAX_DEAD_LETTERS_PER_RECORD,
    MAX_EVENT_BYTES,
    MAX_TS_MS,
    DecodedEvent,
    PostStatEvent,
    decode_event,
    decode_record,
)
from schemas.metrics import METRICS


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
    assert len(decoded.events) == 1
    assert not decoded.rejected


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
        # Issue 8, finding 3: times past ClickHouse's DateTime range wedged the sink.
        (encode(event(ts=MAX_TS_MS)), "invalid: ts"),
        (encode(event(ts=2**63)), "invalid: ts"),
        (encode(event(ts="2200-01-01T00:00:00Z")), "invalid: ts"),
        (encode(event(ts="9999-12-31T23:59:59-23:59")), "invalid: ts"),
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
    assert decoded.rejected
    assert decoded.rejected[0].reason.startswith(f"invalid: {name}")


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
    assert again == DecodedEvent.from_model(ev)
    assert again.to_json() == ev.to_json()


# -- the msgspec fast path reads exactly what pydantic reads ------------------------------

_BIG = "__beyond 64 bits__"  # orjson writes no such integer: put in as text
_ODD_COUNTS = [-1, 0, 2**53, 2**53 + 1, _BIG, 1.0, 1.5, True, "5", None, [1]]
_ODD_TS = [-1, 0, 1.0, True, "abc", "2026-11-22T10:00:00Z", "2026-11-22T10:00:00", _BIG]
_ODD_IDS = ["", "x" * 128, "x" * 129, "é" * 128, "😀" * 128, "😀" * 129, "a\x00b", 5, None]
_ODD_KINDS = ["delta", "snapshot", "DELTA", "", None, 1]


def _mutated_document(rng: random.Random) -> bytes:
    """A valid event with up to three odd fields, sometimes odd JSON text as well."""
    data = event(ts=rng.randrange(0, 2**41), event_id=f"e-{rng.randrange(10**6)}")
    for _ in range(rng.randrange(4)):
        match rng.randrange(6):
            case 0:
                data[rng.choice(METRICS)] = rng.choice(_ODD_COUNTS)
            case 1:
                data["ts"] = rng.choice(_ODD_TS)
            case 2:
                data[rng.choice(("event_id", "campaign_id", "creator_id", "post_id"))] = rng.choice(
                    _ODD_IDS
                )
            case 3:
                data["kind"] = rng.choice(_ODD_KINDS)
            case 4:
                data.pop(rng.choice(list(data)), None)
            case 5:
                data[rng.choice(("extra", "score", "views_hint"))] = rng.choice([1.5, [1], {}])
    text = orjson.dumps(data).replace(f'"{_BIG}"'.encode(), str(2**64 * 3).encode())
    match rng.randrange(6):
        case 0:  # a repeated key: the last one counts
            text = text[:-1] + b',"views":' + str(rng.randrange(-1, 3)).encode() + b"}"
        case 1:  # JSON only pydantic's parser takes
            text = text[:-1] + b',"score":NaN}'
        case 2:
            text = b" " + text.replace(b",", b" , ") + b"\n"
        case 3:  # an escaped lone surrogate
            text = text.replace(b'"e-', b'"\\ud800e-', 1)
    return text


def _pydantic_reading(document: bytes) -> DecodedEvent | None:
    try:
        return DecodedEvent.from_model(EVENT_ADAPTER.validate_json(document))
    except ValidationError:
        return None


def test_the_fast_decoder_never_reads_an_event_differently_from_the_contract_model() -> None:
    rng = random.Random(20261201)
    fast_accepted = pydantic_accepted = 0
    for _ in range(4000):
        document = _mutated_document(rng)
        expected = _pydantic_reading(document)
        fast = decode_event(document)
        if fast is not None:
            fast_accepted += 1
            assert fast == expected, document
        pydantic_accepted += expected is not None
        # Whatever path it takes, decode_record follows the contract model.
        decoded = decode_record(document)
        assert decoded.events == ([expected] if expected is not None else [])
        assert len(decoded.rejected) == (expected is None)
    # Both outcomes are well represented, and the fast path takes most valid events.
    assert 1000 < pydantic_accepted < 3500
    assert fast_accepted > 0.6 * pydantic_accepted


def test_a_batch_record_decodes_like_its_elements_one_by_one() -> None:
    rng = random.Random(7)
    for _ in range(400):
        documents = [_mutated_document(rng) for _ in range(rng.randrange(1, 6))]
        if rng.random() < 0.5:  # mostly valid batches, so the fast path runs
            documents = [d for d in documents if _pydantic_reading(d) is not None] or documents
        value = b"[" + b",".join(documents) + b"]"
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            continue  # a batch orjson cannot split is one dead letter: tested above
        readings = [_pydantic_reading(d) for d in documents]
        decoded = decode_record(value)
        assert decoded.events == [r for r in readings if r is not None]
        assert [r.index for r in decoded.rejected] == [
            i for i, r in enumerate(readings) if r is None
        ]


def test_the_fast_event_has_the_contract_models_fields_and_defaults() -> None:
    model = PostStatEvent.model_fields
    fast = {f.name: f for f in msgspec.structs.fields(DecodedEvent)}
    assert list(fast) == list(model)
    for name, info in model.items():
        assert fast[name].required == info.is_required(), name
        if not info.is_required():
            assert fast[name].default == info.default, name


@pytest.mark.parametrize("depth", [100, 1_000, 30_000])
def test_deeply_nested_json_never_raises(depth: int) -> None:
    # msgspec raises RecursionError (not a DecodeError) past its nesting limit; the
    # record must then take the pydantic path like any other refusal.
    nested = b"[" * depth + b"]" * depth
    value = encode(event(ts=1_000))[:-1] + b',"extra":' + nested + b"}"
    expected = _pydantic_reading(value)
    decoded = decode_record(value)
    assert decoded.events == ([expected] if expected is not None else [])
    assert len(decoded.rejected) == (expected is None)
    assert decode_event(value) in (None, expected)
    batch = decode_record(b"[" + encode(event(event_id="ok", ts=1_000)) + b"," + value + b"]")
    assert batch.events or batch.rejected


def test_huge_epoch_numbers_are_rejected_not_read() -> None:
    # 2^64 and 10^30 were accepted as event times (issue 8, finding 2).
    for ts in (2**64, 10**30):
        value = encode(event(ts=0)).replace(b'"ts":0', b'"ts":%d' % ts)
        (rejected,) = decode_record(value).rejected
        assert rejected.reason.startswith("invalid: ts: "), rejected.reason


def test_the_last_millisecond_before_2100_is_an_event_time() -> None:
    assert decode_record(encode(event(ts=MAX_TS_MS - 1))).events[0].ts == MAX_TS_MS - 1


def test_a_batch_record_of_200k_tiny_elements_is_one_dead_letter_and_costs_little() -> None:
    # Issue 8, finding 6: this 400 KB record became 200,000 dead letters and +2 GB of RSS.
    import tracemalloc

    value = b"[" + b",".join([b"0"] * 200_000) + b"]"
    tracemalloc.start()
    try:
        decoded = decode_record(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.events == []
    (rejected,) = decoded.rejected
    assert rejected.reason == f"too_large: 200000 elements > {MAX_BATCH_EVENTS}"
    assert peak < 100 * 1024 * 1024


def test_the_worst_record_within_the_limits_costs_under_100_mb() -> None:
    import tracemalloc

    bad = encode({"event_id": "e", "ts": 1, "views": -1, "note": "x" * 40})
    value = b"[" + b",".join([bad] * MAX_BATCH_EVENTS) + b"]"
    assert len(value) < 1024 * 1024
    tracemalloc.start()
    try:
        decoded = decode_record(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(decoded.rejected) == MAX_DEAD_LETTERS_PER_RECORD
    assert peak < 100 * 1024 * 1024


def test_dead_letters_per_record_are_bounded_and_the_last_one_counts_the_rest() -> None:
    good = [event(event_id=f"g{i}") for i in range(3)]
    elements: list[Any] = [0] * 500
    elements[1], elements[250], elements[499] = good  # valid events among 497 bad ones
    decoded = decode_record(encode(elements))
    assert [e.event_id for e in decoded.events] == ["g0", "g1", "g2"]
    assert decoded.positions() == [1, 250, 499]
    assert len(decoded.rejected) == MAX_DEAD_LETTERS_PER_RECORD
    listed = [r.index for r in decoded.rejected]
    assert listed == [0, *range(2, MAX_DEAD_LETTERS_PER_RECORD + 1)]
    unlisted = 497 - MAX_DEAD_LETTERS_PER_RECORD
    assert f"and {unlisted} more bad elements after it" in decoded.rejected[-1].reason


def test_a_batch_record_over_the_element_limit_is_refused_even_if_every_element_is_valid() -> None:
    minimal = {"event_id": "e", "ts": 1, "campaign_id": "c", "creator_id": "a", "post_id": "p"}
    value = encode([minimal] * (MAX_BATCH_EVENTS + 1))
    decoded = decode_record(value)
    assert decoded.events == []
    assert [r.reason for r in decoded.rejected] == [
        f"too_large: {MAX_BATCH_EVENTS + 1} elements > {MAX_BATCH_EVENTS}"
    ]
