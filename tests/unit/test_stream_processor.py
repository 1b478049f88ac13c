"""The worker's flush cycle with the Kafka pieces faked: what ends up in the changelog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.types import TP

from schemas.rows import CreatorWindowRow, DeadLetter
from streams.app import StreamProcessor, WorkerConfig, partition_for
from streams.sink_writer import SinkWriter
from streams.state import MAX_CHANGELOG_VALUE, changelog_partition

T0 = 1_795_338_000_000


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class FakeEvent:
    message: Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


CHANGELOG = "app-state-changelog"


class ChangelogTopic:
    def get_topic_name(self) -> str:
        return CHANGELOG


@dataclass
class Table:
    data: dict[bytes, bytes] = field(default_factory=dict)
    changelog_topic: ChangelogTopic = field(default_factory=ChangelogTopic)


@dataclass
class SlowProducer:
    """Acknowledges after a few loop turns: time for the sink write to finish first.

    ``refuse`` holds keys whose next delivery fails once (as a broker refusing them).
    """

    sent: list[tuple[str, bytes | None, bytes | None, int | None]] = field(default_factory=list)
    refuse: set[bytes] = field(default_factory=set)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[None]:
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key in self.refuse:
            self.refuse.discard(key)
            delivery.set_exception(RuntimeError("MessageSizeTooLargeError (test)"))
        else:
            self.sent.append((topic, key, value, partition))
            delivery.set_result(None)
        return delivery

    async def flush(self) -> None:
        await asyncio.sleep(0.05)


@dataclass
class Consumer:
    """What the flush uses of Faust's consumer: its committed view and commit path."""

    _committed_offset: dict[TP, int] = field(default_factory=dict)
    commits: list[dict[TP, int]] = field(default_factory=list)

    async def _commit_offsets(self, offsets: dict[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        self._committed_offset.update(offsets)
        return True


@dataclass
class App:
    producer: SlowProducer = field(default_factory=SlowProducer)
    consumer: Consumer = field(default_factory=Consumer)


@dataclass
class InstantSink:
    windows: list[CreatorWindowRow] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def write_creator_windows(self, rows: list[CreatorWindowRow]) -> None:
        self.windows.extend(rows)

    def write_dead_letters(self, rows: list[DeadLetter]) -> None:
        self.dead.extend(rows)


def record(offset: int, value: bytes) -> FakeEvent:
    return FakeEvent(Message("post-stats", 0, offset, value))


def event_json(event_id: str, ts: int, views: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "ts": ts,
            "campaign_id": "camp",
            "creator_id": "cr-0",  # partition 0 of 1
            "post_id": "p1",
            "views": views,
        }
    )


def test_each_flush_commits_what_its_checkpoint_covers() -> None:
    async def scenario() -> Consumer:
        writer = SinkWriter(InstantSink())
        writer.start()
        app = App()
        processor = StreamProcessor(
            app,  # type: ignore[arg-type]
            WorkerConfig(kafka_bootstrap="x:1", partitions=1),
            writer,
            Table(),
        )
        processor.restore([0])
        async with processor.lock:
            processor.apply_batch([record(7, event_json("e1", T0, 5))])
        await processor.flush()
        async with processor.lock:
            processor.apply_batch([record(8, b"[]"), record(9, event_json("e2", T0, 1))])
        # Faust's view is already past offset 9 (e.g. its own commit got there first).
        app.consumer._committed_offset[TP("post-stats", 0)] = 12
        await processor.flush()
        await writer.stop()
        return app.consumer

    consumer = asyncio.run(scenario())
    # Offset 7 applied and durable: the group may resume at 8. Never a step back.
    assert consumer.commits == [{TP("post-stats", 0): 8}]


def test_dead_letters_already_written_leave_no_segment_in_the_changelog() -> None:
    async def scenario() -> tuple[Table, InstantSink, list[FakeEvent]]:
        sink = InstantSink()
        writer = SinkWriter(sink)
        writer.start()
        table = Table()
        processor = StreamProcessor(
            App(),  # type: ignore[arg-type]
            WorkerConfig(kafka_bootstrap="x:1", partitions=1),
            writer,
            table,
        )
        events = [record(0, event_json("e1", T0, 5)), record(1, b"{not json")]
        processor.restore([0])
        async with processor.lock:
            processor.apply_batch(events)
        await processor.flush()
        await writer.drain()
        await processor.flush()  # the next flush must not bring the segment back
        await writer.stop()
        return table, sink, events

    table, sink, events = asyncio.run(scenario())
    assert [d.reason.split(":")[0] for d in sink.dead] == ["bad_json"]
    assert sum(r.counts[0] for r in sink.windows if r.window_size_s == 60) == 5
    assert all(e.acked for e in events)
    # The dead letter is in the sink, so its changelog segment has no reason to stay:
    # left behind, a restart would write it again and keep it in memory until then.
    segments = [key for key in table.data if orjson.loads(key)[1] == "x"]
    assert segments == []
    assert {changelog_partition(key) for key in table.data} == {0}


def processor_with(
    sink: InstantSink, app: App | None = None, table: Table | None = None, partitions: int = 1
) -> tuple[StreamProcessor, SinkWriter, App, Table]:
    writer = SinkWriter(sink)
    writer.start()
    app = app or App()
    table = table or Table()
    config = WorkerConfig(kafka_bootstrap="x:1", partitions=partitions)
    processor = StreamProcessor(app, config, writer, table)  # type: ignore[arg-type]
    return processor, writer, app, table


def test_a_record_kafka_refuses_holds_the_checkpoint_back_until_it_is_through() -> None:
    async def scenario() -> tuple[App, list[list[dict[TP, int]]]]:
        processor, writer, app, _ = processor_with(InstantSink())
        processor.restore([0])
        async with processor.lock:
            processor.apply_batch([record(3, event_json("e1", T0, 5))])
        app.producer.refuse.add(orjson.dumps([0, "d", 1, 0]))  # the dedup segment
        await processor.flush()
        commits = [list(app.consumer.commits)]
        await processor.flush()
        commits.append(list(app.consumer.commits))
        await writer.stop()
        return app, commits

    app, commits = asyncio.run(scenario())
    assert commits == [[], [{TP("post-stats", 0): 4}]]
    keys = [key for _, key, _, _ in app.producer.sent]
    # Sent again before the checkpoint, which is written only once the segment is in.
    assert keys.index(orjson.dumps([0, "d", 1, 0])) < keys.index(orjson.dumps([0, "c"]))


def test_assigned_partitions_rewrite_their_windows_without_a_new_record() -> None:
    # Issue 8, finding 11: after a kill -9 between a durable checkpoint and the sink's
    # write, only partitions that got a new record were rewritten; a finished campaign's
    # last windows stayed short in ClickHouse for good.
    async def scenario() -> InstantSink:
        first, writer, _, table = processor_with(InstantSink(), partitions=1)
        first.restore([0])
        async with first.lock:
            first.apply_batch([record(0, event_json("e1", T0, 5))])
        await first.flush()  # durable in the changelog; the sink's write is lost below
        await writer.stop()
        sink = InstantSink()
        restarted, writer, _, _ = processor_with(sink, table=table)
        restarted.restore([0])  # what the worker does once the changelog is recovered
        await writer.drain()
        await writer.stop()
        return sink

    sink = asyncio.run(scenario())
    assert [(r.window_size_s, r.counts[0]) for r in sink.windows] == [(60, 5), (3600, 5)]


def test_forwarded_events_are_split_into_records_kafka_accepts() -> None:
    async def scenario() -> App:
        processor, writer, app, _ = processor_with(InstantSink(), partitions=4)
        other = next(f"cr-{i}" for i in range(100) if partition_for(f"cr-{i}".encode(), 4) != 0)
        # Minimal events re-encoded whole (every counter, the kind) grow threefold.
        batch = [
            {
                "event_id": f"{i:05d}",
                "ts": T0,
                "campaign_id": "c",
                "creator_id": other,
                "post_id": "p",
            }
            for i in range(10_000)
        ]
        value = orjson.dumps(batch)
        assert len(value) < 1024 * 1024  # a record the contract accepts
        processor.restore([0])
        async with processor.lock:
            processor.apply_batch([FakeEvent(Message("post-stats", 0, 0, value))])
        await processor.flush()
        await writer.stop()
        return app

    app = asyncio.run(scenario())
    forwarded = [v for t, _, v, _ in app.producer.sent if t.endswith("-rekeyed") and v]
    assert len(forwarded) > 1
    assert all(len(v) <= MAX_CHANGELOG_VALUE for v in forwarded)
    assert sum(len(orjson.loads(v)) for v in forwarded) == 10_000


def test_the_dead_letter_of_a_huge_bad_record_fits_a_kafka_record() -> None:
    async def scenario() -> App:
        processor, writer, app, _ = processor_with(InstantSink())
        processor.restore([0])
        async with processor.lock:
            processor.apply_batch([record(0, b"[" + b"\x01" * 900_000)])
        await processor.flush()
        await writer.stop()
        return app

    app = asyncio.run(scenario())
    (dead,) = [v for t, _, v, _ in app.producer.sent if t == "post-stats-dead-letters"]
    assert dead is not None and len(dead) <= MAX_CHANGELOG_VALUE
    assert max(len(v or b"") for _, _, v, _ in app.producer.sent) <= MAX_CHANGELOG_VALUE
