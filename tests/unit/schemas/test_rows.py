"""Window rows and dead letters as JSON on Kafka, and how the sink batches them."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from schemas.metrics import METRICS
from schemas.rows import (
    MAX_DEAD_LETTER_PAYLOAD,
    MAX_REASON_CHARS,
    CreatorWindowRow,
    DeadLetter,
    dead_letter_from_json,
    dead_letter_to_json,
    window_row_from_json,
    window_row_to_json,
    window_rows_from_json,
)
from schemas.topics import Topics
from sinks.service import SinkTopics, collect

TOPICS = SinkTopics("app-window-rows", "post-stats-dead-letters", "profiles", "contracts")


def row(creator: str = "cr-1", views: int = 10, start: int = 60_000) -> CreatorWindowRow:
    counts = (views, 2, 0, 0, 0, 1500, 1, 0, 3, 1, 499)
    return CreatorWindowRow("camp", creator, 60, start, counts)


def test_window_row_round_trips_with_named_counters() -> None:
    original = row()
    message = orjson.loads(window_row_to_json(original))
    assert message["views"] == 10
    assert message["revenue_cents"] == 499
    assert set(METRICS) <= set(message)
    assert window_row_from_json(window_row_to_json(original)) == original


@pytest.mark.parametrize(
    "change",
    [
        {"views": -1},
        {"window_size_s": 0},
        {"campaign_id": ""},
        {"window_start_ms": "60000"},  # strict: a number, not text
        {"likes": 1.5},
    ],
)
def test_window_row_from_json_refuses_what_the_worker_never_writes(
    change: dict[str, object],
) -> None:
    message = {**orjson.loads(window_row_to_json(row())), **change}
    with pytest.raises(ValidationError):
        window_row_from_json(orjson.dumps(message))


def test_dead_letter_round_trips_through_the_contract_topic_format() -> None:
    dead = DeadLetter(datetime(2026, 11, 22, 9, 0, tzinfo=UTC), "in", 3, 42, 1, "bad_json: x", b"{")
    message = orjson.loads(dead_letter_to_json(dead))
    assert message["received_at"] == "2026-11-22T09:00:00+00:00"
    assert dead_letter_from_json(dead_letter_to_json(dead)) == dead
    with pytest.raises(ValidationError, match="timezone"):
        dead_letter_from_json(orjson.dumps({**message, "received_at": "2026-11-22T09:00:00"}))


def test_a_huge_dead_letter_keeps_its_head_size_and_hash_and_fits_a_kafka_record() -> None:
    # Issue 8, finding 1: this record's dead letter, escaped in full, was 5.4 MB on the
    # dead-letter topic, which the worker's producer refused, crash-looping the worker.
    payload = b"[" + b"\x01" * 900_000
    dead = DeadLetter(datetime.now(UTC), "in", 0, 7, 0, "bad_json: " + "x" * 5000, payload)
    assert dead.payload == payload[:MAX_DEAD_LETTER_PAYLOAD]
    assert dead.payload_size == len(payload)
    assert dead.truncated
    assert dead.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert len(dead.reason) == MAX_REASON_CHARS
    encoded = dead_letter_to_json(dead)
    assert len(encoded) < 512 * 1024  # every control byte escapes to six
    assert dead_letter_from_json(encoded) == dead


def test_a_small_dead_letter_is_kept_whole() -> None:
    dead = DeadLetter(datetime.now(UTC), "in", 0, 7, 0, "bad_json: x", b"{oops")
    assert (dead.payload, dead.payload_size, dead.truncated) == (b"{oops", 5, False)


def test_dead_letters_written_before_the_cut_are_measured_on_reading() -> None:
    message = orjson.loads(
        dead_letter_to_json(DeadLetter(datetime.now(UTC), "in", 0, 7, 0, "r", b"{}"))
    )
    del message["payload_size"], message["payload_sha256"]
    dead = dead_letter_from_json(orjson.dumps(message))
    assert dead.payload_size == 2
    assert dead.payload_sha256 == hashlib.sha256(b"{}").hexdigest()


def test_collect_keeps_the_newest_row_per_window_and_sorts_by_topic() -> None:
    older, newer, other = row(views=10), row(views=25), row("cr-2", views=5)
    profile = b'{"creator_id": "cr-1", "handle": "@a", "follower_count": 20000, "niche": "food"}'
    contract = b'{"campaign_id": "camp", "creator_id": "cr-1", "fee": 500.0, "currency": "USD"}'
    dead = DeadLetter(datetime.now(UTC), "in", 0, 7, 0, "invalid: ts", b"{}")
    batch = collect(
        [
            (TOPICS.window_rows, window_row_to_json(newer)),
            (TOPICS.window_rows, window_row_to_json(older)),  # replayed, lower version
            (TOPICS.window_rows, window_row_to_json(other)),
            (TOPICS.dead_letters, dead_letter_to_json(dead)),
            (TOPICS.profiles, profile),
            (TOPICS.profiles, None),  # a tombstone on a compacted topic
            (TOPICS.contracts, contract),
        ],
        TOPICS,
    )
    assert batch.rows() == [newer, other]  # one row per window, the newest
    assert batch.dead_letters == [dead]
    assert [p.creator_id for p in batch.profiles] == ["cr-1"]
    assert [c.fee for c in batch.contracts] == [500.0]
    assert batch.invalid == 0
    assert not batch.empty()


def test_collect_counts_bad_records_instead_of_raising() -> None:
    batch = collect(
        [
            (TOPICS.window_rows, b"not json"),
            (TOPICS.dead_letters, b'{"topic": "x"}'),
            (TOPICS.profiles, b'{"creator_id": ""}'),
            (TOPICS.window_rows, window_row_to_json(row())),
        ],
        TOPICS,
    )
    assert batch.invalid == 3
    assert batch.rows() == [row()]


def test_window_rows_topic_is_named_after_the_group() -> None:
    assert Topics(app_id="creatorpulse").window_rows == "creatorpulse-window-rows"


def test_window_rows_records_are_arrays_keyed_by_campaign_and_read_back() -> None:
    from streams.changelog import MAX_CHANGELOG_VALUE
    from streams.outputs.topic import window_row_records

    rows = [row(f"cr-{i}", views=i) for i in range(5_000)]
    rows.append(CreatorWindowRow("other", "cr-1", 60, 60_000, row().counts))
    records = window_row_records(rows, "app-window-rows")
    keys = {key for _, key, _, _ in records}
    assert keys == {b"camp", b"other"}
    assert len(records) > 2
    assert all(len(v or b"") <= MAX_CHANGELOG_VALUE for *_, v, _ in records)
    read = [r for _, _, value, _ in records for r in window_rows_from_json(value or b"")]
    assert read == rows


def test_collect_reads_array_records_and_single_rows_of_older_workers() -> None:
    from streams.outputs.topic import window_row_records

    (_, _, value, _), *_ = window_row_records([row(views=30), row("cr-2")], TOPICS.window_rows)
    assert value is not None
    batch = collect(
        [(TOPICS.window_rows, value), (TOPICS.window_rows, window_row_to_json(row(views=12)))],
        TOPICS,
    )
    assert {r.key: r.counts[0] for r in batch.rows()} == {
        ("camp", "cr-1", 60, 60_000): 30,  # the older single row has a lower version
        ("camp", "cr-2", 60, 60_000): 10,
    }


# -- the msgspec fast path reads window rows exactly as the pydantic model does ---------

_BIG = "__beyond 64 bits__"  # orjson writes no such integer: put in as text
_ODD_INTS = [-1, 0, 1, 2**53, 2**53 + 1, _BIG, 1.0, 1.5, True, "5", None, [1]]
_ODD_IDS = ["", "x" * 128, "x" * 129, "é" * 128, "😀" * 128, "😀" * 129, "a\x00b", 5, None]


def _mutated_element(rng: random.Random) -> bytes:
    """A worker's row with up to three odd fields, sometimes odd JSON text as well."""
    data = orjson.loads(window_row_to_json(row(f"cr-{rng.randrange(99)}", rng.randrange(10**6))))
    for _ in range(rng.randrange(4)):
        match rng.randrange(5):
            case 0:
                data[rng.choice(METRICS)] = rng.choice(_ODD_INTS)
            case 1:
                data[rng.choice(("window_size_s", "window_start_ms"))] = rng.choice(_ODD_INTS)
            case 2:
                data[rng.choice(("campaign_id", "creator_id"))] = rng.choice(_ODD_IDS)
            case 3:
                data.pop(rng.choice(list(data)), None)
            case 4:
                data[rng.choice(("extra", "version"))] = rng.choice([1.5, [1], {}])
    text = orjson.dumps(data).replace(f'"{_BIG}"'.encode(), str(2**64 * 3).encode())
    match rng.randrange(5):
        case 0:  # a repeated key: the last one counts
            text = text[:-1] + b',"views":' + str(rng.randrange(-1, 3)).encode() + b"}"
        case 1:  # JSON only pydantic's parser takes
            text = text[:-1] + b',"score":NaN}'
        case 2:  # an escaped lone surrogate
            text = text.replace(b'"cr-', b'"\\ud800cr-', 1)
    return text


def _one_by_one(elements: list[bytes]) -> list[CreatorWindowRow] | None:
    """The record as the pydantic model reads it, element by element (None: refused)."""
    try:
        return [window_row_from_json(element) for element in elements]
    except ValidationError:
        return None


def test_window_rows_decode_exactly_as_the_pydantic_model_reads_each_row() -> None:
    rng = random.Random(20261203)
    accepted = refused = 0
    for _ in range(3000):
        elements = [_mutated_element(rng) for _ in range(rng.choice((1, 1, 2, 3)))]
        expected = _one_by_one(elements)
        value = b"[" + b",".join(elements) + b"]"
        if expected is None:
            refused += 1
            with pytest.raises(ValidationError):
                window_rows_from_json(value)
        else:
            accepted += 1
            assert window_rows_from_json(value) == expected
    # Both sides of the property were exercised.
    assert accepted > 600
    assert refused > 600


def test_window_rows_the_worker_writes_are_read_without_the_pydantic_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(value: bytes) -> None:
        raise AssertionError("the slow path read a row the worker wrote")

    monkeypatch.setattr("schemas.rows._WindowRowsMessage.validate_json", refuse)
    rows = [row("cr-1"), row("cr-2", views=2**53, start=0)]
    value = b"[" + b",".join(window_row_to_json(r) for r in rows) + b"]"
    assert window_rows_from_json(value) == rows
