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
lost (DESIGN.md §4-5).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from kafka.partitioner.default import murmur2

from schemas.events import DecodedEvent, decode_record
from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import DeadLetter, dead_letter_to_json
from streams.sink_writer import SinkWriter
from streams.state import PartitionState, WindowKey, changelog_partition
from streams.windows import DEFAULT_GRACE_S, DEFAULT_WINDOW_SIZES_S

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
    window_sizes_s: tuple[int, ...] = DEFAULT_WINDOW_SIZES_S
    flush_interval_s: float = 1.0
    max_batch: int = 10_000
    data_dir: Path = Path(".creatorpulse/faust")
    web_port: int | None = None
    stats_interval_s: float = 10.0
    # Creator profiles and campaign contracts go to the sink too; off when a separate
    # `creatorpulse sink` process writes ClickHouse (it reads those topics itself).
    writes_reference_data: bool = True
    # Short enough that a killed worker's partitions move on quickly, and that the
    # embedded broker (which completes a group join after half of it) starts fast.
    session_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        if self.grace_s < 0:
            raise ValueError("grace_s must not be negative")
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


class StreamProcessor:
    """Owns the partition states of this worker and their flush cycle."""

    def __init__(
        self,
        app: faust.App,
        config: WorkerConfig,
        writer: SinkWriter,
        table: Any,
        rekey_topic: Any,
        dead_letter_topic: Any,
        baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.writer = writer
        self.table = table
        self.rekey_topic = rekey_topic
        self.dead_letter_topic = dead_letter_topic
        self.baseline = dict(baseline or {})
        self.states: dict[int, PartitionState] = {}
        self.stats = WorkerStats()
        self.latency = LatencyTracker()
        self.lock = asyncio.Lock()  # guards the states: a batch applies whole
        self._flush_lock = asyncio.Lock()
        self._unacked: list[Any] = []
        # False once the consumer has stopped: acknowledging could commit nothing.
        self.consumer_running = True
        self._outbox_dead: list[DeadLetter] = []
        self._partition_cache: dict[str, int] = {}
        self._last_flush = time.monotonic()

    # -- per record -------------------------------------------------------------------

    def _partition_of(self, creator_id: str) -> int:
        partition = self._partition_cache.get(creator_id)
        if partition is None:
            partition = partition_for(creator_id.encode(), self.config.partitions)
            self._partition_cache[creator_id] = partition
        return partition

    def _state(self, partition: int) -> PartitionState:
        state = self.states.get(partition)
        if state is None:
            state = self._restore(partition)
            self.states[partition] = state
        return state

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
        # Rewrite every restored window: ClickHouse may miss the last rows before a crash.
        self.writer.submit(state.all_rows(), on_written=_confirm(state, state.flush_seq))
        for key, dead in state.unwritten_dead_letters.items():
            self.writer.submit((), dead, self._deleter(partition, [key]))
        state.unwritten_dead_letters.clear()
        return state

    def apply_batch(self, events: Sequence[Any]) -> None:
        """Apply a batch of Faust events (records); pure CPU, no awaits."""
        input_topic = self.config.input_topic
        stats = self.stats
        wall = time.time()
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
            outcome = state.apply_record(topic, offset, local)
            if outcome.counted:
                self.latency.observe(local[0].ts)
            stats.events_counted += outcome.counted
            stats.duplicates += outcome.duplicates
            if decoded.rejected or outcome.late:
                now = datetime.now(UTC)
                dead = [
                    DeadLetter(now, topic, partition, offset, r.index, r.reason, r.payload)
                    for r in decoded.rejected
                ]
                horizon = state.watermark.horizon_ms()
                for index in outcome.late:
                    late_event = local[index]
                    dead.append(
                        DeadLetter(
                            now,
                            topic,
                            partition,
                            offset,
                            positions[index],
                            f"late: event time {late_event.ts} ms is older than the "
                            f"watermark minus grace ({horizon} ms)",
                            late_event.to_json(),
                        )
                    )
                stats.invalid += len(decoded.rejected)
                stats.late += len(outcome.late)
                state.add_dead_letters(dead)
                self._outbox_dead.extend(dead)

    def _rekey_misplaced(
        self, partition: int, events: list[DecodedEvent], positions: list[int]
    ) -> tuple[list[DecodedEvent], list[int]]:
        """Send events whose creator belongs to another partition to the rekey topic.

        A creator's windows, dedup ids and post totals live in one partition; an event
        in a record keyed by something else is counted when it arrives there.
        """
        partition_of = self._partition_of
        if all(partition_of(e.creator_id) == partition for e in events):
            return events, positions
        keep: list[DecodedEvent] = []
        keep_positions: list[int] = []
        moved: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event, position in zip(events, positions):
            if partition_of(event.creator_id) == partition:
                keep.append(event)
                keep_positions.append(position)
            else:
                moved[event.creator_id].append(event.as_dict())
        for creator_id, group in moved.items():
            self.rekey_topic.send_soon(
                key=creator_id.encode(),
                value=orjson.dumps(group),
                partition=partition_of(creator_id),
            )
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
            outbox, self._outbox_dead = self._outbox_dead, []
            sampled = self.latency.take()
        if not flushes and not unacked:
            return
        # Rows first: if this task is cancelled at an await below, they are not lost.
        if sampled:
            self.writer.submit((), on_written=lambda: self.latency.written(sampled))
        for _, state, result in flushes:
            self.writer.submit(result.rows, on_written=_confirm(state, result.seq))
        # Forwarded events and dead-letter records must be durable before the
        # checkpoint that says their source records are done.
        for dead in outbox:
            self.dead_letter_topic.send_soon(
                key=f"{dead.topic}:{dead.partition}:{dead.offset}:{dead.idx}".encode(),
                value=dead_letter_to_json(dead),
            )
        await self._flush_producer("forwarded and dead-letter records")
        for partition, _, result in flushes:
            for key, value in result.changelog:
                if value is None:
                    self.table.data.pop(key, None)
                else:
                    self.table.data[key] = value
                self.table.send_changelog(partition, key, value, "raw", "raw")
            # Only now, with their segments in the table: the sink may confirm them
            # before the changelog is acknowledged, and the deleter must find the keys.
            # (Cancelled before this, the replay from the checkpoint makes them again.)
            if result.dead_letters:
                self.writer.submit(
                    (), result.dead_letters, self._deleter(partition, result.dead_letter_keys)
                )
        await self._flush_producer("state changelog")
        for _, state, _ in flushes:
            state.confirm_durable()
        if self.consumer_running:
            # Event.ack() does the consumer's commit bookkeeping; Stream.ack() would
            # add two sensor callbacks per record, a third of the single-record cost.
            for event in unacked:
                event.ack()
            await self._commit_durable([(p, s) for p, s, _ in flushes])
        self.stats.flushes += 1
        self.stats.last_flush_unix = time.time()

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
        """A callback that deletes changelog keys (dead letters now in ClickHouse)."""
        if not keys:
            return None

        def delete() -> None:
            for key in keys:
                if key in self.table.data:
                    self.table.data.pop(key, None)
                    self.table.send_changelog(partition, key, None, "raw", "raw")

        return delete

    def forget(self, partitions: set[int]) -> None:
        """Drop partitions this worker no longer owns; their new owner restores them."""
        for partition in partitions:
            self.states.pop(partition, None)
        self._unacked = [e for e in self._unacked if e.message.partition not in partitions]

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
        web_host="127.0.0.1",
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
    rekey_topic = app.topic(config.rekey_topic, partitions=config.partitions, internal=True, **raw)
    dead_letter_topic = app.topic(config.dead_letter_topic, **raw)
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
    processor = StreamProcessor(
        app, config, writer, table, rekey_topic, dead_letter_topic, baseline=baseline
    )

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
        await writer.stop()
        log.info("worker stopped: %s", processor.stats.as_dict())

    if extra_pages is not None:
        extra_pages(app, processor)
    # Faust registered these on the app; naming them keeps linters from calling them unused.
    _ = (
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
