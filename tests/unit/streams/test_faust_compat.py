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
from typing import Any

import aiokafka
import faust
import faust.transport.consumer as faust_consumer
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

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

        async def handler(tp: Any, batch: list[Any]) -> None:
            raise AssertionError("never called")

        deliver_in_batches(app, ["t"], handler)
        assert consumer.batched_topics == frozenset({"t"})
        assert consumer.on_batch is handler
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
