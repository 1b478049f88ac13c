"""Properties of ``schemas.events.decode_record`` over generated input (hypothesis).

Whatever a record holds (arbitrary bytes, arbitrary JSON: deep nesting, huge integers,
control characters, lone surrogate escapes), decoding never raises, and every element
ends as an event or a dead letter with a reason of the contract's classes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    MAX_BATCH_EVENTS,
    MAX_DEAD_LETTERS_PER_RECORD,
    MAX_TS_MS,
    Decoded,
    decode_record,
)

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REASONS = ("bad_json", "invalid: ", "too_large", "empty")
MORE = re.compile(r"\(and (\d+) more bad elements after it")

# Text with what JSON must escape and what it may not carry unescaped (JSON is written
# with ensure_ascii, so lone surrogates travel as \ud800-style escapes).
SPECIAL = ["\ud800", "\udfff", "\x00", "\x01", "\x1f", "\x7f", "\u2028", '"', "\\", "я"]
text = st.text(
    alphabet=st.characters(exclude_categories=()) | st.sampled_from(SPECIAL), max_size=40
)
huge_ints = st.integers(min_value=-(10**40), max_value=10**40)
scalars = st.none() | st.booleans() | huge_ints | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(text, children, max_size=6),
    max_leaves=30,
)
COUNTERS = ("views", "likes", "clicks", "revenue_cents")


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid events, each field sometimes replaced by anything at all."""
    event: dict[str, Any] = {
        "event_id": draw(text.filter(bool) | st.text(min_size=120, max_size=130)),
        "kind": draw(st.sampled_from(["delta", "snapshot"])),
        "ts": draw(
            st.integers(min_value=0, max_value=MAX_TS_MS - 1)
            | st.sampled_from(["2026-11-22T09:00:00Z", "2026-11-22T09:00:00", MAX_TS_MS, -1])
        ),
        "campaign_id": draw(st.text(min_size=1, max_size=10)),
        "creator_id": draw(st.text(min_size=1, max_size=10)),
        "post_id": draw(st.text(min_size=1, max_size=10)),
    }
    for name in COUNTERS:
        if draw(st.booleans()):
            event[name] = draw(st.integers(min_value=0, max_value=2**53) | huge_ints)
    for name in list(event):
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            event[name] = draw(json_values)
    if draw(st.booleans()):
        del event[draw(st.sampled_from(sorted(event)))]
    return event


def dumps(value: Any) -> bytes:
    # The standard library writes any integer and escapes surrogates; orjson does neither.
    return json.dumps(value, ensure_ascii=True).encode()


def check_accounting(value: bytes | None, decoded: Decoded) -> None:
    """Every element is an event or a dead letter (the record as a whole, if it cannot be
    split), and the per-record dead-letter bound says how many it left unlisted."""
    for rejected in decoded.rejected:
        assert rejected.reason.startswith(REASONS), rejected.reason
        assert isinstance(rejected.payload, bytes)
    whole = len(decoded.rejected) == 1 and not decoded.events and decoded.rejected[0].index == 0
    if whole:
        return
    try:
        parsed = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list):
        assert len(decoded.events) == 1
        assert not decoded.rejected
        return
    unlisted = 0
    if decoded.rejected:
        found = MORE.search(decoded.rejected[-1].reason)
        unlisted = int(found.group(1)) if found else 0
    assert len(decoded.rejected) <= MAX_DEAD_LETTERS_PER_RECORD
    assert len(parsed) <= MAX_BATCH_EVENTS
    assert len(decoded.events) + len(decoded.rejected) + unlisted == len(parsed)
    positions = decoded.positions()
    assert len(positions) == len(decoded.events)
    places = positions + [r.index for r in decoded.rejected]
    assert len(set(places)) == len(places)
    assert all(0 <= p < len(parsed) for p in places)


@EXAMPLES
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    check_accounting(value, decode_record(value))


@EXAMPLES
@given(st.binary(max_size=200).map(lambda b: b"[" + b))
def test_arbitrary_bytes_that_look_like_a_batch_never_raise(value: bytes) -> None:
    check_accounting(value, decode_record(value))


@EXAMPLES
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    raw = dumps(value)
    check_accounting(raw, decode_record(raw))


@EXAMPLES
@given(event_like() | json_values)
def test_events_and_anything_else_never_raise(value: Any) -> None:
    raw = dumps(value)
    decoded = decode_record(raw)
    check_accounting(raw, decoded)
    for event in decoded.events:
        assert 0 <= event.ts < MAX_TS_MS
        assert all(0 <= count <= 2**53 for count in event.counts())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_like() | json_values, max_size=130))
def test_batches_of_anything_account_for_every_element(elements: list[Any]) -> None:
    raw = dumps(elements)
    check_accounting(raw, decode_record(raw))


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(min_value=1, max_value=20_000),
    shape=st.sampled_from(["[", '{"a":']),
    inside=st.booleans(),
)
def test_deep_nesting_never_raises(depth: int, shape: str, inside: bool) -> None:
    close = "]" if shape == "[" else "}"
    nested = shape * depth + "1" + close * depth
    if inside:  # in an unknown field of an otherwise valid event, alone or in a batch
        event = (
            '{"event_id":"e","ts":1,"campaign_id":"c","creator_id":"k","post_id":"p",'
            f'"extra":{nested}}}'
        )
        values = [event.encode(), f"[{event}]".encode()]
    else:
        values = [nested.encode()]
    for value in values:
        check_accounting(value, decode_record(value))


def test_no_value_and_empty_values_are_dead_letters() -> None:
    for value in (None, b"", b"[]", b" "):
        decoded = decode_record(value)
        check_accounting(value, decoded)
        assert not decoded.events
