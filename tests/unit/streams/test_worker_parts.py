"""The latency figure the worker serves on /stats, and the prompt-fetch consumer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import pytest

from streams.faust_compat import FETCH_MAX_WAIT_MS, use_prompt_fetches
from streams.observability import LatencyTracker


def test_latency_summary_follows_new_samples() -> None:
    tracker = LatencyTracker(keep=100)
    assert tracker.summary() == {"count": 0, "p50": None, "p95": None, "p99": None}
    now_ms = int(time.time() * 1000)
    tracker.observe(now_ms - 1_000)
    tracker.observe(now_ms - 3_000)
    tracker.written(tracker.take())
    first = tracker.summary()
    assert first["count"] == 2
    assert first["p50"] == pytest.approx(3_000, abs=500)  # int(0.5 * 2) -> the larger
    # The summary is cached between flushes, and a flush's samples replace the cache.
    assert tracker.summary() is first
    tracker.written([now_ms - 10_000] * 8)
    second = tracker.summary()
    assert second["count"] == 10
    assert second["p95"] == pytest.approx(10_000, abs=500)
    assert tracker.take() == []


def test_latency_keeps_only_the_newest_samples() -> None:
    tracker = LatencyTracker(keep=3)
    now_ms = int(time.time() * 1000)
    tracker.written([now_ms - 50_000, now_ms - 40_000, now_ms, now_ms, now_ms])
    assert tracker.summary()["count"] == 3
    assert tracker.summary()["p99"] == pytest.approx(0, abs=500)


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
