"""The latency figure the worker serves on /stats, and the prompt-fetch consumer."""

from __future__ import annotations

import time

import pytest

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
