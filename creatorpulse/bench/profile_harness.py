"""CPU per event of the stream processor alone, without Kafka: a profiling harness.

Builds a :class:`StreamProcessor` on the in-memory ports of ``streams.testing``, feeds
it records of the benchmark's workload (single-event records, or batch records of up
to ``--per-record`` events grouped per creator as the publisher groups them) in
fetches of ``--fetch`` records per partition, flushes every ``--flush-every`` records
and once at the end, and prints the process CPU time per event. Run it under py-spy
to see where that time goes::

    python -m creatorpulse.bench.profile_harness --shape single --events 200000
    py-spy record --format speedscope -o prof.json -- \\
        python -m creatorpulse.bench.profile_harness --shape batch
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict

from creatorpulse.bench.workload import simulator
from streams.config import WorkerConfig
from streams.processor import StreamProcessor, partition_for
from streams.testing import (
    InMemoryChangelog,
    RecordingCommitter,
    RecordingProducer,
    TestMessage,
)

PARTITIONS = 4


def workload(events: int, per_record: int, topic: str) -> list[TestMessage]:
    """The records of ``events`` simulated events, in the order a fetch delivers them."""
    sim = simulator(3, 100, 7, "profile")
    start_ms = int(time.time() * 1000) - 60_000
    pending: dict[bytes, list[bytes]] = defaultdict(list)
    values: list[tuple[bytes, bytes]] = []
    for rec in sim.events_at_rate(start_ms, events / 60.0, events):
        key = rec.key or b""
        if per_record == 1:
            values.append((key, rec.value))
            continue
        group = pending[key]
        group.append(rec.value)
        if len(group) >= per_record:
            values.append((key, b"[" + b",".join(group) + b"]"))
            group.clear()
    values += [(k, b"[" + b",".join(g) + b"]") for k, g in pending.items() if g]
    offsets = [0] * PARTITIONS
    out = []
    for key, value in values:
        p = partition_for(key, PARTITIONS)
        out.append(TestMessage(topic, p, offsets[p], value))
        offsets[p] += 1
    return out


async def run(messages: list[TestMessage], fetch: int, flush_every: int) -> StreamProcessor:
    config = WorkerConfig(kafka_bootstrap="unused", partitions=PARTITIONS)
    processor = StreamProcessor(
        config, None, RecordingProducer(), InMemoryChangelog(), RecordingCommitter()
    )
    processor.restore(range(PARTITIONS))
    by_partition: dict[int, list[TestMessage]] = defaultdict(list)
    for m in messages:
        by_partition[m.partition].append(m)
    # Fetches take turns between partitions, as aiokafka's do.
    fetches = []
    for records in by_partition.values():
        fetches += [(i, records[i : i + fetch]) for i in range(0, len(records), fetch)]
    fetches.sort(key=lambda f: f[0])
    since_flush = 0
    for _, batch in fetches:
        processor.apply_records(batch)
        since_flush += len(batch)
        if since_flush >= flush_every:
            await processor.flush()
            since_flush = 0
    await processor.flush()
    return processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("single", "batch"), default="single")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-record", type=int, default=100)
    parser.add_argument("--fetch", type=int, default=500)
    parser.add_argument("--flush-every", type=int, default=50_000)
    args = parser.parse_args()
    per_record = 1 if args.shape == "single" else args.per_record
    config = WorkerConfig(kafka_bootstrap="unused")
    messages = workload(args.events, per_record, config.input_topic)
    cpu0 = time.process_time()
    processor = asyncio.run(run(messages, args.fetch, args.flush_every))
    cpu = time.process_time() - cpu0
    counted = processor.stats.events_counted
    print(
        f"{args.shape}: {len(messages)} records, {counted} events counted, "
        f"{cpu:.2f} s CPU, {cpu / max(counted, 1) * 1e6:.2f} us/event"
    )


if __name__ == "__main__":
    main()
