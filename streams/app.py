"""The Faust worker: post-stat records in, exact window totals out to the sink.

Faust gives us the consumer group, partition assignment, a changelog topic with
recovery, and the web server. Everything that decides a number lives in pure code
(``streams.state``, ``streams.windows``, ``schemas.events``); this module only moves
records between Kafka, that code and the sink:

    records --decode--> dead letters
            --wrong partition for the creator--> rekey topic (counted there)
            --PartitionState.apply_record--> windows
    every flush interval: rows to the sink writer -> changelog durable -> ack

Records are taken in batches and acknowledged only after the state that includes them
is durable in the changelog, so Faust never commits an offset whose effects could be
lost (docs/design.md §4-5).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from kafka.partitioner.default import murmur2

from schemas.events import DecodedEvent, decode_record
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import dead_letter_to_json
from streams.sink_writer import SinkWriter
from streams.state import (
    ChangelogRecord,
    PartitionState,
    WindowKey,
    changelog_partition,
    split_to_fit,
)
from streams.windows import DEFAULT_FUTURE_SKEW_S, DEFAULT_GRACE_S, DEFAULT_WINDOW_SIZES_S

log = logging.getLogger("creatorpulse.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker needs, as plain values (settings are read at the entry point)."""

    kafka_bootstrap: str
    app_id: str = "creatorpulse"
    input_topic: str = "post-stats"
    dead_letter_topic: str = "post-stats-dead-letters"
    profiles_topic: str = "creator-profiles"
    contracts_topic: str = "campaign-contracts"
    partitions: int = 4
    grace_s: int = DEFAULT_GRACE_S
    future_skew_s: int = DEFAULT_FUTURE_SKEW_S
    window_sizes_s: tuple[int, ...] = DEFAULT_WINDOW_SIZES_S
    flush_interval_s: float = 1.0
    max_batch: int = 10_000
    data_dir: Path = Path(".creatorpulse/faust")
    web_port: int | None = None
    web_host: str = "127.0.0.1"  # bound and advertised; Faust binds 0.0.0.0 unless told
    stats_interval_s: float = 10.0
    # Creator profiles and campaign contracts go to the sink too; off when a separate
    # `creatorpulse sink` process writes ClickHouse (it reads those topics itself).
    writes_reference_data: bool = True
    # Short enough that a killed worker's partitions move on quickly, and that the
    # embedded broker (which completes a group join after half of it) starts fast.
    session_timeout_s: float = 10.0
    # On shutdown, how long the sink writer may go on writing before it gives up.
    shutdown_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        if self.grace_s < 0:
            raise ValueError("grace_s must not be negative")
        if self.future_skew_s < 0:
            raise ValueError("future_skew_s must not be negative")
        if not self.window_sizes_s or min(self.window_sizes_s) <= 0:
            raise ValueError("window sizes must be positive seconds, e.g. 60,3600")
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")

    @property
    def rekey_topic(self) -> str:
        return f"{self.app_id}-{self.input_topic}-rekeyed"


@dataclass(slots=True)
class WorkerStats:
    records: int = 0
    events_counted: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0
    rekeyed: int = 0
    replayed_records: int = 0
    send_failures: int = 0  # records Kafka refused at a flush (each sent again)
    flushes: int = 0
    first_record_unix: float | None = None
    last_record_unix: float | None = None
    last_flush_unix: float | None = None  # when the last flush finished (all acked)
    apply_s: float = 0.0  # wall time applying batches: where the worker's time goes
    flush_s: float = 0.0  # wall time in flushes (mostly waiting for Kafka acks)
    batches: int = 0

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in self.__slots__}


class LatencyTracker:
    """Event time -> row written to the sink, one sample per record (bounded memory).

    Producers stamp events with the wall clock when they publish live data, so this
    is publish -> queryable in ClickHouse; for replayed history it is meaningless.
    """

    def __init__(self, keep: int = 50_000) -> None:
        self.samples_ms: deque[float] = deque(maxlen=keep)
        self._unflushed: list[int] = []
        # Sorting 50k samples on every /stats poll showed up in profiles; samples
        # change once per flush, so the summary is computed once per change.
        self._summary: dict[str, float | int | None] | None = None

    def observe(self, event_ts_ms: int) -> None:
        self._unflushed.append(event_ts_ms)

    def take(self) -> list[int]:
        taken, self._unflushed = self._unflushed, []
        return taken

    def written(self, event_ts_ms: list[int]) -> None:
        now_ms = time.time() * 1000
        self.samples_ms.extend(now_ms - ts for ts in event_ts_ms)
        self._summary = None

    def summary(self) -> dict[str, float | int | None]:
        if self._summary is None:
            self._summary = self._percentiles()
        return self._summary

    def _percentiles(self) -> dict[str, float | int | None]:
        ordered = sorted(self.samples_ms)

        def pct(q: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None

        return {"count": len(ordered), "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)}


#: How long the broker may hold a fetch that finds no new records (Faust fixes 1,500 ms).
#: aiokafka keeps one fetch per broker in flight and leaves out the partitions whose
#: last records are still buffered. When Faust is slower than aiokafka's 100 ms
#: prefetch backoff, the next fetch asks only for idle partitions (the rekey topic,
#: reference topics), and the broker holds it for the whole wait while records pile up
#: on the input partitions. Measured with 1,500 ms: single-event records at 5k ev/s
#: 1.8-4.3 s behind (p50); batch records read at 106-120k ev/s. With 100 ms: 645 ms,
#: and 136-161k ev/s. An idle worker then asks the broker ten times a second.
FETCH_MAX_WAIT_MS = 100


class _PromptFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts, which is after this (aiokafka's own setting).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _PromptFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _PromptFetchTransport(faust_aiokafka.Transport):
    Consumer = _PromptFetchConsumer


def use_prompt_fetches(app: faust.App) -> None:
    """Give ``app`` a consumer whose fetches wait at most :data:`FETCH_MAX_WAIT_MS`.

    Call right after creating the app: its transport is created on first use.
    """
    app.transport = _PromptFetchTransport(app.conf.broker_consumer, app)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as kafka-python and aiokafka compute it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


#: What a flush sends: (topic, key, value, partition; None lets Kafka choose by key).
OutRecord = tuple[str, bytes | None, bytes | None, int | None]


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
        app: faust.App,
        config: WorkerConfig,
        writer: SinkWriter,
        table: Any,
        *,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.config = config
        self.writer = writer
        self.table = table
        self.baseline = dict(baseline or {})
        self.clock = clock
        self.states: dict[int, PartitionState] = {}
        self.stats = WorkerStats()
        self.latency = LatencyTracker()
        self.lock = asyncio.Lock()  # guards the states: a batch applies whole
        self._flush_lock = asyncio.Lock()
        self._unacked: list[Any] = []
        # False once the consumer has stopped: acknowledging could commit nothing.
        self.consumer_running = True
        self._outbox: list[OutRecord] = []  # forwarded events and dead letters
        self._retry: list[OutRecord] = []  # refused at the last flush: sent first
        # Checkpoints (and the records they acknowledge) that wait for a flush at which
        # Kafka took everything before them.
        self._held: dict[int, tuple[PartitionState, ChangelogRecord]] = {}
        self._held_unacked: list[Any] = []
        self._written_dead: list[tuple[int, bytes]] = []  # segments to delete
        self._partition_cache: dict[str, int] = {}
        self._last_flush = time.monotonic()

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
            self.writer.submit(state.all_rows(), on_written=_confirm(state, state.flush_seq))
            for key, dead in state.unwritten_dead_letters.items():
                self.writer.submit((), dead, self._deleter(partition, [key]))
            state.unwritten_dead_letters.clear()

    def _restore(self, partition: int) -> PartitionState:
        entries = [
            (key, value)
            for key, value in self.table.data.items()
            if changelog_partition(key) == partition
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

    def _state(self, partition: int) -> PartitionState:
        state = self.states.get(partition)
        if state is None:
            # Not expected: Faust delivers records only after recovery, which restores
            # every assigned partition. Restoring here keeps the record from being lost.
            log.warning("partition %d was not restored on assignment; restoring now", partition)
            self.restore([partition])
            state = self.states[partition]
        return state

    # -- per record -------------------------------------------------------------------

    def apply_batch(self, events: Sequence[Any]) -> None:
        """Apply a batch of Faust events (records); pure CPU, no awaits."""
        input_topic = self.config.input_topic
        rekey_topic = self.config.rekey_topic
        stats = self.stats
        wall = self.clock()
        now_ms = int(wall * 1000)
        if stats.first_record_unix is None:
            stats.first_record_unix = wall
        stats.last_record_unix = wall
        for event in events:
            message = event.message
            topic = message.topic
            partition = message.partition
            offset = message.offset
            self._unacked.append(event)
            stats.records += 1
            state = self._state(partition)
            if offset <= state.offsets.get(topic, -1):
                stats.replayed_records += 1
                continue
            decoded = decode_record(message.value)
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
            if outcome.counted:
                self.latency.observe(local[0].ts)
            stats.events_counted += outcome.counted
            stats.duplicates += outcome.duplicates
            stats.late += outcome.late
            stats.invalid += outcome.invalid
            for dead in outcome.dead_letters:
                self._outbox.append(
                    (
                        self.config.dead_letter_topic,
                        f"{dead.topic}:{dead.partition}:{dead.offset}:{dead.idx}".encode(),
                        dead_letter_to_json(dead),
                        None,
                    )
                )

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
        if all(partition_of(e.creator_id) == partition for e in events):
            return events, positions
        keep: list[DecodedEvent] = []
        keep_positions: list[int] = []
        moved: dict[str, list[bytes]] = defaultdict(list)
        for event, position in zip(events, positions):
            if partition_of(event.creator_id) == partition:
                keep.append(event)
                keep_positions.append(position)
            else:
                moved[event.creator_id].append(event.to_json())
        for creator_id, group in moved.items():
            key = creator_id.encode()
            for _, value in split_to_fit(group, _json_array):
                self._outbox.append((self.config.rekey_topic, key, value, partition_of(creator_id)))
            self.stats.rekeyed += len(group)
        return keep, keep_positions

    # -- flush cycle ------------------------------------------------------------------

    def seconds_until_flush(self) -> float:
        return max(0.0, self._last_flush + self.config.flush_interval_s - time.monotonic())

    async def flush(self) -> None:
        """Make everything applied so far durable, acknowledge it, hand rows to the sink.

        One flush at a time. The snapshot is taken under :attr:`lock` (no batch is
        half-applied); the waits for Kafka happen without it, so the agent keeps
        applying batches meanwhile. Only records in the snapshot are acknowledged.
        """
        async with self._flush_lock:
            self._last_flush = started = time.monotonic()
            try:
                await self._flush()
            finally:
                self.stats.flush_s += time.monotonic() - started

    async def _flush(self) -> None:
        async with self.lock:
            flushes = [(p, s, s.flush()) for p, s in self.states.items() if s.has_changes()]
            unacked, self._unacked = self._unacked, []
            outbox, self._outbox = self._outbox, []
            sampled = self.latency.take()
        deletes, self._written_dead = self._written_dead, []
        if not (flushes or unacked or deletes or self._retry or self._held):
            return
        # Rows first: if this task is cancelled at an await below, they are not lost.
        if sampled:
            self.writer.submit((), on_written=lambda: self.latency.written(sampled))
        for _, state, result in flushes:
            self.writer.submit(result.rows, on_written=_confirm(state, result.seq))
        changelog = self.table.changelog_topic.get_topic_name()
        records, self._retry = self._retry, []
        records += outbox
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
            if result.dead_letters:
                self.writer.submit(
                    (), result.dead_letters, self._deleter(partition, result.dead_letter_keys)
                )
        self._held_unacked += unacked
        self._retry = await self._send(records, "forwarded events, dead letters and state")
        if self._retry:
            return  # no checkpoint over what Kafka has not taken; the next flush retries
        last = [(changelog, key, value, p) for p, (_, (key, value)) in held.items()]
        if await self._send(last, "checkpoints"):
            return  # held: the next flush sends them again (or newer ones)
        self._held = {}
        unacked, self._held_unacked = self._held_unacked, []
        for _, (state, (key, value)) in held.items():
            self._keep_in_table(key, value)
            state.confirm_durable()
        if self.consumer_running:
            # Event.ack() does the consumer's commit bookkeeping; Stream.ack() would
            # add two sensor callbacks per record, a third of the single-record cost.
            for event in unacked:
                event.ack()
            await self._commit_durable([(p, state) for p, (state, _) in held.items()])
        self.stats.flushes += 1
        self.stats.last_flush_unix = self.clock()

    def _keep_in_table(self, key: bytes, value: bytes | None) -> None:
        # The table's own copy: what a rebalance inside this process restores from.
        if value is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value

    async def _send(self, records: Sequence[OutRecord], what: str) -> list[OutRecord]:
        """Send ``records`` and wait until Kafka took them; return those it refused."""
        producer = self.app.producer
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
        """Commit the source offsets that the durable checkpoints cover.

        Faust commits acknowledged offsets up to the first gap in its own per-message
        bookkeeping. In the e2e test, about one restart in three under load left such
        a gap although every record had been applied and acknowledged here, and the
        partition's commits stopped for good: totals stayed exact, but a later restart
        would have reread everything since. The checkpoint says exactly which records
        are durable, so that is what is committed (Faust's ``_commit_offsets``: its
        own commit path, which skips partitions no longer assigned; pinned version).
        """
        consumer: Any = self.app.consumer  # the concrete consumer: private members
        offsets: dict[TP, int] = {}
        for partition, state in states:
            for topic, offset in state.durable_offsets.items():
                tp = TP(topic, partition)
                committed = consumer._committed_offset.get(tp)
                if committed is None or offset + 1 > committed:
                    offsets[tp] = offset + 1
        if offsets:
            await consumer._commit_offsets(offsets)

    async def _flush_producer(self, what: str) -> None:
        """Wait until Kafka acknowledged everything sent; say so when that is slow."""
        flushing = asyncio.ensure_future(self.app.producer.flush())
        waited = 0.0
        while True:
            done, _ = await asyncio.wait({flushing}, timeout=10.0)
            if done:
                flushing.result()
                return
            waited += 10.0
            log.warning("still waiting for Kafka to acknowledge the %s (%.0f s)", what, waited)

    def _deleter(self, partition: int, keys: list[bytes]) -> Callable[[], None] | None:
        """A callback for the sink writer: these dead letters are in ClickHouse, so their
        changelog segments go at the next flush."""
        if not keys:
            return None

        def delete() -> None:
            self._written_dead.extend((partition, key) for key in keys if key in self.table.data)

        return delete

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this worker no longer owns; their new owner restores them."""
        for partition in partitions:
            self.states.pop(partition, None)
            self._held.pop(partition, None)
        self._unacked = [e for e in self._unacked if e.message.partition not in partitions]
        self._held_unacked = [
            e for e in self._held_unacked if e.message.partition not in partitions
        ]

    def snapshot(self) -> dict[str, Any]:
        """Counters for the /stats page and benchmarks."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        writer = self.writer
        return {
            **self.stats.as_dict(),
            "rows_written": writer.stats.rows_written,
            "rows_pending": writer.stats.rows_pending,
            "writer_idle": writer.idle,
            "last_write_unix": writer.stats.last_write_unix,
            "sink_failures": writer.stats.failures,
            "latency_ms": self.latency.summary(),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_peak_mb": _peak_rss_mb(),
        }


def _json_array(elements: list[bytes]) -> bytes:
    return b"[" + b",".join(elements) + b"]"


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that
    over fork+exec, so a worker started by a big process would report the parent's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _confirm(state: PartitionState, seq: int) -> Callable[[], None]:
    """A callback for the sink writer: rows of flush ``seq`` are in ClickHouse."""
    return lambda: state.confirm_written(seq)


@dataclass
class Worker:
    """The assembled Faust app and the pieces tests and the CLI reach into."""

    app: faust.App
    processor: StreamProcessor
    writer: SinkWriter


def build_worker(
    config: WorkerConfig,
    sink: Any,
    *,
    baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    extra_pages: Callable[[faust.App, StreamProcessor], None] | None = None,
) -> Worker:
    """Build the Faust app: the stream agent, reference-data agents and the flush timer.

    ``sink`` is a started ``sinks.clickhouse.ClickHouseSink``, or with
    ``config.writes_reference_data`` off a ``sinks.row_topic.WindowRowPublisher``
    (anything with the write methods of ``streams.sink_writer.RowSink``).
    """
    brokers = [f"kafka://{host.strip()}" for host in config.kafka_bootstrap.split(",")]
    app = faust.App(
        config.app_id,
        broker=brokers,
        store="memory://",
        topic_partitions=config.partitions,
        topic_replication_factor=1,
        datadir=str(config.data_dir),
        web_enabled=config.web_port is not None,
        web_bind=config.web_host,
        web_host=config.web_host,
        web_port=config.web_port or 6066,
        broker_commit_interval=config.flush_interval_s,
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=config.session_timeout_s / 5,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        # Batch records are up to 1 MiB: fetch many per partition per round trip.
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_buffer_maxsize=config.max_batch,
        table_standby_replicas=0,
        logging_config=None,
    )
    use_prompt_fetches(app)
    raw: dict[str, Any] = dict(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    records = app.topic(config.input_topic, config.rekey_topic, **raw)
    profiles = app.topic(config.profiles_topic, **raw)
    contracts = app.topic(config.contracts_topic, **raw)
    table = app.Table(
        "state",
        default=None,
        partitions=config.partitions,
        # bytes in and out: Faust picks the "raw" codec for its changelog from these.
        key_type=bytes,
        value_type=bytes,
    )
    writer = SinkWriter(sink)
    processor = StreamProcessor(app, config, writer, table, baseline=baseline)

    @table.on_recover
    async def restore_assigned() -> None:
        # Faust calls this once the changelog is read back after an assignment, before
        # any record of the assigned partitions is delivered.
        assigned = {
            tp.partition
            for tp in app.consumer.assignment()
            if tp.topic in (config.input_topic, config.rekey_topic)
        }
        async with processor.lock:
            processor.restore(assigned)

    @app.agent(records, concurrency=1)
    async def post_stats(stream: Any) -> None:
        async for events in stream.noack_take(config.max_batch, within=0.05):
            async with processor.lock:
                started = time.perf_counter()
                processor.apply_batch(events)
                processor.stats.apply_s += time.perf_counter() - started
                processor.stats.batches += 1
            # Backpressure: while ClickHouse lags too far behind, stop taking records.
            await writer.wait_for_room()

    @app.task
    async def flush_every_interval() -> None:
        # A loop rather than app.timer: a flush can outlast the interval while Kafka
        # acknowledges, and mode warns on every timer tick that overlaps the last.
        while True:
            await asyncio.sleep(processor.seconds_until_flush())
            await processor.flush()

    async def creator_profiles(stream: Any) -> None:
        async for values in stream.take(1000, within=1.0):
            rows = _valid(CreatorProfile, values)
            if rows:
                await asyncio.to_thread(sink.write_profiles, rows)

    async def campaign_contracts(stream: Any) -> None:
        async for values in stream.take(1000, within=1.0):
            rows = _valid(CampaignContract, values)
            if rows:
                await asyncio.to_thread(sink.write_contracts, rows)

    if config.writes_reference_data:
        app.agent(profiles)(creator_profiles)
        app.agent(contracts)(campaign_contracts)

    @app.timer(config.stats_interval_s)
    async def report() -> None:
        s = processor.stats
        log.info(
            "records %d, events counted %d, duplicates %d, late %d, invalid %d, "
            "rekeyed %d, rows written %d, sink failures %d",
            s.records,
            s.events_counted,
            s.duplicates,
            s.late,
            s.invalid,
            s.rekeyed,
            writer.stats.rows_written,
            writer.stats.failures,
        )

    @app.task
    async def start_writer() -> None:
        writer.start()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types miss async receivers
    async def on_revoked(sender: Any, *args: Any, signal: Any, **_: Any) -> None:
        revoked: set[Any] = args[0]
        mine = {
            tp.partition for tp in revoked if tp.topic in (config.input_topic, config.rekey_topic)
        }
        if mine:
            # Hand the partitions over with their state durable and their records
            # acknowledged, so whoever gets them next resumes exactly here.
            await processor.flush()
            async with processor.lock:
                processor.forget(mine)
            log.info("partitions revoked: %s", sorted(mine))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # as above
    async def on_assigned(sender: Any, *args: Any, signal: Any, **_: Any) -> None:
        assigned: set[Any] = args[0]
        mine = sorted({tp.partition for tp in assigned if tp.topic == config.input_topic})
        log.info("partitions assigned: %s", mine)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # as above
    async def on_shutdown(sender: Any, *args: Any, signal: Any, **_: Any) -> None:
        # Consumer is stopped, producer still up: make the last batch durable and
        # written, so Ctrl-C loses nothing even on the memory-only embedded broker.
        processor.consumer_running = False
        await processor.flush()
        await writer.stop(config.shutdown_timeout_s)
        log.info("worker stopped: %s", processor.stats.as_dict())

    if extra_pages is not None:
        extra_pages(app, processor)
    # Faust registered these on the app; naming them keeps linters from calling them unused.
    _ = (
        restore_assigned,
        post_stats,
        flush_every_interval,
        creator_profiles,
        campaign_contracts,
        report,
        start_writer,
    )
    return Worker(app, processor, writer)


def _valid(model: type[Any], values: Sequence[bytes]) -> list[Any]:
    rows = []
    for value in values:
        try:
            rows.append(model.model_validate_json(value))
        except ValueError:
            log.warning("ignoring invalid %s record: %.200r", model.__name__, value)
    return rows
