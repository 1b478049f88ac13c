"""Every touch of Faust's (and aiokafka's) private members, in one place.

Read from faust-streaming 0.15.3 and aiokafka 0.14 (pinned in pyproject.toml). When
either version changes, reread each piece here against the new source; the unit test
``test_faust_compat`` fingerprints the code relied on and checks the members used.

- prompt fetches: the consumer asks the broker to answer fetches within 100 ms;
- batched delivery: records of the worker's own topics reach the processor as each
  fetch's batch per partition, past Faust's per-record machinery (``_drain_messages``);
- offset commits: the worker commits what its durable checkpoints cover through the
  consumer's own commit path;
- the changelog: the table's local copy and its topic's name, as ``streams.ports``
  describes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("creatorpulse.worker")

FAUST_VERSION = "0.15.3"
AIOKAFKA_VERSION = "0.14.0"

#: How long the broker may hold a fetch that finds no new records (Faust fixes 1,500 ms).
#: aiokafka keeps one fetch per broker in flight and leaves out the partitions whose
#: last records are still buffered. When Faust is slower than aiokafka's 100 ms
#: prefetch backoff, the next fetch asks only for idle partitions (the rekey topic,
#: reference topics), and the broker holds it for the whole wait while records pile up
#: on the input partitions (README, performance). An idle worker then asks the broker
#: ten times a second.
FETCH_MAX_WAIT_MS = 100


class _PromptFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts, which is after this (aiokafka's own setting).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


#: Applies one partition's records of one fetch (aiokafka ``ConsumerRecord`` objects),
#: under the batch lock; pure CPU, no awaits. The flag says whether they reach the
#: partition's end offset as the fetch saw it (the consumer has caught up). True if the
#: partition's state now holds all of them (it is restored, and they followed what it
#: had in order).
BatchHandler = Callable[[TP, list[Any], bool], bool]
#: Awaited after each batch, outside the lock (e.g. backpressure).
AfterBatch = Callable[[], Awaitable[None]]
#: The next offset of a partition that the application's state expects, or None when
#: it holds no state of it (not restored yet).
NextOffset = Callable[[TP], int | None]


class _PromptFetchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with prompt fetches and (once given a handler) batches.

    Faust splits each fetch into single records and hands each through tasks, the
    conductor, an ``Event`` and a stream queue: about 115 µs of CPU per record here, and
    it can drop a fetched record without seeking back (a cancelled hand-over), which
    the processor then has to read again. Records of the topics in
    :attr:`batched_topics` skip all of that: each partition's records of a fetch go to
    :attr:`on_batch` at once, and the partition's read offset advances only after the
    handler has taken them. The handler runs under :attr:`batch_lock`, and a batch
    whose rebalance began while it waited for the lock is dropped there (a seek to the
    committed offsets follows): applied after the revocation's last flush, it would be
    read again from those offsets. Every other topic (changelogs, reference data) keeps
    Faust's own per-record path. The checks Faust makes before delivering stay: flow
    control, a generation change, active partitions, end offsets.

    After an assignment, records arrive before Faust's seek to the committed offsets at
    the end of recovery (:meth:`perform_seek`): some from where aiokafka stood before the
    rebalance (ahead of what the state holds: a fetch the revocation dropped), some
    fetched after aiokafka's part of the seek (exactly where the state goes on). Until
    that seek has completed in the generation, a batch is checked against
    :attr:`next_offset`: with no state, or starting ahead of it, it is dropped (the seek
    follows and reads it again); otherwise what the state already holds is cut off and
    the rest applied. Dropping everything would lose the second kind (aiokafka has moved
    past them); applying everything would apply the first kind out of order. And the
    seek does not move a read offset back past what the handler took in the same
    generation: the state that took them is the one restored for this generation, and
    its next flush commits them. A rewind (:meth:`seek`) moves it back as asked.

    A batched topic has no acks and no agent: the processor commits what its durable
    checkpoints cover. ``_read_offset`` means the *next* offset to take for these
    partitions, which is what Faust's own seeks store (``perform_seek``, ``seek``).
    """

    batched_topics: frozenset[str] = frozenset()
    on_batch: BatchHandler | None = None
    after_batch: AfterBatch | None = None
    batch_lock: asyncio.Lock | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Per batched partition: the generation and the next offset after the records
        #: the handler last took whole.
        self.taken: dict[TP, tuple[int, int]] = {}
        #: The generation whose seek to the committed offsets has completed.
        self.settled_generation: int | None = None
        self.next_offset: NextOffset | None = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _PromptFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        generation = self.app.consumer_generation_id
        await super().perform_seek()
        # No await from here on: nothing is delivered between Faust's update and this.
        read_offset = self._read_offset
        for tp, (taken_in, next_offset) in self.taken.items():
            if taken_in == generation and self.app.consumer_generation_id == generation:
                current = read_offset.get(tp)
                if current is None or current < next_offset:
                    read_offset[tp] = next_offset
        self.settled_generation = generation

    async def seek(self, partition: TP, offset: int) -> None:
        # A rewind asks for records again: the seek decides, not what was taken.
        self.taken.pop(partition, None)
        await super().seek(partition, offset)

    async def _drain_messages(self, fetcher: Any) -> None:
        if self.on_batch is None or not self.batched_topics:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                generation = self.app.consumer_generation_id
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust does: records fetched while the flow stopped are dropped,
                    # and the partitions go back to their committed offsets. The seek
                    # fails when a rebalance took a partition meanwhile, and the
                    # assignment's own seek follows: as Faust does, log and go on (left
                    # to raise, it crashed the fetcher and the worker).
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek to committed offsets with the flow stopped: %r", exc)
                    continue
                await self._deliver(records, active, generation)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def _current(self, generation: int) -> bool:
        # Faust's own reasons to drop what it fetched; a seek always follows them.
        return self.flow_active and self.app.consumer_generation_id == generation

    async def _deliver(self, records: Mapping[TP, list[Any]], active: Any, generation: int) -> None:
        batched = self.batched_topics
        on_batch, after_batch, lock = self.on_batch, self.after_batch, self.batch_lock
        assert on_batch is not None
        assert lock is not None
        read_offset = self._read_offset
        for tp, batch in records.items():
            if not self._current(generation):
                return
            if not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            end_offset = self.highwater(tp)
            self.app.monitor.track_tp_end_offset(tp, end_offset)
            if tp.topic not in batched:
                await self._deliver_one_by_one(tp, batch)
                continue
            start = read_offset[tp]
            async with lock:
                # A rebalance may have begun while this waited (the revocation's flush
                # holds the lock): the partition's last flush is done, so applying now
                # would have the records read again from the committed offsets.
                if not self._current(generation):
                    return
                if self.settled_generation != generation:
                    batch = self._before_the_seek(tp, batch)
                # The next offset to take; a seek while waiting moved it (both ways).
                first = read_offset[tp]
                if batch and first is not None and batch[0].offset < first:
                    batch = [record for record in batch if record.offset >= first]
                if batch:
                    at_end = end_offset is not None and batch[-1].offset + 1 >= end_offset
                    took = on_batch(tp, batch, at_end)
                    # Without a seek since the fetch, go on after the batch; after one
                    # (a rewind), the seek says where to go on. Never backwards.
                    if first == start:
                        read_offset[tp] = next_offset = batch[-1].offset + 1
                        if took:
                            self.taken[tp] = (generation, next_offset)
                        else:
                            self.taken.pop(tp, None)
            if after_batch is not None:
                await after_batch()

    def _before_the_seek(self, tp: TP, batch: list[Any]) -> list[Any]:
        """What of a batch delivered before recovery's seek the state can take in order."""
        expected = self.next_offset(tp) if self.next_offset is not None else None
        if expected is None or batch[0].offset > expected:
            return []  # not restored yet, or from a stale position: the seek reads it again
        return [record for record in batch if record.offset >= expected]

    async def _deliver_one_by_one(self, tp: TP, batch: list[Any]) -> None:
        """Faust's per-record delivery (``Consumer._drain_messages``), for other topics."""
        read_offset = self._read_offset
        callback = self.callback
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for record in batch:
            offset = record.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue
            if acks_enabled and last and offset - last > 1:
                await self._add_gap(tp, last + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
            read_offset[tp] = offset


class _PromptFetchTransport(faust_aiokafka.Transport):
    Consumer = _PromptFetchConsumer


def deliver_in_batches(
    app: faust.App,
    topics: Iterable[str],
    on_batch: BatchHandler,
    *,
    lock: asyncio.Lock,
    next_offset: NextOffset,
    after_batch: AfterBatch | None = None,
) -> None:
    """Hand ``topics``' records to ``on_batch`` per partition and fetch, under ``lock``,
    bypassing Faust's per-record path (see :class:`_PromptFetchConsumer`); then await
    ``after_batch``. Needs :func:`use_prompt_fetches`.

    ``lock`` is the one a partition revocation's last flush holds, so that no batch is
    applied between that flush and the seek to the committed offsets. ``next_offset``
    says where the state of a partition goes on, for batches delivered before that
    seek."""
    consumer = app.consumer
    assert isinstance(consumer, _PromptFetchConsumer), "call use_prompt_fetches first"
    consumer.batched_topics = frozenset(topics)
    consumer.on_batch = on_batch
    consumer.after_batch = after_batch
    consumer.batch_lock = lock
    consumer.next_offset = next_offset


def use_prompt_fetches(app: faust.App) -> None:
    """Give ``app`` a consumer whose fetches wait at most :data:`FETCH_MAX_WAIT_MS`.

    Call right after creating the app: its transport is created on first use.
    """
    app.transport = _PromptFetchTransport(app.conf.broker_consumer, app)


class FaustChangelog:
    """A Faust table as the processor's :class:`~streams.ports.Changelog`."""

    def __init__(self, table: Any) -> None:
        self._table = table

    @property
    def data(self) -> MutableMapping[bytes, bytes]:
        data: MutableMapping[bytes, bytes] = self._table.data
        return data

    @property
    def topic(self) -> str:
        return str(self._table.changelog_topic.get_topic_name())


class FaustCommitter:
    """Commits offsets through the consumer's own commit path (``_commit_offsets``),
    which skips partitions no longer assigned, and reads what it last committed.

    Faust's own commits go up to the first gap in its per-message bookkeeping; in the
    e2e test, about one restart in three under load left such a gap although every
    record had been applied and acknowledged, and the partition's commits stopped for
    good. The durable checkpoints say exactly which records are done, so the worker
    commits those.
    """

    def __init__(self, app: faust.App, bootstrap: str) -> None:
        self._app = app
        self._bootstrap = bootstrap

    def committed(self, tp: TP) -> int | None:
        consumer: Any = self._app.consumer  # the concrete consumer: private members
        offset: int | None = consumer._committed_offset.get(tp)
        return offset

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        consumer: Any = self._app.consumer
        await consumer._commit_offsets(dict(offsets))

    async def seek(self, tp: TP, offset: int) -> None:
        # Public Faust API: aiokafka's seek, and Faust's read offset so it delivers again.
        await self._app.consumer.seek(tp, offset)

    async def first_offset_at(self, tp: TP, offset: int) -> int | None:
        """Asks Kafka with a throwaway consumer outside the group (rare: on a skip)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        probe = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","), enable_auto_commit=False
        )
        await probe.start()
        try:
            partition = TopicPartition(tp.topic, tp.partition)
            probe.assign([partition])
            probe.seek(partition, offset)
            batch = await probe.getmany(partition, timeout_ms=2_000, max_records=1)
            records = batch.get(partition, [])
            return int(records[0].offset) if records else None
        finally:
            await probe.stop()


def assigned_partitions(app: faust.App, topics: Iterable[str]) -> set[int]:
    """The partitions of ``topics`` assigned to this worker now."""
    wanted = set(topics)
    return {tp.partition for tp in app.consumer.assignment() if tp.topic in wanted}
