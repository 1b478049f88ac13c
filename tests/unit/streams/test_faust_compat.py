"""The guard on ``streams.faust_compat``: the Faust and aiokafka code it copies or relies on.

The batched delivery path repeats the checks of Faust's ``getmany`` and
``_drain_messages``, and the commit, seek and prompt-fetch pieces call private members.
Each function below is fingerprinted by its source. After an upgrade of either
library a changed function fails here by name: reread it against the matching piece of
``streams/faust_compat.py``, then update its fingerprint.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiokafka
import aiokafka.errors
import faust
import faust.transport.consumer as faust_consumer
import pytest
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams import faust_compat
from streams.faust_compat import FETCH_MAX_WAIT_MS, deliver_in_batches, use_prompt_fetches

Core = faust_consumer.Consumer
Driver = faust_aiokafka.Consumer

#: What each depended-on function does for the compat module, and its source's sha256.
FINGERPRINTS: dict[str, tuple[Callable[..., Any], str, str]] = {
    "faust Consumer._drain_messages": (
        Core._drain_messages,
        "44a2500309e83c63",
        "batched delivery copies its loop",
    ),
    "faust Consumer.getmany": (
        Core.getmany,
        "4b168d84882a70d6",
        "batched delivery repeats its drop checks",
    ),
    "faust Consumer._wait_next_records": (
        Core._wait_next_records,
        "6218e1969a636b3f",
        "batched delivery fetches with it",
    ),
    "faust Consumer.perform_seek": (
        Core.perform_seek,
        "0e8c130ff4b0afd8",
        "stores the *next* offset as read offset",
    ),
    "faust Consumer.seek": (Core.seek, "b86a9fe05f956b30", "rewinds set the read offset"),
    "faust Recovery.on_recovery_completed": (
        Recovery.on_recovery_completed,
        "6ef567acf072e46d",
        "its perform_seek must not hand taken batches over again",
    ),
    "faust Recovery._resume_streams": (
        Recovery._resume_streams,
        "d986a6710c1aca98",
        "the same without tables",
    ),
    "faust Consumer._add_gap": (Core._add_gap, "4df2573ded7c1c2c", "per-record path"),
    "faust Consumer._commit_offsets": (
        Core._commit_offsets,
        "1a69799041188441",
        "FaustCommitter commits through it",
    ),
    "faust Consumer._get_active_partitions": (
        Core._get_active_partitions,
        "b24897f3c7afdb5d",
        "what a fetch may deliver",
    ),
    "faust aiokafka Consumer._to_message": (
        Driver._to_message,
        "7c24f6511b2fcef7",
        "records the per-record path wraps",
    ),
    "faust aiokafka Consumer.highwater": (
        Driver.highwater,
        "f52cb0d26a713c3a",
        "end offsets tracked per fetch",
    ),
    "faust AIOKafkaConsumerThread._create_worker_consumer": (
        faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer,
        "c2701bfc3e6f6cad",
        "prompt fetches patch the consumer it builds",
    ),
    "aiokafka AIOKafkaConsumer.start": (
        aiokafka.AIOKafkaConsumer.start,
        "2f1ba70443327538",
        "reads _fetch_max_wait_ms when the consumer starts",
    ),
}


def fingerprint(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def test_the_pinned_versions_are_the_ones_read() -> None:
    assert faust.__version__ == faust_compat.FAUST_VERSION
    assert aiokafka.__version__ == faust_compat.AIOKAFKA_VERSION


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_depended_on_code_is_unchanged(name: str) -> None:
    function, expected, why = FINGERPRINTS[name]
    assert fingerprint(function) == expected, (
        f"{name} changed ({why}): reread it against streams/faust_compat.py, "
        "then update its fingerprint"
    )


def test_the_private_members_used_exist_on_a_built_consumer() -> None:
    app = faust.App("compat-guard", broker="kafka://127.0.0.1:9", web_enabled=False)
    use_prompt_fetches(app)
    consumer: Any = app.consumer
    try:
        for member in (
            "_read_offset",
            "_buffered_partitions",
            "_committed_offset",
            "_commit_every",
            "_n_acked",
            "_stopped",
            "flow_active",
            "suspend_flow",
            "consumer_stopped_errors",
            "callback",
            "wait_first",
        ):
            assert hasattr(consumer, member), member
        assert hasattr(app, "consumer_generation_id")
        assert hasattr(app.monitor, "track_tp_end_offset")
        assert hasattr(app.topics, "acks_enabled_for")

        def handler(tp: Any, batch: list[Any], at_end: bool) -> bool:
            raise AssertionError("never called")

        lock = asyncio.Lock()
        deliver_in_batches(app, ["t"], handler, lock=lock, next_offset=lambda tp: None)
        assert consumer.batched_topics == frozenset({"t"})
        assert consumer.on_batch is handler
        assert consumer.batch_lock is lock
        # Ours, made per consumer: what batches took, and whether recovery's seek is done.
        assert consumer.taken == {}
        assert consumer.settled_generation is None
        assert consumer.next_offset(TP("t", 0)) is None
    finally:
        # The consumer thread's own loops, made with the thread object; never run.
        consumer._thread.loop.close()
        consumer._thread.thread_loop.close()


def test_the_worker_consumer_asks_the_broker_to_answer_fetches_promptly() -> None:
    # Faust builds its aiokafka consumer with a 1,500 ms fetch wait (streams.app says
    # why that stalls the worker); this checks the override reaches the real consumer.
    async def built_consumer_wait_ms() -> int:
        app = faust.App("prompt-fetch-test", broker="kafka://127.0.0.1:9", web_enabled=False)
        use_prompt_fetches(app)
        consumer_of_app: Any = app.consumer
        thread = consumer_of_app._thread
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()
            # The consumer thread's own loop, made when the thread object was; never run.
            thread.loop.close()
            thread.thread_loop.close()

    assert FETCH_MAX_WAIT_MS == 100
    assert asyncio.run(built_consumer_wait_ms()) == FETCH_MAX_WAIT_MS


@dataclass(frozen=True)
class Record:
    """The members of aiokafka's ``ConsumerRecord`` the batched path reads."""

    offset: int


class Delivery:
    """A built (never started) worker consumer with batched delivery of topic ``t``.

    The test holds :attr:`lock` as a revocation's flush would; :attr:`waiting` is set
    once a delivery reached the batch lock (nothing awaits between the end-offset
    tracking it hooks and the lock).
    """

    def __init__(self) -> None:
        self.app = faust.App("compat-deliver", broker="kafka://127.0.0.1:9", web_enabled=False)
        use_prompt_fetches(self.app)
        consumer: Any = self.app.consumer
        # No broker to ask: the end offsets the fetches saw (None: not known yet).
        self.end_offsets: dict[TP, int | None] = {}
        consumer.highwater = lambda tp: self.end_offsets.get(tp, 0)
        self.consumer = consumer
        self.waiting = asyncio.Event()
        monitor: Any = self.app.monitor
        monitor.track_tp_end_offset = lambda tp, offset: self.waiting.set()
        self.lock = asyncio.Lock()
        self.applied: list[tuple[Any, list[int]]] = []
        self.at_end: list[bool] = []  # what each handler call was told
        self.after = 0
        self.takes = True  # what the handler answers: the state holds the batch
        # Where the state of each partition goes on (absent: not restored).
        self.state_next: dict[TP, int] = {}

        def handler(tp: Any, batch: list[Any], at_end: bool) -> bool:
            self.applied.append((tp, [r.offset for r in batch]))
            self.at_end.append(at_end)
            return self.takes

        async def after() -> None:
            self.after += 1

        deliver_in_batches(
            self.app,
            ["t"],
            handler,
            lock=self.lock,
            next_offset=lambda tp: self.state_next.get(tp),
            after_batch=after,
        )
        self.consumer.resume_flow()

        async def committed() -> dict[TP, int]:
            return dict(self.committed)

        async def no_broker_seek(tp: TP, offset: int) -> None:
            self.seeks.append((tp, offset))

        self.committed: dict[TP, int] = {}
        self.seeks: list[tuple[TP, int]] = []
        self.consumer.seek_to_committed = committed
        self.consumer._seek = no_broker_seek
        # As after recovery's seek; tests of what comes before it set this back.
        self.consumer.settled_generation = self.app.consumer_generation_id

    def close(self) -> None:
        self.consumer._thread.loop.close()
        self.consumer._thread.thread_loop.close()


TP0 = TP("t", 0)


def test_the_handler_is_told_whether_a_batch_reaches_the_partitions_end() -> None:
    # What lets the processor flush live data at once and a backlog in big flushes.
    d = Delivery()
    try:
        d.consumer._read_offset[TP0] = 0
        generation = d.app.consumer_generation_id
        d.end_offsets[TP0] = 10
        asyncio.run(d.consumer._deliver({TP0: [Record(o) for o in range(5)]}, None, generation))
        asyncio.run(d.consumer._deliver({TP0: [Record(o) for o in range(5, 10)]}, None, generation))
        d.end_offsets[TP0] = None  # aiokafka knows no end offset yet
        asyncio.run(d.consumer._deliver({TP0: [Record(10)]}, None, generation))
        assert d.applied == [(TP0, [0, 1, 2, 3, 4]), (TP0, [5, 6, 7, 8, 9]), (TP0, [10])]
        assert d.at_end == [False, True, False]
    finally:
        d.close()


def test_a_batch_goes_to_the_handler_and_the_read_offset_moves_past_it() -> None:
    d = Delivery()
    try:
        d.consumer._read_offset[TP0] = 5  # what a seek to committed offset 5 stores
        batch = [Record(o) for o in range(3, 9)]  # fetched from before that seek
        asyncio.run(d.consumer._deliver({TP0: batch}, None, d.app.consumer_generation_id))
        assert d.applied == [(TP0, [5, 6, 7, 8])]
        assert d.consumer._read_offset[TP0] == 9  # the next offset, not the last
        assert d.after == 1
    finally:
        d.close()


def test_a_batch_that_waited_for_the_lock_while_a_rebalance_began_is_dropped() -> None:
    # Found by tests/integration/kafka/test_worker_rebalance.py: the batch waited for
    # the lock held by the revocation's flush and was applied after it, then read again
    # from the committed offsets (every offset of it delivered twice).
    d = Delivery()

    async def scenario() -> None:
        generation = d.app.consumer_generation_id
        await d.lock.acquire()  # the revocation's flush
        delivery = asyncio.ensure_future(
            d.consumer._deliver({TP0: [Record(0), Record(1)]}, None, generation)
        )
        await d.waiting.wait()
        d.consumer.stop_flow()  # Faust stops the flow before the revoked signal
        d.lock.release()
        await delivery
        d.consumer.resume_flow()
        d.app.consumer_generation_id = generation + 1  # assigned again
        await d.consumer._deliver({TP0: [Record(0), Record(1)]}, None, generation)

    try:
        asyncio.run(scenario())
        assert d.applied == []
        assert d.consumer._read_offset[TP0] is None
    finally:
        d.close()


def test_a_seek_while_a_batch_waited_decides_where_delivery_goes_on() -> None:
    # A rewind (same generation) seeks back while a fetched batch waits: the batch may
    # be applied (the processor skips what is out of sequence), but the read offset
    # stays where the seek put it, or the records read again would be skipped here.
    d = Delivery()

    async def scenario() -> None:
        d.consumer._read_offset[TP0] = 10
        await d.lock.acquire()
        delivery = asyncio.ensure_future(
            d.consumer._deliver({TP0: [Record(10), Record(11)]}, None, d.app.consumer_generation_id)
        )
        await d.waiting.wait()
        d.consumer._read_offset[TP0] = 7  # what Consumer.seek stores
        d.lock.release()
        await delivery

    try:
        asyncio.run(scenario())
        assert d.applied == [(TP0, [10, 11])]
        assert d.consumer._read_offset[TP0] == 7
    finally:
        d.close()


def test_the_seek_after_recovery_keeps_what_the_handler_took_in_this_generation() -> None:
    # Found by tests/integration/kafka/test_worker_rebalance.py: records came between
    # the table's recovery and Faust's seek to the committed offsets and were applied;
    # the seek set the read offset back, and they were handed over a second time.
    # (Dropping them instead lost them when aiokafka had seeked before fetching them.)
    d = Delivery()

    async def scenario() -> None:
        generation = d.app.consumer_generation_id
        await d.consumer._deliver({TP0: [Record(4), Record(5)]}, None, generation)
        d.committed[TP0] = 4  # what the revoked owner committed: the restored state's next
        await d.consumer.perform_seek()
        assert d.consumer._read_offset[TP0] == 6
        # aiokafka reads again from the committed offset: nothing is handed over twice.
        await d.consumer._deliver({TP0: [Record(4), Record(5), Record(6)]}, None, generation)

    try:
        asyncio.run(scenario())
        assert d.applied == [(TP0, [4, 5]), (TP0, [6])]
        assert d.consumer._read_offset[TP0] == 7
    finally:
        d.close()


def test_the_seek_moves_back_what_the_handler_did_not_take_or_another_generation_took() -> None:
    d = Delivery()
    tp1 = TP("t", 1)

    async def scenario() -> None:
        generation = d.app.consumer_generation_id
        d.takes = False  # e.g. not restored yet: the state does not hold them
        await d.consumer._deliver({TP0: [Record(4), Record(5)]}, None, generation)
        d.takes = True
        await d.consumer._deliver({tp1: [Record(8)]}, None, generation)
        d.app.consumer_generation_id = generation + 1  # assigned again since
        d.committed.update({TP0: 4, tp1: 8})
        await d.consumer.perform_seek()

    try:
        asyncio.run(scenario())
        assert d.consumer._read_offset[TP0] == 4
        assert d.consumer._read_offset[TP("t", 1)] == 8
    finally:
        d.close()


def test_a_rewind_moves_the_read_offset_back_past_what_was_taken() -> None:
    d = Delivery()

    async def scenario() -> None:
        generation = d.app.consumer_generation_id
        await d.consumer._deliver({TP0: [Record(4), Record(5)]}, None, generation)
        await d.consumer.seek(TP0, 2)  # the processor's rewind
        d.committed[TP0] = 2
        await d.consumer.perform_seek()  # e.g. the flow stopped meanwhile

    try:
        asyncio.run(scenario())
        assert d.seeks == [(TP0, 2)]
        assert d.consumer._read_offset[TP0] == 2
    finally:
        d.close()


def test_before_recovery_s_seek_only_what_the_state_can_take_in_order_is_applied() -> None:
    # Found by tests/integration/kafka/test_worker_rebalance.py: before the seek, aiokafka
    # delivered records from where it stood before the rebalance (ahead of the restored
    # state: they were applied out of order, rewound, and handed over twice), and records
    # fetched after its part of the seek (dropping those lost them: it had moved past).
    d = Delivery()
    tp1, tp2 = TP("t", 1), TP("t", 2)

    async def scenario() -> None:
        d.app.consumer_generation_id += 1  # assigned again, recovering
        generation = d.app.consumer_generation_id
        d.state_next.update({TP0: 10, tp1: 20})  # restored; tp2 not yet
        records = {
            TP0: [Record(8), Record(9), Record(10), Record(11)],  # overlaps the state
            tp1: [Record(25), Record(26)],  # stale position, ahead of the state
            tp2: [Record(0)],
        }
        await d.consumer._deliver(records, None, generation)
        d.committed.update({TP0: 10, tp1: 20, tp2: 0})
        await d.consumer.perform_seek()
        # After the seek: what aiokafka reads again from the committed offsets.
        again = {TP0: [Record(10), Record(11), Record(12)], tp1: [Record(20)], tp2: [Record(0)]}
        await d.consumer._deliver(again, None, generation)

    try:
        asyncio.run(scenario())
        assert d.applied == [(TP0, [10, 11]), (TP0, [12]), (tp1, [20]), (TP("t", 2), [0])]
        assert d.consumer._read_offset[TP0] == 13
        assert d.consumer.settled_generation == d.app.consumer_generation_id
    finally:
        d.close()


def test_a_failed_seek_with_the_flow_stopped_does_not_end_the_fetch_loop() -> None:
    # Found by tests/integration/kafka/test_worker_rebalance.py: a fetch returned while a
    # rebalance had stopped the flow, the seek to committed offsets raised for a
    # partition no longer assigned, and the fetcher (and with it the worker) crashed.
    d = Delivery()
    fetches = 0

    async def next_records(timeout: float) -> tuple[dict[TP, list[Record]], None]:
        nonlocal fetches
        fetches += 1
        if fetches == 2:
            d.consumer._stopped.set()  # the second fetch ends the loop
        return {TP0: [Record(0)]}, None

    async def not_assigned() -> dict[TP, int]:
        raise aiokafka.errors.IllegalStateError("No current assignment for partition")

    async def scenario() -> None:
        d.consumer._wait_next_records = next_records
        d.consumer.seek_to_committed = not_assigned
        d.consumer.stop_flow()
        fetcher = SimpleNamespace(_stopped=asyncio.Event())
        await d.consumer._drain_messages(fetcher)

    try:
        asyncio.run(scenario())
        assert fetches == 2  # went on after the failed seek
        assert d.applied == []
    finally:
        d.close()
