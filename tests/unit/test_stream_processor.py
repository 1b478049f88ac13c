"""The worker's flush cycle with the Kafka pieces faked: what ends up in the changelog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust.types import TP

from schemas.rows import CreatorWindowRow, DeadLetter
from streams.app import StreamProcessor, WorkerConfig
from streams.sink_writer import SinkWriter
from streams.state import changelog_partition

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


@dataclass
class Table:
    data: dict[bytes, bytes] = field(default_factory=dict)
    sent: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)

    def send_changelog(self, partition: int, key: bytes, value: bytes | None, *_: str) -> None:
        self.sent.append((partition, key, value))


@dataclass
class Topic:
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send_soon(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


class SlowProducer:
    """Acknowledges after a few loop turns: time for the sink write to finish first."""

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
            Topic(),
            Topic(),
        )
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
            Topic(),
            Topic(),
        )
        events = [record(0, event_json("e1", T0, 5)), record(1, b"{not json")]
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
