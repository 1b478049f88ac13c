"""Memory of the stream processor alone under the soak's workload: is its state bounded?

The bench's soak (section ``soak``) judges the worker's RSS, which mixes the processor's
state with everything else in the process (Faust, aiokafka buffers, the allocators).
This harness takes those apart. It feeds the soak's workload (the simulator's 10
campaigns x 100 creators at ``--rate`` events per simulated second, batch records of a
creator's events of a 250 ms slice, up to ``--per-record`` each) to a
:class:`StreamProcessor` on the in-memory ports of ``streams.testing``, on a simulated
clock, with a flush after every slice. Every ``--every`` simulated seconds it prints
what the state holds (dedup ids, open windows, posts, changelog keys) and the process's
RSS, and with ``--tracemalloc`` the bytes Python has allocated. It runs far faster than
real time::

    python -m creatorpulse.bench.memory_harness --minutes 15
    python -m creatorpulse.bench.memory_harness --minutes 15 --tracemalloc

State that stops growing once the grace has passed, with traced bytes flat, while RSS
still climbs, points at the allocators, not at a leak (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable

from creatorpulse.bench.figures import slope_mb_per_min
from creatorpulse.bench.machine import rss_mb
from creatorpulse.bench.options import (
    LATENCY_SLICE_S,
    PARTITIONS,
    SOAK_CAMPAIGNS,
    SOAK_CREATORS_PER_CAMPAIGN,
    SOAK_GRACE_S,
    WINDOWS,
    BenchOptions,
)
from creatorpulse.bench.workload import simulator
from streams.config import WorkerConfig
from streams.processor import StreamProcessor, partition_for
from streams.testing import InMemoryChangelog, RecordingCommitter, RecordingProducer, TestMessage


def state_sizes(processor: StreamProcessor) -> dict[str, int]:
    return {**processor.held(), "changelog_keys": len(processor.changelog.data)}


async def soak(
    rate: float,
    minutes: float,
    grace_s: int,
    every_s: float,
    per_record: int,
    on_sample: Callable[[dict[str, float]], None] = lambda sample: None,
) -> list[dict[str, float]]:
    """Run the workload; every ``every_s`` simulated seconds take a sample (simulated
    seconds ``t``, ``rss_mb``, ``traced_mb`` with tracemalloc on, and the state's sizes),
    hand it to ``on_sample``; return them all."""
    now = [time.time()]
    config = WorkerConfig(
        kafka_bootstrap="unused",
        partitions=PARTITIONS,
        grace_s=grace_s,
        window_sizes_s=tuple(int(w) for w in WINDOWS.split(",")),
    )
    processor = StreamProcessor(
        config,
        None,
        RecordingProducer(keep=False),
        InMemoryChangelog(),
        RecordingCommitter(),
        clock=lambda: now[0],
        monotonic=lambda: now[0],
    )
    processor.restore(range(PARTITIONS))
    sim = simulator(SOAK_CAMPAIGNS, SOAK_CREATORS_PER_CAMPAIGN, 7, "memory")
    start_ms = int(now[0] * 1000)
    slice_ms = int(LATENCY_SLICE_S["batch"] * 1000)
    offsets = [0] * PARTITIONS
    pending: dict[bytes, list[bytes]] = defaultdict(list)
    samples: list[dict[str, float]] = []
    next_sample = 0.0
    slice_end = start_ms + slice_ms

    def apply_slice() -> None:
        fetches: dict[int, list[TestMessage]] = defaultdict(list)
        for key, values in pending.items():
            p = partition_for(key, PARTITIONS)
            for i in range(0, len(values), per_record):
                value = b"[" + b",".join(values[i : i + per_record]) + b"]"
                fetches[p].append(TestMessage(config.input_topic, p, offsets[p], value))
                offsets[p] += 1
        pending.clear()
        for batch in fetches.values():
            processor.apply_records(batch)

    for record in sim.events_at_rate(start_ms, rate, int(rate * minutes * 60)):
        while record.timestamp_ms >= slice_end:
            now[0] = slice_end / 1000
            apply_slice()
            await processor.flush()
            t = (slice_end - start_ms) / 1000
            if t >= next_sample:
                sample: dict[str, float] = {"t": t, "rss_mb": rss_mb(os.getpid()) or 0.0}
                if tracemalloc.is_tracing():
                    sample["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
                sample.update(state_sizes(processor))
                samples.append(sample)
                on_sample(sample)
                next_sample += every_s
            slice_end += slice_ms
        pending[record.key or b""].append(record.value)
    return samples


def show(sample: dict[str, float]) -> None:
    traced = f", traced {sample['traced_mb']:,.1f} MB" if "traced_mb" in sample else ""
    sizes = " ".join(
        f"{k} {int(v):,}" for k, v in sample.items() if k not in ("t", "rss_mb", "traced_mb")
    )
    print(f"{sample['t']:6.0f} s: RSS {sample['rss_mb']:,.1f} MB{traced}; {sizes}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The bench soak's defaults, so the harness keeps running the same workload.
    rate = BenchOptions().soak_rate
    parser.add_argument("--rate", type=float, default=rate, help="events per simulated second")
    parser.add_argument("--minutes", type=float, default=15, help="simulated minutes")
    parser.add_argument("--grace-s", type=int, default=SOAK_GRACE_S, help="the processor's grace")
    parser.add_argument("--every", type=float, default=30, help="simulated seconds per line")
    parser.add_argument("--per-record", type=int, default=100, help="events per batch record")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also print the bytes Python allocated"
    )
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(1)
    samples = asyncio.run(
        soak(args.rate, args.minutes, args.grace_s, args.every, args.per_record, show)
    )
    for since in (args.grace_s + 60, 3 * args.grace_s, 5 * args.grace_s):
        settled = [(s["t"], s["rss_mb"]) for s in samples if s["t"] >= since]
        if len(settled) >= 3:
            print(f"RSS slope from {since} s: {slope_mb_per_min(settled):+.2f} MB/min")


if __name__ == "__main__":
    main()
