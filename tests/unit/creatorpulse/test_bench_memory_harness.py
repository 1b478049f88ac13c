"""The memory harness: the soak's workload through the processor on a simulated clock."""

from __future__ import annotations

import asyncio

from creatorpulse.bench.memory_harness import soak


def test_the_dedup_ids_stop_growing_once_the_grace_has_passed() -> None:
    # 2,000 events per simulated second, a grace of 5 s, 40 s in all: without expiry
    # the ids would reach 80,000; with it they stay about a grace's worth.
    samples = asyncio.run(soak(2_000, 40 / 60, 5, 5, 100))
    by_t = {int(s["t"]): s for s in samples}
    assert sorted(by_t) == list(range(0, 40, 5))
    assert by_t[5]["dedup_ids"] >= 8_000  # a grace's worth has arrived
    settled = [by_t[t]["dedup_ids"] for t in range(15, 40, 5)]
    assert max(settled) <= 2_000 * (5 + 2)  # the grace, a flush and a slice of slack
    assert max(settled) - min(settled) <= 1_000  # level, not climbing
    assert all(s["rss_mb"] > 0 for s in samples)


def test_the_harness_keeps_nothing_it_publishes() -> None:
    # A producer that recorded every window row would itself grow without bound.
    from streams.testing import RecordingProducer

    async def send() -> list[bytes]:
        producer = RecordingProducer(keep=False)
        await (await producer.send("t", b"k", b"v", 0, None, None))
        return producer.values("t") + [v for _, _, v, _ in producer.sent if v is not None]

    assert asyncio.run(send()) == []
