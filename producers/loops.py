"""The publish loops: replay a file, or run a simulation, onto Kafka with progress bars.

The record sources (:mod:`producers.replay`, :mod:`producers.simulator`) are pure
iterators; this module adds time (pacing, ticks), delivery checks and progress, so a
CLI command is a thin call into one of these two functions. Both raise
:class:`producers.publisher.DeliveryError` if anything was not delivered (a CLI should
exit non-zero), and both take the clock and sleep as arguments so tests never wait.

Stopping: pass a ``threading.Event`` and set it (e.g. from a SIGINT/SIGTERM handler);
the loop finishes the current step, flushes and returns its statistics.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from producers.publisher import Publisher, PublisherStats
from producers.replay import Format, ReplayReader
from producers.simulator import CampaignSimulator

#: Reference topics (contract, section 1). Both should be created compacted: the
#: latest profile / contract per key is what matters.
PROFILES_TOPIC = "creator-profiles"
CONTRACTS_TOPIC = "campaign-contracts"

# Progress is redrawn from the loop; touching it per record would cost more than the
# record itself at batch-mode rates.
_PROGRESS_EVERY = 1024
# A paced replay flushes before any wait at least this long, so records do not sit in
# a half-filled batch while the loop sleeps.
_FLUSH_BEFORE_WAIT_S = 0.05
# Waits are cut into slices this long, to notice ``stop`` and redraw progress.
_WAIT_SLICE_S = 0.25

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(slots=True)
class ReplayStats:
    """What a file replay did."""

    path: str
    format: str
    records: int = 0  # published
    valid_events: int = 0  # read (as are the two below)
    rejected: int = 0  # elements the pipeline will dead-letter
    truncated: int = 0
    bytes_read: int = 0
    elapsed_s: float = 0.0
    stopped: bool = False
    publisher: PublisherStats = field(default_factory=PublisherStats)


@dataclass(slots=True)
class SimulateStats:
    """What a simulation run did."""

    realtime: bool
    ticks: int = 0
    records: int = 0
    labels: dict[str, int] = field(default_factory=dict)  # records per SimRecord.label
    reference_records: int = 0
    sim_start_ms: int | None = None
    sim_end_ms: int | None = None
    elapsed_s: float = 0.0
    stopped: bool = False
    publisher: PublisherStats = field(default_factory=PublisherStats)


def replay_file(
    publisher: Publisher,
    path: str | os.PathLike[str],
    *,
    fmt: Format | None = None,
    speed: float | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    flush_every_s: float = 1.0,
) -> ReplayStats:
    """Publish a JSONL or CSV file (format from the suffix unless ``fmt`` is given).

    ``speed`` None publishes as fast as possible; otherwise records are paced by event
    time: ``speed`` 1 replays at the original pace, 60 makes a minute last a second.
    Records whose time goes backwards are sent at once. Invalid lines are published too
    (see :mod:`producers.replay`).
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be > 0 (or None for as fast as possible)")
    reader = ReplayReader(path, fmt)
    stats = ReplayStats(path=os.fspath(path), format=reader.format)
    started = clock()
    last_flush = started
    first_ts: int | None = None
    first_wall = started
    with _progress(progress, DownloadColumn()) as bar:
        task = bar.add_task(
            f"replay {reader.path.name}", total=reader.total_bytes or None, records=0
        )

        def redraw() -> None:
            bar.update(task, completed=reader.bytes_read, records=reader.records)

        for n, record in enumerate(reader, 1):
            if stop is not None and stop.is_set():
                stats.stopped = True
                break
            if speed is not None:
                if first_ts is None:
                    first_ts, first_wall = record.timestamp_ms, clock()
                due = first_wall + (record.timestamp_ms - first_ts) / 1000.0 / speed
                delay = due - clock()
                if delay > 0:
                    if delay >= _FLUSH_BEFORE_WAIT_S:
                        publisher.flush()
                        last_flush = clock()
                    redraw()
                    if _wait(delay, stop, clock, sleep, redraw):
                        stats.stopped = True
                        break
            publisher.publish(record)
            stats.records = n
            if n % _PROGRESS_EVERY == 0:
                redraw()
                now = clock()
                if now - last_flush >= flush_every_s:
                    publisher.flush()
                    last_flush = now
        publisher.flush()
        redraw()
    stats.valid_events = reader.valid_events
    stats.rejected = reader.rejected
    stats.truncated = reader.truncated
    stats.bytes_read = reader.bytes_read
    stats.elapsed_s = clock() - started
    stats.publisher = dataclasses.replace(publisher.stats)
    return stats


def publish_reference(
    publisher: Publisher,
    simulator: CampaignSimulator,
    *,
    timestamp_ms: int | None = None,
    profiles_topic: str = PROFILES_TOPIC,
    contracts_topic: str = CONTRACTS_TOPIC,
) -> int:
    """Publish the simulator's creator profiles and contracts; returns how many.

    Keys per the contract: ``creator_id`` and ``campaign_id:creator_id``. Flushed, so a
    missing topic or a refused write shows up before any event is sent.
    """
    count = 0
    for profile in simulator.profiles():
        publisher.publish_raw(
            profile.model_dump_json().encode(),
            key=profile.creator_id.encode(),
            timestamp_ms=timestamp_ms,
            topic=profiles_topic,
        )
        count += 1
    for contract in simulator.contracts():
        publisher.publish_raw(
            contract.model_dump_json().encode(),
            key=contract.key(),
            timestamp_ms=timestamp_ms,
            topic=contracts_topic,
        )
        count += 1
    publisher.flush()
    return count


def simulate(
    publisher: Publisher,
    simulator: CampaignSimulator,
    *,
    duration_s: float | None,
    realtime: bool,
    rate_scale: float = 1.0,
    progress: bool = True,
    stop: threading.Event | None = None,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
    start_ms: int | None = None,
    tick_s: float = 1.0,
    profiles_topic: str = PROFILES_TOPIC,
    contracts_topic: str = CONTRACTS_TOPIC,
    reference: bool = True,
    flush_every_s: float = 1.0,
    history_s: float = 0.0,
) -> SimulateStats:
    """Run a simulation onto Kafka: reference data first, then the event stream.

    ``realtime``: one tick every ``tick_s`` of wall clock, event time = ``clock()``,
    until ``duration_s`` has passed or ``stop`` is set (``duration_s`` None: until
    stopped). Otherwise simulated time runs as fast as possible from ``start_ms``
    (default: ``duration_s`` before now, so the run ends at the present and a realtime
    run can follow) for ``duration_s`` simulated seconds, in ticks of ``tick_s``.
    ``rate_scale`` multiplies how often posts emit (see ``CampaignSimulator.tick``).
    The simulator must be fresh: its time starts at the first tick.

    ``history_s`` (realtime only): the campaign started that long ago. Its history is
    published first, as fast as possible, then the run goes on in real time: a demo
    then has an hour of data (and alerts to show) within seconds of starting.
    """
    if tick_s <= 0:
        raise ValueError("tick_s must be > 0")
    if duration_s is not None and duration_s < 0:
        raise ValueError("duration_s must be >= 0")
    if not realtime and duration_s is None and stop is None:
        raise ValueError("a non-realtime run needs duration_s or a stop event")
    if simulator.start_ms is not None:
        raise ValueError("the simulator has already run: pass a fresh CampaignSimulator")
    stats = SimulateStats(realtime=realtime)
    labels: Counter[str] = Counter()
    wall_start = clock()
    if history_s < 0 or (history_s and not realtime):
        raise ValueError("history_s must be >= 0, and is for a realtime run")
    if realtime:
        start_ms = int(wall_start * 1000) - int(history_s * 1000)
    elif start_ms is None:
        start_ms = int(wall_start * 1000) - int((duration_s or 0) * 1000)
    end_ms = None if duration_s is None else start_ms + int(duration_s * 1000)
    stats.sim_start_ms = start_ms
    if reference:
        stats.reference_records = publish_reference(
            publisher,
            simulator,
            timestamp_ms=start_ms,
            profiles_topic=profiles_topic,
            contracts_topic=contracts_topic,
        )
    mode = "realtime" if realtime else "as fast as possible"
    simulated = TextColumn("{task.completed:,.0f} s simulated")
    with _progress(progress, simulated) as bar:
        task = bar.add_task(f"simulate ({mode})", total=duration_s, records=0)
        simulator.tick(start_ms, 0.0, rate_scale=rate_scale)  # anchors simulated time
        now_ms = start_ms
        last_flush = clock()
        tick_ms = int(tick_s * 1000)
        next_wall = wall_start
        while end_ms is None or now_ms < end_ms:
            if stop is not None and stop.is_set():
                stats.stopped = True
                break
            catching_up = realtime and int(clock() * 1000) - now_ms > tick_ms
            if catching_up:
                target = now_ms + tick_ms  # history first, as fast as it goes
            elif realtime:
                # After a slow step, resume the tick rhythm instead of racing to catch up.
                next_wall = max(next_wall + tick_s, clock())
                if _wait(next_wall - clock(), stop, clock, sleep, None):
                    stats.stopped = True
                    break
                target = max(now_ms, int(clock() * 1000))
            else:
                target = now_ms + tick_ms
            if end_ms is not None:
                target = min(target, end_ms)
            records = simulator.tick(target, (target - now_ms) / 1000.0, rate_scale=rate_scale)
            now_ms = target
            publisher.publish_many(records)
            stats.ticks += 1
            stats.records += len(records)
            labels.update(record.label for record in records)
            wall = clock()
            # Realtime: flush every tick so BI sees events within a tick of happening.
            if (realtime and not catching_up) or wall - last_flush >= flush_every_s:
                publisher.flush()
                last_flush = wall
                bar.update(task, completed=(now_ms - start_ms) / 1000.0, records=stats.records)
        publisher.flush()
        bar.update(task, completed=(now_ms - start_ms) / 1000.0, records=stats.records)
    stats.sim_end_ms = now_ms
    stats.labels = dict(labels)
    stats.elapsed_s = clock() - wall_start
    stats.publisher = dataclasses.replace(publisher.stats)
    return stats


def _wait(
    seconds: float,
    stop: threading.Event | None,
    clock: Clock,
    sleep: Sleep,
    redraw: Callable[[], None] | None,
) -> bool:
    """Wait up to ``seconds`` in short slices; True if ``stop`` was set meanwhile."""
    deadline = clock() + seconds
    while True:
        left = deadline - clock()
        if left <= 0:
            return False
        if stop is not None and stop.is_set():
            return True
        sleep(min(left, _WAIT_SLICE_S))
        if redraw is not None:
            redraw()


@contextmanager
def _progress(enabled: bool, amount: ProgressColumn) -> Iterator[Progress]:
    """A progress display on stderr (stdout stays clean for a CLI's output)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        amount,
        TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
    with bar:
        yield bar
