"""The publisher's batching and delivery bookkeeping, on a fake kafka-python producer.

The real broker is in ``tests/integration/test_publisher.py``; here the questions are
what goes into which record and when: every event exactly once, one creator's events in
order, records within their limits, and no buffered event held back while events more
than ``max_span_ms`` newer go out (the reason the span bound exists).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

import producers.publisher as publisher_module
from producers.publisher import DeliveryError, Publisher
from producers.simulator import SimRecord
from schemas.events import PostStatEvent, decode_record

T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z


@dataclass
class Sent:
    key: bytes | None
    value: bytes
    timestamp_ms: int | None
    #: event ids published but not yet sent when this record was sent (its own excluded)
    held: list[str]


class FakeFuture:
    def __init__(self, error: BaseException | None) -> None:
        self.is_done = True
        self.exception = error

    def failed(self) -> bool:
        return self.exception is not None


@dataclass
class FakeKafka:
    """Stands in for KafkaProducer: records sends, fails the ones it is told to."""

    sent: list[Sent] = field(default_factory=list)
    fail_keys: set[bytes] = field(default_factory=set)
    held: set[str] = field(default_factory=set)  # event ids published, not yet sent
    sent_ids: set[str] = field(default_factory=set)
    config: dict[str, Any] = field(default_factory=lambda: {"enable_idempotence": True})

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any
    ) -> FakeFuture:
        assert value is not None
        ids = {e.event_id for e in decode_record(value).events}
        self.held -= ids
        self.sent_ids |= ids
        self.sent.append(Sent(key, value, kw.get("timestamp_ms"), sorted(self.held)))
        return FakeFuture(RuntimeError("refused") if key in self.fail_keys else None)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()
    monkeypatch.setattr(publisher_module, "KafkaProducer", lambda **config: fake)
    return fake


def record(event_id: str, creator: str, ts: int, *, lazy: bool = False) -> SimRecord:
    value = orjson.dumps(
        {"event_id": event_id, "ts": ts, "campaign_id": "c", "creator_id": creator, "post_id": "p"}
    )
    if lazy:
        return SimRecord.known_valid(creator.encode(), value, ts)
    return SimRecord(creator.encode(), value, ts, PostStatEvent.model_validate_json(value))


def publish(kafka: FakeKafka, publisher: Publisher, records: list[SimRecord]) -> None:
    """Publish one by one, noting which events the publisher holds back."""
    for r in records:
        publisher.publish(r)
        assert r.event is not None
        if r.event.event_id not in kafka.sent_ids:
            kafka.held.add(r.event.event_id)


def event_ids(sent: Sent) -> list[str]:
    return [e.event_id for e in decode_record(sent.value).events]


def test_single_event_records_go_out_as_they_are(kafka: FakeKafka) -> None:
    records = [record(f"e{i}", "alice", T0 + i) for i in range(3)]
    bad = SimRecord(b"alice", b"{broken", T0, None, "invalid")
    with Publisher("x:9092", "t") as publisher:
        publisher.publish_many([*records, bad])
    assert [s.value for s in kafka.sent] == [r.value for r in [*records, bad]]
    assert [s.timestamp_ms for s in kafka.sent] == [T0, T0 + 1, T0 + 2, T0]
    assert publisher.stats.records_sent == 4
    assert publisher.stats.events_sent == 3


def test_batches_group_a_creators_events_in_order_and_keep_invalid_records_alone(
    kafka: FakeKafka,
) -> None:
    records = [record(f"e{i}", "alice" if i % 3 else "bob", T0 + i) for i in range(10)]
    bad = SimRecord(b"bob", b"{broken", T0 + 4, None, "invalid")
    with Publisher("x:9092", "t", events_per_record=4) as publisher:
        publisher.publish_many([*records[:5], bad, *records[5:]])
    by_key: dict[bytes | None, list[str]] = defaultdict(list)
    for sent in kafka.sent:
        if sent.value == b"{broken":
            continue
        decoded = decode_record(sent.value)
        assert not decoded.rejected
        assert 1 <= len(decoded.events) <= 4
        assert {e.creator_id.encode() for e in decoded.events} == {sent.key}
        assert sent.timestamp_ms == max(e.ts for e in decoded.events)
        by_key[sent.key].extend(event_ids(sent))
    assert by_key[b"alice"] == [f"e{i}" for i in range(10) if i % 3]
    assert by_key[b"bob"] == ["e0", "e3", "e6", "e9"]
    assert [s.value for s in kafka.sent].count(b"{broken") == 1
    assert publisher.stats.events_sent == 10
    assert publisher.stats.records_sent == len(kafka.sent)


def test_records_known_to_be_valid_are_batched_like_decoded_ones(kafka: FakeKafka) -> None:
    lazy = [record(f"e{i}", "alice", T0 + i, lazy=True) for i in range(5)]
    with Publisher("x:9092", "t", events_per_record=10) as publisher:
        publisher.publish_many(lazy)
    (sent,) = kafka.sent
    assert sent.value == b"[" + b",".join(r.value for r in lazy) + b"]"
    assert publisher.stats.events_sent == 5


def test_an_event_beyond_the_span_sends_every_buffer_first(kafka: FakeKafka) -> None:
    publisher = Publisher("x:9092", "t", events_per_record=100, max_span_ms=30_000)
    publish(
        kafka,
        publisher,
        [
            record("a1", "alice", T0),
            record("b1", "bob", T0 + 20_000),
            record("a2", "alice", T0 + 25_000),
            record("c1", "carol", T0 + 35_000),  # 35 s after the oldest buffered event
        ],
    )
    assert sorted(event_ids(s) for s in kafka.sent) == [["a1", "a2"], ["b1"]]
    publish(kafka, publisher, [record("c2", "carol", T0 + 52_000)])  # 17 s after c1
    assert len(kafka.sent) == 2
    publisher.flush()
    assert [event_ids(s) for s in kafka.sent][2:] == [["c1", "c2"]]


def test_an_event_far_older_than_the_buffers_goes_alone_after_its_creators_buffer(
    kafka: FakeKafka,
) -> None:
    publisher = Publisher("x:9092", "t", events_per_record=100, max_span_ms=30_000)
    publish(
        kafka,
        publisher,
        [
            record("a1", "alice", T0 + 60_000),
            record("b1", "bob", T0 + 61_000),
            record("a-late", "alice", T0),
        ],
    )
    assert [event_ids(s) for s in kafka.sent] == [["a1"], ["a-late"]]
    assert kafka.sent[1].value[:1] == b"{"  # a record of its own, not a batch
    publisher.flush()
    assert [event_ids(s) for s in kafka.sent][2:] == [["b1"]]


def random_stream(rng: random.Random, count: int) -> Iterator[SimRecord]:
    """Mostly rising event times with jitter, creators of very different rates, some late."""
    creators = [f"cr{i}" for i in range(12)]
    weights = [2.0**-i for i in range(12)]
    now = T0
    for i in range(count):
        now += rng.randint(0, 2_000)
        ts = now - rng.randint(0, 5_000)
        if rng.random() < 0.02:
            ts = now - rng.randint(40_000, 200_000)  # late or redelivered
        yield record(f"e{i}", rng.choices(creators, weights)[0], ts)


@pytest.mark.parametrize("seed", range(20))
def test_random_streams_keep_every_promise(kafka: FakeKafka, seed: int) -> None:
    rng = random.Random(seed)
    max_span = rng.choice([5_000, 30_000, 120_000])
    per_record = rng.choice([2, 10, 100])
    records = list(random_stream(rng, 3_000))
    publisher = Publisher("x:9092", "t", events_per_record=per_record, max_span_ms=max_span)
    publish(kafka, publisher, records[:1_500])
    publisher.flush()  # a flush in the middle changes nothing below
    publish(kafka, publisher, records[1_500:])
    publisher.close()

    ts_of = {r.event.event_id: r.timestamp_ms for r in records if r.event}
    order: dict[bytes | None, list[str]] = defaultdict(list)
    for sent in kafka.sent:
        ids = event_ids(sent)
        assert 1 <= len(ids) <= per_record
        assert sent.timestamp_ms == max(ts_of[i] for i in ids)
        order[sent.key].extend(ids)
        # Nothing published earlier and still buffered is more than the span older.
        assert all(ts_of[i] >= max(ts_of[j] for j in ids) - max_span for i in sent.held)
    expected: dict[bytes | None, list[str]] = defaultdict(list)
    for r in records:
        assert r.event is not None
        expected[r.key].append(r.event.event_id)
    assert order == expected  # each event once, in publish order per creator
    assert publisher.stats.events_sent == len(records)


def test_failed_sends_are_counted_and_raised_once_at_flush(kafka: FakeKafka) -> None:
    kafka.fail_keys.add(b"bob")
    publisher = Publisher("x:9092", "t", events_per_record=10)
    publisher.publish_many(
        [record("a1", "alice", T0), record("b1", "bob", T0), record("b2", "bob", T0)]
    )
    with pytest.raises(DeliveryError) as caught:
        publisher.flush()
    assert (caught.value.failed_records, caught.value.failed_events) == (1, 2)
    assert publisher.stats.events_failed == 2
    publisher.flush()  # reported once
    publisher.close()
