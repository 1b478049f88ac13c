"""What the worker reports about itself: counters, latency, and the /stats snapshot."""

from __future__ import annotations

import resource
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

#: Upper bounds (seconds) of the lateness histogram: processing time minus event time.
#: From a live stream's sub-second lag up to replayed history an hour old or more.
LATENESS_BUCKETS_S: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600,
)  # fmt: skip

#: Upper bounds (seconds) of the flush-duration histogram: one flush cycle, mostly
#: waiting for Kafka to acknowledge the changelog and rows.
FLUSH_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (``le`` upper bounds, plus one for +Inf) and a sum: what a
    Prometheus histogram exposes, kept as plain numbers so the hot path pays one bisect."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)``, ending with ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            out.append((bound, running))
        return out


def reason_class(reason: str) -> str:
    """A dead letter's reason class: its text up to the first colon (``late``,
    ``invalid``, ``too_large`` ...), a bounded label where the full text is not."""
    head = reason.partition(":")[0].strip()
    return head if head.replace("_", "").isalnum() and len(head) <= 32 else "other"


@dataclass(slots=True)
class AlertStats:
    """Counters the alerting stage and webhook delivery keep, read by ``/metrics``.

    Plain numbers, bumped where an alert fires or a delivery ends; the metrics collector
    only reads them (see creatorpulse/web/metrics.py for the metric names).
    """

    firing_by_rule: dict[str, int] = field(default_factory=dict)  # alerts firing now
    fired_by_rule: dict[str, int] = field(default_factory=dict)  # ever fired
    evaluations: int = 0  # minutes of a campaign's clock the stage evaluated
    notifications_by_outcome: dict[str, int] = field(default_factory=dict)
    webhook_deliveries_by_outcome: dict[str, int] = field(default_factory=dict)
    outbox_pending: int = 0


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
    # Elements read (events and refused elements) per source topic.
    events_by_topic: dict[str, int] = field(default_factory=dict)
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)  # by reason_class()
    windows_closed: int = 0  # windows that left memory, final
    lateness: Histogram = field(default_factory=lambda: Histogram(LATENESS_BUCKETS_S))
    flush_durations: Histogram = field(default_factory=lambda: Histogram(FLUSH_BUCKETS_S))

    def as_dict(self) -> dict[str, Any]:
        """The counters for ``/stats`` (the histograms are on ``/metrics``)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, dict):
                out[name] = dict(value)
            elif not isinstance(value, Histogram):
                out[name] = value
        return out


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
        #: The newest event time (epoch ms) whose rows are written: what the dashboard's
        #: freshness (wall clock minus it) measures.
        self.newest_written_ms: int | None = None

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
        if event_ts_ms:
            newest = max(event_ts_ms)
            if self.newest_written_ms is None or newest > self.newest_written_ms:
                self.newest_written_ms = newest

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
