"""The bench's Kafka Streams baseline does the worker's work, on real Apache Kafka.

A baseline that silently did less (skipped events, lost the elements of a batch record,
windowed by record time, dropped windows as late) would flatter its figures. So it runs
here over a small topic of each record shape, as the bench runs it, and every window
total it writes must equal what creatorpulse's own pure window code
(``streams.state.PartitionState``) makes of the same records, partition by partition in
offset order; and it must say it counted every event.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from creatorpulse.bench.kafka_streams import build_jar, run_kstreams
from creatorpulse.bench.options import GRACE_S, PARTITIONS, THROUGHPUT_SPAN_S
from creatorpulse.bench.workload import even_rate, publish, simulator
from schemas.events import decode_record
from schemas.metrics import METRICS
from streams.state import PartitionState
from streams.windows import DEFAULT_WINDOW_SIZES_S
from tests.support.fixtures.kafka import create_topic

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        shutil.which("mvn") is None or shutil.which("java") is None,
        reason="the Kafka Streams baseline is built with Maven and runs on Java 17",
    ),
]

Key = tuple[str, str, int, int]


def read_partitions(bootstrap: str, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of ``topic`` up to its end offsets: (offset, value) per partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                out[tp.partition] += [(r.offset, r.value) for r in batch]
        return out
    finally:
        consumer.close()


def worker_totals(bootstrap: str, topic: str) -> dict[Key, tuple[int, ...]]:
    """The window totals creatorpulse's partition state computes from the topic."""
    totals: dict[Key, tuple[int, ...]] = {}
    now_ms = int(time.time() * 1000)
    for partition, records in read_partitions(bootstrap, topic).items():
        state = PartitionState(partition, window_sizes_s=DEFAULT_WINDOW_SIZES_S, grace_s=GRACE_S)
        for offset, value in records:
            decoded = decode_record(value)
            assert not decoded.rejected, decoded.rejected
            state.apply_record(topic, offset, decoded.events, now_ms=now_ms)
        for row in state.all_rows():
            assert row.key not in totals, f"{row.key} on two partitions"
            totals[row.key] = row.counts
    return totals


def baseline_totals(bootstrap: str, topic: str) -> dict[Key, tuple[int, ...]]:
    """The last row the baseline wrote for each window (rows of a campaign share a
    partition, in the order they were written)."""
    totals: dict[Key, tuple[int, ...]] = {}
    for records in read_partitions(bootstrap, topic).values():
        for _, value in records:
            row = orjson.loads(value)
            key = (row["campaign_id"], row["creator_id"], row["window_size_s"])
            totals[(*key, row["window_start_ms"])] = tuple(row[name] for name in METRICS)
    return totals


@pytest.mark.parametrize(
    ("shape", "events", "per_record"), [("batch", 6000, 100), ("single", 800, 1)]
)
def test_kstreams_baseline_writes_the_workers_window_totals(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    shape: str,
    events: int,
    per_record: int,
) -> None:
    topic, output = unique_name(f"ks-in-{shape}"), unique_name(f"ks-out-{shape}")
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    create_topic(kafka_bootstrap, output, PARTITIONS)
    # As the bench's throughput data: 900 s of event time ending now, so the earliest
    # 60 s windows pass their grace while the baseline reads (closing is part of the work).
    start_ms = int(time.time() * 1000) - int(THROUGHPUT_SPAN_S * 1000)
    sim = simulator(3, 100, 7, unique_name("ks"))
    records = sim.events_at_rate(start_ms, even_rate(events, THROUGHPUT_SPAN_S), events)
    published = publish(kafka_bootstrap, topic, records, events_per_record=per_record)
    assert published["events"] == events
    if per_record > 1:
        # (A creator's events of up to two minutes make one record.)
        assert published["records"] < events / 2, "batch records hold many events"

    jar = build_jar(tmp_path / "mvn.log")
    figures = run_kstreams(
        jar, kafka_bootstrap, topic, output, events, tmp_path, f"ks-{shape}", timeout_s=120
    )

    assert figures["events"] == events
    assert figures["records"] == published["records"]
    assert figures["invalid"] == 0
    assert figures["late_dropped"] == 0
    assert figures["cpu_s_per_event"] > 0
    expected = worker_totals(kafka_bootstrap, topic)
    # Both window sizes, and more than one 60 s window per creator.
    assert {key[2] for key in expected} == set(DEFAULT_WINDOW_SIZES_S)
    assert len(expected) > 2 * len({key[:2] for key in expected})
    assert baseline_totals(kafka_bootstrap, output) == expected
