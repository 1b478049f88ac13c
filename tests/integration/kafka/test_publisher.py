"""The publisher and the publish loops against a real broker.

What comes back must be what the contract promises: keys are creators, record
timestamps are event times, every event arrives exactly as sent (batch records
decode into the same events), invalid records arrive unchanged, and a failed send
surfaces as a :class:`DeliveryError`.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from producers.loops import replay_file, simulate
from producers.publisher import DeliveryError, Publisher
from producers.simulator import CampaignSimulator, SimRecord, SimulationConfig
from schemas.events import MAX_BATCH_RECORD_BYTES, DecodedEvent, PostStatEvent, decode_record
from schemas.reference import CampaignContract, CreatorProfile
from tests.support.fixtures.kafka import create_topic

pytestmark = pytest.mark.kafka

T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z
PARTITIONS = 3


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0
) -> list[ConsumerRecord]:
    """The topic's records, partition by partition in offset order.

    Reads until ``expected`` records came, then briefly on to catch any extra. Not up
    to the end offsets: the embedded broker (tansu 0.6.0) was seen answering
    ListOffsets with a stale, lower end offset after every write was acknowledged.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        by_partition: dict[int, list[ConsumerRecord]] = defaultdict(list)
        count = 0
        deadline = time.monotonic() + timeout_s
        while count < expected:
            assert time.monotonic() < deadline, f"read {count} of {expected} records"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                by_partition[tp.partition].extend(batch)
                count += len(batch)
        for tp, batch in consumer.poll(timeout_ms=300).items():
            by_partition[tp.partition].extend(batch)
        return [record for p in sorted(by_partition) for record in by_partition[p]]
    finally:
        consumer.close()


def simulated_records() -> list[SimRecord]:
    config = SimulationConfig(
        seed=17,
        campaigns=2,
        creators_per_campaign=10,
        duplicate_rate=0.05,
        late_rate=0.05,
        bad_rate=0.05,
        stale_rate=0.05,
        poll_interval_s=10.0,
    )
    sim = CampaignSimulator(config)
    records = sim.tick(T0, 0.0)
    for second in range(1, 1201):
        records += sim.tick(T0 + second * 1000, 1.0)
    return records


@pytest.mark.parametrize("events_per_record", [1, 50])
def test_every_event_arrives_keyed_by_creator_at_event_time(
    kafka_bootstrap: str, unique_name: Callable[[str], str], events_per_record: int
) -> None:
    topic = unique_name("post-stats")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    records = simulated_records()
    sent_events = [DecodedEvent.from_model(r.event) for r in records if r.event is not None]
    sent_invalid = [r.value for r in records if r.event is None]
    assert len(sent_events) > 500
    assert sent_invalid

    # A wide span lets this sparse stream (one poll per post every 10 s) fill batches.
    with Publisher(
        kafka_bootstrap, topic, events_per_record=events_per_record, max_span_ms=300_000
    ) as publisher:
        assert publisher.idempotent
        publisher.publish_many(records)
    stats = publisher.stats

    consumed = consume_all(kafka_bootstrap, topic, stats.records_sent)
    received: list[DecodedEvent] = []
    received_invalid: list[bytes] = []
    order_by_key: dict[bytes, list[str]] = defaultdict(list)
    for message in consumed:
        decoded = decode_record(message.value)
        if not decoded.events:
            received_invalid.append(message.value)
            continue
        assert not decoded.rejected
        assert len(decoded.events) <= events_per_record
        assert len(message.value) <= MAX_BATCH_RECORD_BYTES
        assert {e.creator_id.encode() for e in decoded.events} == {message.key}
        # A batch record carries its newest event's time.
        assert message.timestamp == max(e.ts for e in decoded.events)
        received.extend(decoded.events)
        order_by_key[message.key].extend(e.event_id for e in decoded.events)

    assert Counter(received) == Counter(sent_events)
    assert Counter(received_invalid) == Counter(sent_invalid)
    # One creator's events stay in publish order (they share a partition).
    expected_order: dict[bytes, list[str]] = defaultdict(list)
    for event in sent_events:
        expected_order[event.creator_id.encode()].append(event.event_id)
    assert order_by_key == expected_order

    assert stats.records_sent == len(consumed)
    assert stats.events_sent == len(sent_events)
    assert stats.records_failed == 0
    if events_per_record > 1:
        assert len(consumed) < len(sent_events) / 5 + len(sent_invalid)


def test_publish_event_uses_the_events_key_and_time(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("post-stats")
    create_topic(kafka_bootstrap, topic, 1)
    event = PostStatEvent.model_validate(
        {"event_id": "e-1", "ts": T0, "campaign_id": "c", "creator_id": "alice", "post_id": "p"}
    )
    with Publisher(kafka_bootstrap, topic) as publisher:
        publisher.publish_event(event)
    (message,) = consume_all(kafka_bootstrap, topic, 1)
    assert message.key == b"alice"
    assert message.timestamp == T0
    assert decode_record(message.value).events == [DecodedEvent.from_model(event)]


def test_a_failed_send_raises_delivery_error_at_flush(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("post-stats")
    create_topic(kafka_bootstrap, topic, 1)
    publisher = Publisher(kafka_bootstrap, topic)
    try:
        publisher.publish_raw(b"x" * (3 * 1024 * 1024), key=b"alice")  # over any limit
        publisher.publish_raw(b"{}", key=b"bob")
        with pytest.raises(DeliveryError) as caught:
            publisher.flush()
        assert caught.value.failed_records == 1
        assert publisher.stats.records_failed == 1
        publisher.flush()  # the error was reported once; the rest was delivered
    finally:
        publisher.close()
    assert [m.key for m in consume_all(kafka_bootstrap, topic, 1)] == [b"bob"]


def test_simulate_publishes_reference_data_and_events(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    events, profiles, contracts = (
        unique_name(name) for name in ("post-stats", "creator-profiles", "campaign-contracts")
    )
    for name in (events, profiles, contracts):
        create_topic(kafka_bootstrap, name, PARTITIONS)
    sim = CampaignSimulator(SimulationConfig(seed=5, campaigns=2, creators_per_campaign=6))
    with Publisher(kafka_bootstrap, events, events_per_record=20) as publisher:
        stats = simulate(
            publisher,
            sim,
            duration_s=600,
            realtime=False,
            progress=False,
            start_ms=T0,
            profiles_topic=profiles,
            contracts_topic=contracts,
        )
    got_profiles = {
        m.key: CreatorProfile.model_validate_json(m.value)
        for m in consume_all(kafka_bootstrap, profiles, len(sim.profiles()))
    }
    assert got_profiles == {p.creator_id.encode(): p for p in sim.profiles()}
    got_contracts = {
        m.key: CampaignContract.model_validate_json(m.value)
        for m in consume_all(kafka_bootstrap, contracts, len(sim.contracts()))
    }
    assert got_contracts == {c.key(): c for c in sim.contracts()}
    # The publisher's record count includes the reference records.
    on_events_topic = stats.publisher.records_sent - stats.reference_records
    consumed = consume_all(kafka_bootstrap, events, on_events_topic)
    received = [e for m in consumed for e in decode_record(m.value).events]
    assert len(received) == stats.labels["ok"] > 0
    assert all(T0 < e.ts <= T0 + 600_000 for e in received)


def test_replay_file_publishes_every_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_name("post-stats")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    lines = [
        orjson.dumps(
            {
                "event_id": f"e-{i}",
                "ts": T0 + i,
                "campaign_id": "c",
                "creator_id": f"creator-{i % 4}",
                "post_id": "p",
                "views": i,
            }
        )
        for i in range(200)
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*lines[:100], b"{broken", *lines[100:]]) + b"\n")
    with Publisher(kafka_bootstrap, topic, events_per_record=10) as publisher:
        stats = replay_file(publisher, path, progress=False)
    assert stats.records == 201
    assert stats.valid_events == 200
    assert stats.rejected == 1
    consumed = consume_all(kafka_bootstrap, topic, publisher.stats.records_sent)
    events = [e for m in consumed for e in decode_record(m.value).events]
    assert sorted(e.views for e in events) == list(range(200))
    assert [m.value for m in consumed if m.value == b"{broken"] == [b"{broken"]
