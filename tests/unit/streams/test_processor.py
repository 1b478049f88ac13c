"""The processor's flush cycle over the shipped doubles of its ports (streams.testing)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
import pytest
from faust.types import TP

from sinks.memory import MemoryRowSink
from streams.changelog import MAX_CHANGELOG_VALUE, partition_of
from streams.config import WorkerConfig
from streams.outputs.writer import SinkWriter
from streams.processor import StreamProcessor, partition_for
from streams.testing import (
    InMemoryChangelog,
    RecordingCommitter,
    RecordingProducer,
    record,
)

T0 = 1_795_338_000_000


@dataclass
class Harness:
    """A processor on doubles of every port, and the doubles to look at."""

    processor: StreamProcessor
    writer: SinkWriter
    sink: MemoryRowSink
    producer: RecordingProducer
    changelog: InMemoryChangelog
    committer: RecordingCommitter


def harness(
    sink: MemoryRowSink | None = None,
    *,
    changelog: InMemoryChangelog | None = None,
    partitions: int = 1,
) -> Harness:
    """Call inside a running loop: the writer starts its task."""
    sink = sink or MemoryRowSink()
    writer = SinkWriter(sink)
    writer.start()
    # The flush yields to the loop while "Kafka acknowledges": time for the sink first.
    producer = RecordingProducer(flush_s=0.05)
    changelog = changelog or InMemoryChangelog()
    committer = RecordingCommitter()
    config = WorkerConfig(kafka_bootstrap="x:1", partitions=partitions)
    processor = StreamProcessor(config, writer, producer, changelog, committer)
    return Harness(processor, writer, sink, producer, changelog, committer)


def event_json(event_id: str, ts: int, views: int, creator: str = "cr-0") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "ts": ts,
            "campaign_id": "camp",
            "creator_id": creator,  # cr-0: partition 0 of 1
            "post_id": "p1",
            "views": views,
        }
    )


def test_each_flush_commits_what_its_checkpoint_covers() -> None:
    async def scenario() -> RecordingCommitter:
        h = harness()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records([record(7, event_json("e1", T0, 5))])
        await h.processor.flush()
        async with h.processor.lock:
            h.processor.apply_records([record(8, b"[]"), record(9, event_json("e2", T0, 1))])
        # The consumer is already past offset 9 (e.g. its own commit got there first).
        h.committer.offsets[TP("post-stats", 0)] = 12
        await h.processor.flush()
        await h.writer.stop()
        return h.committer

    committer = asyncio.run(scenario())
    # Offset 7 applied and durable: the group may resume at 8. Never a step back.
    assert committer.commits == [{TP("post-stats", 0): 8}]


def test_dead_letters_already_written_leave_no_segment_in_the_changelog() -> None:
    async def scenario() -> Harness:
        h = harness()
        events = [record(0, event_json("e1", T0, 5)), record(1, b"{not json")]
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records(events)
        await h.processor.flush()
        await h.writer.drain()
        await h.processor.flush()  # the next flush must not bring the segment back
        await h.writer.stop()
        return h

    h = asyncio.run(scenario())
    # Both records, the bad one too, are done: the group resumes after them.
    assert h.committer.offsets == {TP("post-stats", 0): 2}
    sink = h.sink
    assert [d.reason.split(":")[0] for d in sink.dead_letters] == ["bad_json"]
    assert sum(r.counts[0] for r in sink.rows() if r.window_size_s == 60) == 5
    # The dead letter is in the sink, so its changelog segment has no reason to stay:
    # left behind, a restart would write it again and keep it in memory until then.
    segments = [key for key in h.changelog.data if orjson.loads(key)[1] == "x"]
    assert segments == []
    assert {partition_of(key) for key in h.changelog.data} == {0}


def test_a_record_kafka_refuses_holds_the_checkpoint_back_until_it_is_through() -> None:
    async def scenario() -> tuple[Harness, list[list[dict[TP, int]]]]:
        h = harness()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records([record(3, event_json("e1", T0, 5))])
        h.producer.refuse.add(orjson.dumps([0, "d", 1, 0]))  # the dedup segment
        await h.processor.flush()
        commits = [list(h.committer.commits)]
        await h.processor.flush()
        commits.append(list(h.committer.commits))
        await h.writer.stop()
        return h, commits

    h, commits = asyncio.run(scenario())
    assert commits == [[], [{TP("post-stats", 0): 4}]]
    keys = [key for _, key, _, _ in h.producer.sent]
    # Sent again before the checkpoint, which is written only once the segment is in.
    assert keys.index(orjson.dumps([0, "d", 1, 0])) < keys.index(orjson.dumps([0, "c"]))


def test_assigned_partitions_rewrite_their_windows_without_a_new_record() -> None:
    # Issue 8, finding 11: after a kill -9 between a durable checkpoint and the sink's
    # write, only partitions that got a new record were rewritten; a finished campaign's
    # last windows stayed short in ClickHouse for good.
    async def scenario() -> MemoryRowSink:
        first = harness()
        first.processor.restore([0])
        async with first.processor.lock:
            first.processor.apply_records([record(0, event_json("e1", T0, 5))])
        await first.processor.flush()  # durable in the changelog; the sink's write is lost
        await first.writer.stop()
        sink = MemoryRowSink()
        restarted = harness(sink, changelog=first.changelog)
        restarted.processor.restore([0])  # what the worker does once the changelog is read
        await restarted.writer.drain()
        await restarted.writer.stop()
        return sink

    sink = asyncio.run(scenario())
    assert [(r.window_size_s, r.counts[0]) for r in sink.rows()] == [(60, 5), (3600, 5)]


def test_forwarded_events_are_split_into_records_kafka_accepts() -> None:
    async def scenario() -> Harness:
        h = harness(partitions=4)
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
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records([record(0, value)])
        await h.processor.flush()
        await h.writer.stop()
        return h

    h = asyncio.run(scenario())
    forwarded = h.producer.values(h.processor.topics.rekey)
    assert len(forwarded) > 1
    assert all(len(v) <= MAX_CHANGELOG_VALUE for v in forwarded)
    assert sum(len(orjson.loads(v)) for v in forwarded) == 10_000


def test_the_dead_letter_of_a_huge_bad_record_fits_a_kafka_record() -> None:
    async def scenario() -> Harness:
        h = harness()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records([record(0, b"[" + b"\x01" * 900_000)])
        await h.processor.flush()
        await h.writer.stop()
        return h

    h = asyncio.run(scenario())
    (dead,) = h.producer.values("post-stats-dead-letters")
    assert len(dead) <= MAX_CHANGELOG_VALUE
    assert max(len(v or b"") for _, _, v, _ in h.producer.sent) <= MAX_CHANGELOG_VALUE


def topic_mode(changelog: InMemoryChangelog | None = None) -> Harness:
    """A processor without a sink writer (sink=topic): rows go only to the topic."""
    h = harness(changelog=changelog)
    h.processor = StreamProcessor(h.processor.config, None, h.producer, h.changelog, h.committer)
    return h


def test_every_flush_publishes_its_rows_on_the_window_rows_topic() -> None:
    async def scenario() -> Harness:
        h = harness()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records([record(0, event_json("e1", T0, 5))])
        await h.processor.flush()
        await h.writer.stop()
        return h

    h = asyncio.run(scenario())
    (value,) = h.producer.values(h.processor.topics.window_rows)
    assert sorted((r["window_size_s"], r["views"]) for r in orjson.loads(value)) == [
        (60, 5),
        (3600, 5),
    ]
    assert h.sink.windows  # and ClickHouse got them too


def test_without_a_sink_writer_rows_and_dead_letters_are_written_once_kafka_took_them() -> None:
    async def scenario() -> Harness:
        h = topic_mode()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records([record(0, event_json("e1", T0, 5)), record(1, b"{not json")])
        await h.processor.flush()
        await h.processor.flush()  # deletes the dead letter's segment: it is on its topic
        return h

    h = asyncio.run(scenario())
    state = h.processor.states[0]
    assert state.awaiting_sink() == 0  # confirmed: the windows may leave memory once closed
    assert len(h.producer.values("post-stats-dead-letters")) == 1
    assert [k for k in h.changelog.data if orjson.loads(k)[1] == "x"] == []
    assert h.processor.snapshot()["rows_written"] == 2


def test_the_stats_say_what_the_worker_holds_in_memory() -> None:
    async def scenario() -> Harness:
        h = topic_mode()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records(
                [
                    record(0, event_json("e1", T0, 5)),
                    record(1, event_json("e2", T0, 3, creator="cr-1")),
                    record(2, event_json("e2", T0, 3, creator="cr-1")),  # a duplicate
                ]
            )
        return h

    h = asyncio.run(scenario())
    held = h.processor.snapshot()["held"]
    # Two creators, each in a minute and an hour window; two ids, not three; deltas keep
    # no post's lifetime high-water.
    assert held == {"windows": 4, "dedup_ids": 2, "posts": 0}


def test_without_a_sink_writer_a_restore_publishes_every_window_again() -> None:
    async def scenario() -> Harness:
        first = topic_mode()
        first.processor.restore([0])
        async with first.processor.lock:
            first.processor.apply_records([record(0, event_json("e1", T0, 5))])
        await first.processor.flush()
        again = topic_mode(first.changelog)
        again.processor.restore([0])
        await again.processor.flush()
        return again

    again = asyncio.run(scenario())
    (value,) = again.producer.values(again.processor.topics.window_rows)
    assert sorted(r["window_size_s"] for r in orjson.loads(value)) == [60, 3600]
    assert again.processor.states[0].awaiting_sink() == 0


def test_records_skipped_by_the_delivery_are_read_again_before_anything_after_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Seen in the drills: Faust dropped one fetched record after a restart, delivered the
    # next, and the checkpoint moved past the lost one for good.
    async def scenario() -> Harness:
        h = harness()
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records(
                [record(4, event_json("e4", T0, 1)), record(7, event_json("e7", T0, 100))]
            )
        assert h.processor.states[0].offsets["post-stats"] == 4  # 7 waits for 5 and 6
        h.processor.rewind()
        await asyncio.gather(*(r.task for r in h.processor.rewinds.values() if r.task))
        async with h.processor.lock:
            h.processor.apply_records(
                [record(o, event_json(f"e{o}", T0, 10**o)) for o in (8, 5, 6, 7)][1:]
            )
        await h.processor.flush()
        await h.writer.stop()
        return h

    with caplog.at_level(logging.WARNING, "creatorpulse.worker"):
        h = asyncio.run(scenario())
    assert h.committer.seeks == [(TP("post-stats", 0), 5)]
    assert h.processor.stats.delivery_gaps == 1
    assert not h.processor.rewinds
    assert "records post-stats[0] 5..6 were not delivered (next delivered: 7)" in caplog.text
    views = sum(r.counts[0] for r in h.sink.rows() if r.window_size_s == 60)
    assert views == 1 + 10**5 + 10**6 + 10**7  # each record once, none lost


def test_a_hole_in_the_log_is_passed_once_kafka_confirms_it() -> None:
    async def scenario() -> Harness:
        h = harness()
        h.committer.log_holes[TP("post-stats", 0)] = {5, 6}  # e.g. transaction markers
        h.processor.restore([0])
        async with h.processor.lock:
            h.processor.apply_records(
                [record(4, event_json("e4", T0, 1)), record(7, event_json("e7", T0, 2))]
            )
        h.processor.rewind()
        await asyncio.gather(*(r.task for r in h.processor.rewinds.values() if r.task))
        async with h.processor.lock:
            h.processor.apply_records([record(7, event_json("e7", T0, 2))])
        return h

    h = asyncio.run(scenario())
    assert h.committer.seeks == [(TP("post-stats", 0), 7)]
    assert h.processor.states[0].offsets["post-stats"] == 7
    assert not h.processor.rewinds


def test_a_record_of_a_partition_not_restored_is_neither_applied_nor_committed() -> None:
    async def scenario() -> Harness:
        h = harness()
        async with h.processor.lock:
            # No restore([0]) before: it comes again later, from the committed offset.
            h.processor.apply_records([record(0, event_json("e1", T0, 5))])
        await h.processor.flush()
        await h.writer.stop()
        return h

    h = asyncio.run(scenario())
    assert h.processor.stats.records == 0  # not applied: nothing counted, nothing sent
    assert h.producer.sent == []
    assert h.processor.stats.unrestored_records == 1
    assert h.processor.states == {}
    assert h.committer.commits == []


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def timed(clock: FakeClock, **config: float) -> StreamProcessor:
    settings = WorkerConfig(kafka_bootstrap="x:1", partitions=1, **config)  # type: ignore[arg-type]
    return StreamProcessor(
        settings,
        None,
        RecordingProducer(),
        InMemoryChangelog(),
        RecordingCommitter(),
        monotonic=clock,
    )


def test_the_flush_defaults_bound_freshness_below_the_interval() -> None:
    config = WorkerConfig(kafka_bootstrap="x:1")
    assert config.flush_max_age_s == 0.25
    assert config.flush_interval_s == 1.0
    assert config.flush_max_records == 50_000


def test_without_new_records_a_flush_is_due_once_the_interval_has_passed() -> None:
    clock = FakeClock()
    p = timed(clock, flush_interval_s=1.0, flush_max_age_s=0.25)
    assert p.seconds_until_flush() == 1.0
    clock.now += 0.6
    assert p.seconds_until_flush() == pytest.approx(0.4)
    clock.now += 0.4
    assert p.seconds_until_flush() == 0.0


def test_a_flush_is_due_once_the_oldest_unflushed_record_has_waited_the_max_age() -> None:
    clock = FakeClock()
    p = timed(clock, flush_interval_s=1.0, flush_max_age_s=0.25)
    p.restore([0])
    clock.now += 0.5  # idle for a while: the age counts from the first record, not the flush
    p.apply_records([record(0, event_json("e1", T0, 5))])
    assert p.seconds_until_flush() == pytest.approx(0.25)
    clock.now += 0.1
    p.apply_records([record(1, event_json("e2", T0, 5))])  # a newer one changes nothing
    assert p.seconds_until_flush() == pytest.approx(0.15)
    clock.now += 0.15
    assert p.seconds_until_flush() == 0.0


def test_a_flush_is_due_at_once_when_enough_records_wait() -> None:
    clock = FakeClock()
    p = timed(clock, flush_interval_s=1.0, flush_max_age_s=0.25, flush_max_records=3)
    p.restore([0])
    p.apply_records([record(o, event_json(f"e{o}", T0, 1)) for o in range(2)])
    assert p.seconds_until_flush() == pytest.approx(0.25)
    p.apply_records([record(2, event_json("e2", T0, 1))])
    assert p.seconds_until_flush() == 0.0


def test_a_flush_starts_the_age_and_the_count_anew() -> None:
    async def scenario() -> StreamProcessor:
        p = timed(clock, flush_interval_s=1.0, flush_max_age_s=0.25, flush_max_records=3)
        p.restore([0])
        p.apply_records([record(o, event_json(f"e{o}", T0, 1)) for o in range(3)])
        clock.now += 0.3
        await p.flush()
        return p

    clock = FakeClock()
    p = asyncio.run(scenario())
    assert p.stats.flushes == 1
    assert p.seconds_until_flush() == 1.0  # nothing waits: the interval, from this flush
    clock.now += 0.5
    p.apply_records([record(3, event_json("e3", T0, 1))])
    assert p.seconds_until_flush() == pytest.approx(0.25)


def test_caught_up_records_are_flushed_once_the_gap_since_the_last_flush_has_passed() -> None:
    # Live data (a fetch read to the end of its partition) does not wait for the age.
    async def scenario() -> list[float]:
        p = timed(clock, flush_interval_s=1.0, flush_max_age_s=0.25, flush_caught_up_gap_s=0.1)
        p.restore([0])
        due = []
        clock.now += 0.5
        p.apply_records([record(0, event_json("e0", T0, 1))])
        due.append(p.seconds_until_flush())  # behind: the age decides
        p.note_fetched("in", 0, at_end=True)
        due.append(p.seconds_until_flush())  # the last flush (at start) is > 0.1 s ago
        await p.flush()
        p.note_fetched("in", 0, at_end=True)
        due.append(p.seconds_until_flush())  # nothing waits: the interval
        clock.now += 0.04
        p.apply_records([record(1, event_json("e1", T0, 1))])
        due.append(p.seconds_until_flush())  # the flag outlived the fetch that set it
        await p.flush()
        clock.now += 0.04
        p.apply_records([record(2, event_json("e2", T0, 1))])
        due.append(p.seconds_until_flush())  # a flush takes the flag: behind again
        return due

    clock = FakeClock()
    due = asyncio.run(scenario())
    assert due == pytest.approx([0.25, 0.0, 1.0, 0.06, 0.25])


def test_a_partition_still_behind_keeps_the_flushes_to_the_age() -> None:
    # Partition 1 reads a backlog while partition 0 (or the rekey topic, which the
    # worker writes itself) is live: the worker is still catching up.
    clock = FakeClock()
    p = timed(clock, flush_interval_s=1.0, flush_max_age_s=0.25, flush_caught_up_gap_s=0.1)
    p.restore([0, 1])
    clock.now += 0.5
    p.apply_records([record(0, event_json("e0", T0, 1))])
    p.note_fetched("in", 1, at_end=False)
    p.note_fetched("in", 0, at_end=True)
    assert p.seconds_until_flush() == pytest.approx(0.25)  # behind: the age decides
    p.note_fetched("in", 1, at_end=True)  # the backlog is read
    assert p.seconds_until_flush() == 0.0
    p.note_fetched("in", 1, at_end=False)  # more came than one fetch reads
    assert p.seconds_until_flush() == pytest.approx(0.25)
    p.forget({1})  # it moved to another worker: not this one's backlog
    p.note_fetched("in", 0, at_end=True)
    assert p.seconds_until_flush() == 0.0


def test_a_caught_up_fetch_wakes_the_flush_wait() -> None:
    async def scenario() -> bool:
        clock = FakeClock()
        p = timed(clock, flush_interval_s=60.0, flush_max_age_s=30.0, flush_caught_up_gap_s=0.0)
        p.restore([0])
        waiting = asyncio.ensure_future(p.wait_until_flush_due())
        p.apply_records([record(0, event_json("e0", T0, 1))])
        await asyncio.sleep(0)
        assert not waiting.done()  # the age is 30 s away
        p.note_fetched("in", 0, at_end=True)
        await asyncio.wait_for(waiting, 5.0)
        return waiting.done()

    assert asyncio.run(scenario())


def test_a_negative_caught_up_gap_is_refused() -> None:
    with pytest.raises(ValueError, match="flush_caught_up_gap_s"):
        WorkerConfig(kafka_bootstrap="x:1", flush_caught_up_gap_s=-0.1)


def test_the_flush_wait_wakes_when_records_make_a_flush_due() -> None:
    # The wait began with nothing to flush (the whole interval ahead, and the fake clock
    # never moves): enough records must end it, not a timer.
    async def scenario() -> bool:
        p = timed(FakeClock(), flush_interval_s=60.0, flush_max_age_s=30.0, flush_max_records=2)
        p.restore([0])
        waiting = asyncio.ensure_future(p.wait_until_flush_due())
        await asyncio.sleep(0)
        assert not waiting.done()
        p.apply_records([record(0, event_json("e0", T0, 1))])  # wakes: age now 30 s away
        await asyncio.sleep(0)
        assert not waiting.done()
        p.apply_records([record(1, event_json("e1", T0, 1))])
        await asyncio.wait_for(waiting, 5.0)
        return waiting.done()

    assert asyncio.run(scenario())


def test_next_offset_says_where_a_restored_partition_goes_on() -> None:
    p = timed(FakeClock())
    tp = TP("post-stats", 0)
    assert p.next_offset(tp) is None  # not restored: no state to take anything
    p.restore([0])
    assert p.next_offset(tp) == 0  # restored, nothing of this topic yet
    p.apply_records([record(6, event_json("e1", T0, 5)), record(7, event_json("e2", T0, 1))])
    assert p.next_offset(tp) == 8
    assert p.next_offset(TP(p.topics.rekey, 0)) == 0
