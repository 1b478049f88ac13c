"""The stream processor: records in, partition states applied, flushes out.

It owns this worker's partition states (``streams.state``) and their flush cycle, and
talks to the outside only through ``streams.ports``: a producer, the changelog, an offset
committer, and the sink writer. The way of one record::

    decode (schemas.events) -> forward misplaced events -> PartitionState.apply_record
    -> its counts and dead letters; at each flush (due by age, size or interval): rows to
    the writer, changelog and forwarded records to Kafka, then checkpoints, then the
    offsets they cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faust.types import TP
from kafka.partitioner.default import murmur2

from schemas.events import MAX_EVENT_BYTES, DecodedEvent, decode_event, decode_record
from schemas.rows import WindowKey
from streams.changelog import ChangelogRecord, partition_of
from streams.config import WorkerConfig
from streams.observability import LatencyTracker, WorkerStats, process_usage, reason_class
from streams.outputs.topic import dead_letter_records, forwarded_records, window_row_records
from streams.outputs.writer import SinkWriter
from streams.ports import Changelog, Message, OffsetCommitter, OutRecord, Producer
from streams.state import PartitionState, RecordOutcome

log = logging.getLogger("creatorpulse.worker")

_ARRAY = ord("[")  # the first byte of a batch record


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as kafka-python and aiokafka compute it."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class StreamProcessor:
    """Owns the partition states of this worker and their flush cycle.

    Everything it writes to Kafka (forwarded events, dead letters, the changelog) is
    sent at a flush, in two steps: first everything but the checkpoints; then, only if
    all of that was acknowledged, the checkpoints. A record Kafka refused is sent again
    at the next flush, before anything newer, and no checkpoint is written until it is
    through: so a durable checkpoint always means that all it covers is durable.
    """

    def __init__(
        self,
        config: WorkerConfig,
        writer: SinkWriter | None,
        producer: Producer,
        changelog: Changelog,
        committer: OffsetCommitter,
        *,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.topics = config.topics
        self.writer = writer
        self.producer = producer
        self.changelog = changelog
        self.committer = committer
        self.baseline = dict(baseline or {})
        self.clock = clock
        self.states: dict[int, PartitionState] = {}
        self.stats = WorkerStats()
        self.latency = LatencyTracker(clock=clock)
        self.lock = asyncio.Lock()  # guards the states: a batch applies whole
        self._flush_lock = asyncio.Lock()
        # False once the consumer has stopped: there is no group to commit to.
        self.consumer_running = True
        self._outbox: list[OutRecord] = []  # forwarded events and dead letters
        self._retry: list[OutRecord] = []  # refused at the last flush: sent first
        # Checkpoints (and the offsets they let commit) that wait for a flush at which
        # Kafka took everything before them.
        self._held: dict[int, tuple[PartitionState, ChangelogRecord]] = {}
        self._written_dead: list[tuple[int, bytes]] = []  # segments to delete
        # Without a sink writer (sink=topic), rows and dead letters are written once Kafka
        # took them: what to confirm after the next flush that Kafka took whole.
        self._confirm_on_send: list[tuple[PartitionState, int]] = []
        self._delete_on_send: list[tuple[int, bytes]] = []
        self._partition_cache: dict[str, int] = {}
        # Partitions whose delivery skipped records, until they are read again.
        self.rewinds: dict[TP, Rewind] = {}
        # When the next flush is due (seconds_until_flush): the last flush's start, the
        # time the oldest record applied since then was applied, how many there are, and
        # whether a fetch since then read to the end of its partition while no other
        # partition was behind (its last fetch stopped short of the end).
        self._monotonic = monotonic
        self._last_flush = monotonic()
        self._first_unflushed: float | None = None
        self._unflushed_records = 0
        self._caught_up = False
        self._behind: set[tuple[str, int]] = set()
        self._flush_wakeup = asyncio.Event()

    # -- partitions -------------------------------------------------------------------

    def _partition_of(self, creator_id: str) -> int:
        partition = self._partition_cache.get(creator_id)
        if partition is None:
            partition = partition_for(creator_id.encode(), self.config.partitions)
            self._partition_cache[creator_id] = partition
        return partition

    def restore(self, partitions: Iterable[int]) -> None:
        """Rebuild the state of newly assigned partitions from the changelog.

        Called once the table's changelog is recovered, before any record of theirs
        is read. Every restored window is written again, and every dead letter not yet
        confirmed: ClickHouse may lack the last rows before a crash, and a finished
        campaign would never bring a record that rewrites them.
        """
        for partition in sorted(set(partitions) - set(self.states)):
            self.states[partition] = state = self._restore(partition)
            rows = state.all_rows()
            self._outbox += window_row_records(rows, self.topics.window_rows)
            if self.writer is not None:
                self.writer.submit(rows, token=RowsWritten(state, state.flush_seq))
                for key, dead in state.unwritten_dead_letters.items():
                    self.writer.submit((), dead, DeadLettersWritten(partition, (key,)))
            else:
                # The sink process reads dead letters from their topic: send them again
                # (a copy collapses by identity), then their segments can go.
                self._confirm_on_send.append((state, state.flush_seq))
                for key, dead in state.unwritten_dead_letters.items():
                    self._outbox += dead_letter_records(dead, self.topics.dead_letters)
                    self._delete_on_send.append((partition, key))
            state.unwritten_dead_letters.clear()

    def _restore(self, partition: int) -> PartitionState:
        entries = [
            (key, value)
            for key, value in self.changelog.data.items()
            if partition_of(key) == partition
        ]
        state = PartitionState.restore(
            partition,
            entries,
            window_sizes_s=self.config.window_sizes_s,
            grace_s=self.config.grace_s,
            future_skew_s=self.config.future_skew_s,
            baseline={
                k: v for k, v in self.baseline.items() if self._partition_of(k[1]) == partition
            },
        )
        if entries:
            log.info(
                "partition %d restored: %d windows, %d posts, %d ids, offsets %s",
                partition,
                len(state.windows),
                len(state.posts),
                len(state.seen),
                state.offsets,
            )
        return state

    def next_offset(self, tp: TP) -> int | None:
        """The offset of ``tp`` this worker's state takes next (0 when it holds none of
        that topic); None when it holds no state of the partition."""
        state = self.states.get(tp.partition)
        if state is None:
            return None
        return state.offsets.get(tp.topic, -1) + 1

    # -- per record -------------------------------------------------------------------

    def apply_records(self, messages: Sequence[Message]) -> None:
        """Apply records in delivery order; pure CPU, no awaits.

        Nothing is acknowledged per record: a flush commits the offsets its durable
        checkpoints cover (:meth:`_commit_durable`).
        """
        input_topic = self.config.input_topic
        rekey_topic = self.topics.rekey
        stats = self.stats
        states = self.states
        by_topic = stats.events_by_topic
        partition_of = self._partition_of
        observe_latency = self.latency.observe
        observe_lateness = stats.lateness.observe
        wall = self.clock()
        now_ms = int(wall * 1000)
        if stats.first_record_unix is None:
            stats.first_record_unix = wall
        stats.last_record_unix = wall
        if messages:
            self._note_unflushed(len(messages))
        for message in messages:
            topic = message.topic
            partition = message.partition
            offset = message.offset
            state = states.get(partition)
            if state is None:
                # Not expected: Faust delivers a partition's records only after recovery,
                # which restores it. Its offset is not committed: it is read again later.
                self._unrestored(partition)
                continue
            stats.records += 1
            last = state.offsets.get(topic, -1)
            if offset <= last:
                stats.replayed_records += 1
                continue
            if (self.rewinds or (offset != last + 1 and last >= 0)) and not self._in_sequence(
                topic, partition, offset, last
            ):
                continue
            value = message.value
            # A single-event record msgspec reads, of a creator this partition holds:
            # the fast path (what decode_record and _rekey_misplaced would do for it).
            event = (
                decode_event(value)
                if value and len(value) <= MAX_EVENT_BYTES and value[0] != _ARRAY
                else None
            )
            if event is not None and (
                topic != input_topic or partition_of(event.creator_id) == partition
            ):
                by_topic[topic] = by_topic.get(topic, 0) + 1
                one = state.apply_one(
                    topic, offset, event, now_ms=now_ms, forwarded=topic == rekey_topic
                )
                if one is None:
                    ts = event.ts
                    observe_latency(ts)
                    observe_lateness(max(now_ms - ts, 0) / 1000)
                    stats.events_counted += 1
                else:
                    self._count_outcome(one, one.counted and event.ts, now_ms)
                continue
            decoded = decode_record(value)
            by_topic[topic] = by_topic.get(topic, 0) + len(decoded.events) + len(decoded.rejected)
            positions = decoded.positions()
            local: list[DecodedEvent] = decoded.events
            if topic == input_topic:
                local, positions = self._rekey_misplaced(partition, local, positions)
            outcome = state.apply_record(
                topic,
                offset,
                local,
                now_ms=now_ms,
                positions=positions,
                rejected=decoded.rejected,
                forwarded=topic == rekey_topic,
            )
            self._count_outcome(outcome, outcome.counted and local[0].ts, now_ms)

    def _count_outcome(self, outcome: RecordOutcome, first_ts: int, now_ms: int) -> None:
        """Count what became of one record's events (``first_ts``: its first event's time)."""
        stats = self.stats
        if outcome.counted:
            self.latency.observe(first_ts)
            stats.lateness.observe(max(now_ms - first_ts, 0) / 1000)
        stats.events_counted += outcome.counted
        stats.duplicates += outcome.duplicates
        stats.late += outcome.late
        stats.invalid += outcome.invalid
        if outcome.dead_letters:
            self._outbox += dead_letter_records(outcome.dead_letters, self.topics.dead_letters)
            by_reason = stats.dead_letters_by_reason
            for dead in outcome.dead_letters:
                kind = reason_class(dead.reason)
                by_reason[kind] = by_reason.get(kind, 0) + 1

    def _unrestored(self, partition: int) -> None:
        self.stats.unrestored_records += 1
        if self.stats.unrestored_records == 1:  # once: a flood of these says no more
            log.error("records of partition %d came before its state was restored", partition)

    def _in_sequence(self, topic: str, partition: int, offset: int, last: int) -> bool:
        """Whether this record follows the last one applied to its partition.

        Faust can drop a record it fetched without seeking back (seen in the drills: one
        forwarded record, right after a restart), and applying the next one would move
        the checkpoint past the lost one for good. So the partition is rewound to the
        first missing offset, and its records are skipped until that one comes; unless
        Kafka says the log has no record there (a transaction marker, compaction), in
        which case the first record after the hole is accepted.
        """
        tp = TP(topic, partition)
        rewind = self.rewinds.get(tp)
        follows = offset == last + 1 or last < 0
        if rewind is None:
            if follows:
                return True
            self.rewinds[tp] = Rewind(expected=last + 1)
            self.stats.delivery_gaps += 1
            log.warning(
                "records %s[%d] %d..%d were not delivered (next delivered: %d); reading them again",
                topic,
                partition,
                last + 1,
                offset - 1,
                offset,
            )
            return False
        if follows or offset == rewind.first_in_log:  # read again, or past the log's hole
            del self.rewinds[tp]
            return True
        return False

    def rewind(self) -> None:
        """Start seeking each partition with skipped records back to the first of them.

        In a task of its own per partition: asking Kafka where its log resumes takes a
        round trip, and the other partitions keep being counted meanwhile.
        """
        for tp, rewind in self.rewinds.items():
            if rewind.task is None:
                rewind.task = asyncio.ensure_future(self._rewind(tp, rewind))

    async def _rewind(self, tp: TP, rewind: Rewind) -> None:
        try:
            first = None
            while first is None:
                first = await self.committer.first_offset_at(tp, rewind.expected)
            if first > rewind.expected:
                rewind.first_in_log = first
                log.info("%s[%d] has no record at %d..%d", *tp, rewind.expected, first - 1)
            await self.committer.seek(tp, first)
            log.info("%s[%d] is read again from %d", *tp, first)
        except Exception:
            log.exception("could not seek %s[%d] back to %d", *tp, rewind.expected)
            rewind.task = None  # the next batch tries again

    def _rekey_misplaced(
        self, partition: int, events: list[DecodedEvent], positions: list[int]
    ) -> tuple[list[DecodedEvent], list[int]]:
        """Forward events whose creator belongs to another partition to the rekey topic.

        A creator's windows, dedup ids and post totals live in one partition; an event
        in a record keyed by something else is counted when it arrives there. One
        creator's events go in as many records as it takes to keep each under
        :data:`MAX_CHANGELOG_VALUE`.
        """
        partition_of = self._partition_of
        # A batch record holds one creator's events, as a rule: ask once per creator.
        if all(partition_of(c) == partition for c in {e.creator_id for e in events}):
            return events, positions
        keep: list[DecodedEvent] = []
        keep_positions: list[int] = []
        moved: dict[str, list[bytes]] = defaultdict(list)  # encoded events
        for event, position in zip(events, positions):
            if partition_of(event.creator_id) == partition:
                keep.append(event)
                keep_positions.append(position)
            else:
                moved[event.creator_id].append(event.to_json())
        for creator_id, group in moved.items():
            target = partition_of(creator_id)
            self._outbox += forwarded_records(creator_id, group, self.topics.rekey, target)
            self.stats.rekeyed += len(group)
        return keep, keep_positions

    # -- flush cycle ------------------------------------------------------------------

    def _note_unflushed(self, records: int) -> None:
        if self._first_unflushed is None:
            self._first_unflushed = self._monotonic()
            self._flush_wakeup.set()  # the flush loop may be waiting for the long interval
        self._unflushed_records += records
        if self._unflushed_records >= self.config.flush_max_records:
            self._flush_wakeup.set()

    def note_fetched(self, topic: str, partition: int, at_end: bool) -> None:
        """A fetch of ``topic``/``partition`` was applied; ``at_end``: it read to the end
        of the partition. Once every partition's last fetch did, what was applied is live
        data and the next flush need not wait for ``flush_max_age_s`` (see
        seconds_until_flush); while any partition is still behind, a backlog is being
        read, and flushes keep to the age and the size."""
        key = (topic, partition)
        if not at_end:
            self._behind.add(key)
            self._caught_up = False
            return
        self._behind.discard(key)
        if not self._behind and not self._caught_up:
            self._caught_up = True
            self._flush_wakeup.set()

    def seconds_until_flush(self) -> float:
        """How long until the next flush is due; 0 when it is due now.

        Whichever comes first: the oldest record applied since the last flush has
        waited ``flush_max_age_s`` (what bounds freshness), ``flush_max_records`` are
        applied (what bounds a flush's work while catching up), or ``flush_interval_s``
        has passed since the last flush (retries, held checkpoints, restored windows and
        deleted segments go out without new records). Once the input has caught up (the
        records wait for no backlog), ``flush_caught_up_gap_s`` after the last flush
        began: live data is flushed at once, and a backlog still in big flushes.
        """
        config = self.config
        due = self._last_flush + config.flush_interval_s
        if self._first_unflushed is not None:
            if self._unflushed_records >= config.flush_max_records:
                return 0.0
            due = min(due, self._first_unflushed + config.flush_max_age_s)
            if self._caught_up:
                due = min(due, self._last_flush + config.flush_caught_up_gap_s)
        return max(0.0, due - self._monotonic())

    async def wait_until_flush_due(self) -> None:
        """Return once a flush is due (:meth:`seconds_until_flush`).

        Records applied meanwhile wake the wait, so a flush due by their age or number
        is not held back by a wait computed before they came.
        """
        while True:
            self._flush_wakeup.clear()
            delay = self.seconds_until_flush()
            if delay <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wakeup.wait(), delay)

    async def flush(self) -> None:
        """Make everything applied so far durable, commit its offsets, hand rows to the sink.

        One flush at a time. The snapshot is taken under :attr:`lock` (no batch is
        half-applied); the waits for Kafka happen without it, so fetches keep
        applying batches meanwhile. Only offsets the snapshot covers are committed.
        """
        async with self._flush_lock:
            self._last_flush = started = self._monotonic()
            try:
                await self._flush()
            finally:
                took = self._monotonic() - started
                self.stats.flush_s += took
                self.stats.flush_durations.observe(took)

    async def _flush(self) -> None:
        async with self.lock:
            if self.writer is not None:
                self._take_written(self.writer)
            flushes = []
            for p, s in self.states.items():
                if s.has_changes():
                    # A flush only removes windows (the closed ones): what it removed closed.
                    before = len(s.windows)
                    flushes.append((p, s, s.flush()))
                    self.stats.windows_closed += before - len(s.windows)
            outbox, self._outbox = self._outbox, []
            sampled = self.latency.take()
            # Everything applied so far is in this flush: the next one's age starts anew.
            self._first_unflushed = None
            self._unflushed_records = 0
            self._caught_up = False
        deletes, self._written_dead = self._written_dead, []
        if not (flushes or outbox or deletes or self._retry or self._held):
            return
        writer = self.writer
        # Rows first: if this task is cancelled at an await below, they are not lost.
        if writer is not None:
            if sampled:
                writer.submit((), token=LatencySamples(tuple(sampled)))
            for _, state, result in flushes:
                writer.submit(result.rows, token=RowsWritten(state, result.seq))
        else:
            self._confirm_on_send += [(state, result.seq) for _, state, result in flushes]
        changelog = self.changelog.topic
        records, self._retry = self._retry, []
        records += outbox
        rows = [row for _, _, result in flushes for row in result.rows]
        records += window_row_records(rows, self.topics.window_rows)
        for partition, key in deletes:
            self._keep_in_table(key, None)
            records.append((changelog, key, None, partition))
        held = self._held
        for partition, state, result in flushes:
            *data, checkpoint = result.changelog
            for key, value in data:
                self._keep_in_table(key, value)
                records.append((changelog, key, value, partition))
            held[partition] = (state, checkpoint)  # a newer checkpoint replaces one held
            # Only now, with their segments in the table: the sink may confirm them
            # before the changelog is acknowledged, and the deleter must find the keys.
            # (Cancelled before this, the replay from the checkpoint makes them again.)
            if not result.dead_letters:
                continue
            if writer is not None:
                token = DeadLettersWritten(partition, tuple(result.dead_letter_keys))
                writer.submit((), result.dead_letters, token)
            else:
                self._delete_on_send += [(partition, k) for k in result.dead_letter_keys]
        self._retry = await self._send(records, "forwarded events, rows, dead letters, state")
        if self._retry:
            return  # no checkpoint over what Kafka has not taken; the next flush retries
        self.stats.rows_published += len(rows)
        if writer is None:
            self._confirm_sent(sampled)
        last = [(changelog, key, value, p) for p, (_, (key, value)) in held.items()]
        if await self._send(last, "checkpoints"):
            return  # held: the next flush sends them again (or newer ones)
        self._held = {}
        for _, (state, (key, value)) in held.items():
            self._keep_in_table(key, value)
            state.confirm_durable()
        if self.consumer_running:
            await self._commit_durable([(p, state) for p, (state, _) in held.items()])
        self.stats.flushes += 1
        self.stats.last_flush_unix = self.clock()

    def _confirm_sent(self, sampled: list[int]) -> None:
        """Without a sink writer: the rows and dead letters Kafka took are written."""
        confirm, self._confirm_on_send = self._confirm_on_send, []
        for state, seq in confirm:
            state.confirm_written(seq)
        delete, self._delete_on_send = self._delete_on_send, []
        data = self.changelog.data
        self._written_dead += [(partition, key) for partition, key in delete if key in data]
        if sampled:
            self.latency.written(sampled)

    def _keep_in_table(self, key: bytes, value: bytes | None) -> None:
        # The table's own copy: what a rebalance inside this process restores from.
        if value is None:
            self.changelog.data.pop(key, None)
        else:
            self.changelog.data[key] = value

    async def _send(self, records: Sequence[OutRecord], what: str) -> list[OutRecord]:
        """Send ``records`` and wait until Kafka took them; return those it refused."""
        producer = self.producer
        sent: list[tuple[OutRecord, Any]] = []
        refused: list[OutRecord] = []
        first_error: BaseException | None = None
        for record in records:
            topic, key, value, partition = record
            try:
                sent.append((record, await producer.send(topic, key, value, partition, None, None)))
            except Exception as exc:  # e.g. larger than the producer allows
                refused.append(record)
                first_error = first_error or exc
        await self._flush_producer(what)
        for record, delivery in sent:
            error = delivery.exception() if delivery.done() else None
            if error is not None:
                refused.append(record)
                first_error = first_error or error
        if refused:
            self.stats.send_failures += len(refused)
            log.error(
                "Kafka refused %d of %d records (%s): %s; they are sent again at the next "
                "flush, and no offset is committed until they are through",
                len(refused),
                len(records),
                what,
                first_error,
            )
        return refused

    async def _commit_durable(self, states: Sequence[tuple[int, PartitionState]]) -> None:
        """Commit the source offsets that the durable checkpoints cover, never backwards."""
        offsets: dict[TP, int] = {}
        for partition, state in states:
            for topic, offset in state.durable_offsets.items():
                tp = TP(topic, partition)
                committed = self.committer.committed(tp)
                if committed is None or offset + 1 > committed:
                    offsets[tp] = offset + 1
        if offsets:
            await self.committer.commit(offsets)

    async def _flush_producer(self, what: str) -> None:
        """Wait until Kafka acknowledged everything sent; say so when that is slow."""
        flushing = asyncio.ensure_future(self.producer.flush())
        waited = 0.0
        while True:
            done, _ = await asyncio.wait({flushing}, timeout=10.0)
            if done:
                flushing.result()
                return
            waited += 10.0
            log.warning("still waiting for Kafka to acknowledge the %s (%.0f s)", what, waited)

    def _take_written(self, writer: SinkWriter) -> None:
        """What the sink writer wrote since the last flush: confirm it."""
        data = self.changelog.data
        for token, written_at in writer.take_written():
            if isinstance(token, RowsWritten):
                token.state.confirm_written(token.seq)
            elif isinstance(token, DeadLettersWritten):
                # These dead letters are in ClickHouse: their segments go at this flush.
                self._written_dead += [(token.partition, k) for k in token.keys if k in data]
            elif isinstance(token, LatencySamples):
                self.latency.written(list(token.event_ts_ms), written_at)

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this worker no longer owns; their new owner restores them."""
        for partition in partitions:
            self.states.pop(partition, None)
            self._held.pop(partition, None)
        # A partition that moved away is no longer this worker's backlog.
        self._behind = {key for key in self._behind if key[1] not in partitions}

    def held(self) -> dict[str, int]:
        """What the worker holds in memory, over its partitions: open windows, dedup ids
        (those of the grace period) and posts' lifetime high-waters. Windows and ids are
        bounded by the grace and the live cast, so under a steady load they level off;
        posts are kept for good (docs/design.md, "Memory follows event time") and grow
        with the posts seen. A soak compares them with the process's RSS to tell state
        growth from the allocator's."""
        states = self.states.values()
        return {
            "windows": sum(len(s.windows) for s in states),
            "dedup_ids": sum(len(s.seen) for s in states),
            "posts": sum(len(s.posts) for s in states),
        }

    def snapshot(self) -> dict[str, Any]:
        """Counters for the /stats page and benchmarks."""
        writer = self.writer
        # Without a sink writer, rows are written once Kafka took them.
        written: dict[str, Any] = {
            "rows_written": self.stats.rows_published,
            "rows_pending": len(self._retry),
            "writer_idle": not (self._retry or self._confirm_on_send),
            "last_write_unix": self.stats.last_flush_unix,
        }
        if writer is not None:
            written = {
                "rows_written": writer.stats.rows_written,
                "rows_pending": writer.stats.rows_pending,
                "rows_refused": writer.stats.rows_refused,
                "writer_idle": writer.idle,
                "last_write_unix": writer.stats.last_write_unix,
                "sink_failures": writer.stats.failures,
            }
        return {
            **self.stats.as_dict(),
            **written,
            "latency_ms": self.latency.summary(),
            "held": self.held(),
            **process_usage(),
        }


@dataclass
class Rewind:
    """A partition whose delivery skipped records from ``expected`` on."""

    expected: int
    first_in_log: int | None = None  # where the log resumes, if ``expected`` is a hole
    task: asyncio.Future[None] | None = None  # seeking it back


@dataclass(frozen=True, eq=False)
class RowsWritten:
    """Token: the rows of ``state``'s flush ``seq`` (and all before it) are written."""

    state: PartitionState
    seq: int


@dataclass(frozen=True)
class DeadLettersWritten:
    """Token: these changelog segments' dead letters are written."""

    partition: int
    keys: tuple[bytes, ...]


@dataclass(frozen=True)
class LatencySamples:
    """Token: the event times of records whose rows are now written."""

    event_ts_ms: tuple[int, ...]
