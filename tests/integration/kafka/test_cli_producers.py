"""`creatorpulse produce` and `creatorpulse replay` as a user runs them, on a real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from creatorpulse.cli import main
from schemas.events import decode_record
from tests.support.fixtures.kafka import create_topic

pytestmark = pytest.mark.kafka


def consume_all(bootstrap: str, topic: str, expected_records: int) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5_000,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            if len(records) >= expected_records:
                break
        return records
    finally:
        consumer.close()


def test_replay_publishes_every_line_keyed_by_creator(
    kafka_bootstrap: str, unique_name: Any, tmp_path: Path
) -> None:
    topic = unique_name("replay")
    create_topic(kafka_bootstrap, topic, 2)
    lines = [
        {
            "event_id": f"r{i}",
            "ts": 1_795_338_000_000 + i,
            "campaign_id": "c",
            "creator_id": f"cr{i % 3}",
            "post_id": "p",
            "views": i,
        }
        for i in range(50)
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n{broken\n")
    code = main(["--kafka-bootstrap", kafka_bootstrap, "--input-topic", topic, "replay", str(path)])
    assert code == 0
    records = consume_all(kafka_bootstrap, topic, 51)
    assert len(records) == 51
    valid = [r for r in records if decode_record(r.value).events]
    assert sorted(r.value for r in valid) == sorted(orjson.dumps(line) for line in lines)
    assert all(r.key == orjson.loads(r.value)["creator_id"].encode() for r in valid)
    assert any(decode_record(r.value).rejected for r in records)  # the broken line went too


def test_produce_sends_reference_data_and_a_simulated_hour(
    kafka_bootstrap: str, unique_name: Any
) -> None:
    topic = unique_name("produce")
    create_topic(kafka_bootstrap, topic, 2)
    code = main(
        [
            "--kafka-bootstrap",
            kafka_bootstrap,
            "--input-topic",
            topic,
            "produce",
            "--duration-s",
            "600",
            "--campaigns",
            "1",
            "--creators",
            "3",
            "--events-per-record",
            "10",
            "--bad-rate",
            "0",
        ]
    )
    assert code == 0
    records = consume_all(kafka_bootstrap, topic, 10**9)
    events = [e for r in records for e in decode_record(r.value).events]
    assert events, "the simulator published nothing"
    assert all(
        r.key == decode_record(r.value).events[0].creator_id.encode()
        for r in records
        if decode_record(r.value).events
    )
    assert len({e.creator_id for e in events}) == 3
