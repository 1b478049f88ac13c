"""The Faust worker: the app, its topics, table, agents and signals, wired to the processor.

Faust gives us the consumer group, partition assignment, a changelog topic with
recovery, and the web server. Everything that decides a number lives in pure code
(``streams.state``, ``streams.windows``, ``schemas.events``), and the flush cycle in
``streams.processor``; this module only connects them:

    records (input + rekey topics) -> processor.apply_records, a fetch's batch at a time
    when a flush is due            -> processor.flush (by age, size or interval)
    changelog recovered            -> processor.restore (the assigned partitions)
    partitions revoked / shutdown  -> a last flush, then the partitions are handed over

Records are acknowledged only after the state that includes them is durable in the
changelog, so no offset is committed whose effects could be lost (docs/design.md §4-5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from schemas.reference import CampaignContract, CreatorProfile
from schemas.rows import WindowKey
from streams.alerts.stage import PendingView, add_alert_stage
from streams.config import WorkerConfig
from streams.faust_compat import (
    FaustChangelog,
    FaustCommitter,
    assigned_partitions,
    deliver_in_batches,
    use_prompt_fetches,
)
from streams.observability import AlertStats
from streams.outputs.writer import SinkWriter
from streams.processor import StreamProcessor

log = logging.getLogger("creatorpulse.worker")


@dataclass
class Worker:
    """The assembled Faust app and the pieces tests and the CLI reach into."""

    app: faust.App
    processor: StreamProcessor
    writer: SinkWriter | None
    #: the alert stage's counters when it runs in this worker (its /metrics reads them)
    alerts: AlertStats | None = None


def build_worker(
    config: WorkerConfig,
    sink: Any | None,
    *,
    baseline: Mapping[WindowKey, Sequence[int]] | None = None,
    extra_pages: Callable[[faust.App, StreamProcessor], None] | None = None,
    on_alert_view: Callable[[PendingView], None] | None = None,
) -> Worker:
    """Build the Faust app: batched delivery of its own topics, the reference-data agents
    and the flush timer.

    ``sink`` is a started ``sinks.clickhouse.ClickHouseSink`` (anything with its write
    methods), or ``None`` when a separate ``creatorpulse sink`` process writes what the
    worker publishes on the window-rows topic. ``on_alert_view`` gets the alert stage's
    read-only view of its pending creators, when the stage runs.
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
        producer_request_timeout=config.kafka_send_timeout_s,
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
    topics = config.topics
    records = app.topic(topics.input, topics.rekey, acks=False, **raw)
    profiles = app.topic(topics.profiles, **raw)
    contracts = app.topic(topics.contracts, **raw)
    table = app.Table(
        "state",
        default=None,
        partitions=config.partitions,
        # bytes in and out: Faust picks the "raw" codec for its changelog from these.
        key_type=bytes,
        value_type=bytes,
    )
    writer = SinkWriter(sink) if sink is not None else None
    processor = StreamProcessor(
        config,
        writer,
        app.producer,
        FaustChangelog(table),
        FaustCommitter(app, config.kafka_bootstrap),
        baseline=baseline,
    )

    @table.on_recover
    async def restore_assigned() -> None:
        # Faust calls this once the changelog is read back after an assignment, before
        # any record of the assigned partitions is delivered.
        assigned = assigned_partitions(app, (topics.input, topics.rekey))
        async with processor.lock:
            processor.restore(assigned)

    def on_batch(tp: Any, batch: list[Any], at_end: bool) -> bool:
        # Inside the consumer's fetch task, under processor.lock: pure CPU.
        started = time.perf_counter()
        processor.apply_records(batch)
        processor.note_fetched(tp.topic, tp.partition, at_end)
        processor.stats.apply_s += time.perf_counter() - started
        processor.stats.batches += 1
        # Whether the state holds them all (restored, nothing skipped to rewind).
        return tp.partition in processor.states and tp not in processor.rewinds

    async def after_batch() -> None:
        if processor.rewinds:
            processor.rewind()
        # While ClickHouse lags too far behind, stop fetching (reference topics included).
        if writer is not None:
            await writer.wait_for_room()

    # The worker's own topics: no agent, no Faust acks; their records come in batches.
    app.topics.add(records)
    deliver_in_batches(
        app,
        (topics.input, topics.rekey),
        on_batch,
        lock=processor.lock,
        next_offset=processor.next_offset,
        after_batch=after_batch,
    )

    @app.task
    async def flush_when_due() -> None:
        # A loop rather than app.timer: a flush is due by the age or number of records
        # as well as by time, and it can outlast the interval while Kafka acknowledges.
        while True:
            await processor.wait_until_flush_due()
            await processor.flush()

    if sink is not None and config.writes_reference_data:
        store = sink

        @app.agent(profiles)
        async def creator_profiles(stream: Any) -> None:
            async for values in stream.take(1000, within=1.0):
                rows = _valid(CreatorProfile, values)
                if rows:
                    await asyncio.to_thread(store.write_profiles, rows)

        @app.agent(contracts)
        async def campaign_contracts(stream: Any) -> None:
            async for values in stream.take(1000, within=1.0):
                rows = _valid(CampaignContract, values)
                if rows:
                    await asyncio.to_thread(store.write_contracts, rows)

        _ = (creator_profiles, campaign_contracts)

    @app.timer(config.stats_interval_s)
    async def report() -> None:
        s = processor.snapshot()
        log.info(
            "records %d, events counted %d, duplicates %d, late %d, invalid %d, "
            "rekeyed %d, rows written %d, sink failures %d",
            s["records"],
            s["events_counted"],
            s["duplicates"],
            s["late"],
            s["invalid"],
            s["rekeyed"],
            s["rows_written"],
            s.get("sink_failures", 0),
        )

    @app.task
    async def start_writer() -> None:
        if writer is not None:
            writer.start()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types miss async receivers
    async def on_revoked(sender: Any, *args: Any, signal: Any, **_: Any) -> None:
        revoked: set[Any] = args[0]
        mine = {tp.partition for tp in revoked if config.owns(tp.topic)}
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
        mine = sorted({tp.partition for tp in assigned if tp.topic == topics.input})
        log.info("partitions assigned: %s", mine)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # as above
    async def on_shutdown(sender: Any, *args: Any, signal: Any, **_: Any) -> None:
        # Consumer is stopped, producer still up: make the last batch durable and
        # written, so Ctrl-C loses nothing even on the memory-only embedded broker.
        processor.consumer_running = False
        try:
            await asyncio.wait_for(processor.flush(), config.shutdown_timeout_s)
        except TimeoutError:
            log.warning(
                "the last flush did not finish within %.0f s (is Kafka down?); what it "
                "covers is read again on the next start",
                config.shutdown_timeout_s,
            )
        if writer is not None:
            await writer.stop(config.shutdown_timeout_s)
        log.info("worker stopped: %s", processor.stats.as_dict())

    alert_stats: AlertStats | None = None
    if config.alert_rules is not None:
        # Its own agent on the window-rows topic: it never holds up counting.
        *_, pending = add_alert_stage(
            app, config.kafka_bootstrap, topics, config.partitions, config.alert_rules
        )
        alert_stats = pending.stats
        if on_alert_view is not None:
            on_alert_view(pending)
    if extra_pages is not None:
        extra_pages(app, processor)
    # Faust registered these on the app; naming them keeps linters from calling them unused.
    _ = (
        restore_assigned,
        flush_when_due,
        report,
        start_writer,
    )
    return Worker(app, processor, writer, alert_stats)


def _valid(model: type[Any], values: Sequence[bytes]) -> list[Any]:
    rows = []
    for value in values:
        try:
            rows.append(model.model_validate_json(value))
        except ValueError:
            log.warning("ignoring invalid %s record: %.200r", model.__name__, value)
    return rows
