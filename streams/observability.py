"""What the worker reports about itself: counters, latency, and the /stats snapshot."""

from __future__ import annotations

import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict


@dataclass(slots=True)
class WorkerStats:
    records: int = 0
    events_counted: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0
    rekeyed: int = 0
    replayed_records: int = 0
    send_failures: int = 0  # records Kafka refused at a flush (each sent again)
    unrestored_records: int = 0  # came before their partition was restored: not applied
    delivery_gaps: int = 0  # a record delivered after a skipped offset
    rows_published: int = 0  # window rows Kafka took on the window-rows topic
    flushes: int = 0
    first_record_unix: float | None = None
    last_record_unix: float | None = None
    last_flush_unix: float | None = None  # when the last flush finished (all acked)
    apply_s: float = 0.0  # wall time applying batches: where the worker's time goes
    flush_s: float = 0.0  # wall time in flushes (mostly waiting for Kafka acks)
    batches: int = 0

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in self.__slots__}


class LatencySummary(TypedDict):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class LatencyTracker:
    """Event time -> row written to the sink, one sample per record (bounded memory).

    Producers stamp events with the wall clock when they publish live data, so this
    is publish -> queryable in ClickHouse; for replayed history it is meaningless.
    """

    def __init__(self, keep: int = 50_000, *, clock: Callable[[], float] = time.time) -> None:
        self.samples_ms: deque[float] = deque(maxlen=keep)
        self._clock = clock
        self._unflushed: list[int] = []
        # Sorting 50k samples on every /stats poll showed up in profiles; samples
        # change once per flush, so the summary is computed once per change.
        self._summary: LatencySummary | None = None

    def observe(self, event_ts_ms: int) -> None:
        self._unflushed.append(event_ts_ms)

    def take(self) -> list[int]:
        taken, self._unflushed = self._unflushed, []
        return taken

    def written(self, event_ts_ms: list[int], at_s: float | None = None) -> None:
        """Their rows are written: now, or at ``at_s`` (epoch seconds)."""
        now_ms = (self._clock() if at_s is None else at_s) * 1000
        self.samples_ms.extend(now_ms - ts for ts in event_ts_ms)
        self._summary = None

    def summary(self) -> LatencySummary:
        if self._summary is None:
            self._summary = self._percentiles()
        return self._summary

    def _percentiles(self) -> LatencySummary:
        ordered = sorted(self.samples_ms)

        def pct(q: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None

        return {"count": len(ordered), "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)}


def process_usage() -> dict[str, Any]:
    """CPU seconds and peak resident memory of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_peak_mb": peak_rss_mb()}


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that
    over fork+exec, so a worker started by a big process would report the parent's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
