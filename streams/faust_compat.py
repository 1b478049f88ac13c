"""Every touch of Faust's (and aiokafka's) private members, in one place.

Read from faust-streaming 0.15.3 and aiokafka 0.14 (pinned in pyproject.toml). When
either version changes, reread each piece here against the new source; the unit test
``test_faust_compat`` checks that the members used still exist.

- prompt fetches: the consumer asks the broker to answer fetches within 100 ms;
- offset commits: the worker commits what its durable checkpoints cover through the
  consumer's own commit path;
- the changelog: the table's local copy and its topic's name, as ``streams.ports``
  describes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

FAUST_VERSION = "0.15.3"

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
