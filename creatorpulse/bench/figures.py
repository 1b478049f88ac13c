"""The benchmark's numbers: rates, ratios, percentiles and a worker run's figures (pure).

Everything here takes plain values and returns plain values; the sections do the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from creatorpulse.bench.options import FLUSH_INTERVAL_S


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) by linear interpolation between closest ranks."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be within [0, 1]")
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(count: float, seconds: float | None) -> float | None:
    """``count`` per second, or None when there is no positive duration to divide by."""
    if seconds is None or seconds <= 0:
        return None
    return count / seconds


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def worker_figures(
    before: Mapping[str, Any], final: Mapping[str, Any], events: int
) -> dict[str, Any]:
    """Throughput and cost of a worker run from two ``/stats`` snapshots.

    ``before``: the last snapshot with no record applied (its CPU is start-up);
    ``final``: the first snapshot after every window was written. Throughput runs from
    the first record applied to the last write to ClickHouse. Memory is ``vm_hwm_mb``
    (VmHWM of ``/proc/<pid>/status``, added by the caller) where known: ``/stats``'s
    ``rss_peak_mb`` comes from ``ru_maxrss``, which Linux carries over fork + exec, so a
    worker started by a large process reports its parent's size.
    """
    first = final.get("first_record_unix")
    last = final.get("last_write_unix")
    seconds = (last - first) if first is not None and last is not None else None
    cpu = final["cpu_s"] - before.get("cpu_s", 0.0)
    return {
        "events": events,
        "records": final.get("records"),
        "seconds": seconds,
        "events_per_s": rate(events, seconds),
        "cpu_s": cpu,
        "cpu_s_per_event": cpu / events if events else None,
        "rows_written": final.get("rows_written"),
        "flushes": final.get("flushes"),
        "rss_start_mb": before.get("vm_hwm_mb") or before.get("rss_peak_mb"),
        "rss_peak_mb": final.get("vm_hwm_mb") or final.get("rss_peak_mb"),
        "rss_peak_mb_stats": final.get("rss_peak_mb"),
        "duplicates": final.get("duplicates"),
        "late": final.get("late"),
        "invalid": final.get("invalid"),
    }


@dataclass
class DoneTracker:
    """Decides from ``/stats`` snapshots when a worker has written everything it read.

    Done when all ``expected`` events are accounted for, the writer is idle with no rows
    pending, a write finished after the last record was applied, and nothing changed
    for ``quiet_s`` (longer than the flush interval, so a flush still due would have
    happened). ``final`` is the first snapshot of that quiet period: its CPU does not
    include the waiting.
    """

    expected: int
    quiet_s: float = FLUSH_INTERVAL_S + 1.0
    final: dict[str, Any] | None = None
    _signature: tuple[Any, ...] | None = None
    _since: float = 0.0

    def update(self, stats: Mapping[str, Any], now: float) -> bool:
        seen = sum(int(stats.get(name) or 0) for name in ("events_counted", "duplicates", "late"))
        seen += int(stats.get("invalid") or 0)
        last_write = stats.get("last_write_unix")
        last_record = stats.get("last_record_unix")
        settled = (
            seen >= self.expected
            and bool(stats.get("writer_idle"))
            and not stats.get("rows_pending")
            and last_write is not None
            and (last_record is None or last_write >= last_record)
        )
        if not settled:
            self._signature = None
            self.final = None
            return False
        signature = (
            stats.get("events_counted"),
            stats.get("flushes"),
            stats.get("rows_written"),
            last_write,
        )
        if signature != self._signature:
            self._signature = signature
            self._since = now
            self.final = dict(stats)
            return False
        return now - self._since >= self.quiet_s


#: The figures of a pass that :func:`median_of_passes` takes the median of, each on its own.
MEDIAN_FIELDS: Final = ("events_per_s", "cpu_s_per_event", "seconds", "cpu_s", "rss_peak_mb")


def median_of_passes(
    runs: Sequence[Mapping[str, Any]], names: Sequence[str] = MEDIAN_FIELDS
) -> dict[str, Any]:
    """One figure from several passes of the same measurement: the median of each of
    ``names`` over the passes, every pass's events/s under ``passes`` and every pass in
    full under ``runs``; other fields come from the pass with the median events/s (the
    lower of the middle two for an even count).

    Medians, not the best pass: on a shared 2-core machine one pass can lose a fifth to
    a neighbour or gain as much from a quiet moment, and a ratio of two medians of the
    same run is what issue 13's targets are stated in.
    """
    if not runs:
        raise ValueError("no passes to take a median of")

    def speed(run: Mapping[str, Any]) -> float:
        return float(run.get("events_per_s") or 0.0)

    ordered = sorted(runs, key=speed)
    out = dict(ordered[(len(ordered) - 1) // 2])
    for name in names:
        if any(run.get(name) is not None for run in runs):
            out[name] = median_of(runs, name)
    out["passes"] = [round(speed(run)) for run in runs]
    out["runs"] = [dict(run) for run in runs]
    return out


def whole_topic_rates(result: Mapping[str, Any], events: int) -> dict[str, Any]:
    """A bare-loop result per event: the loop counts records, and it read every record
    of a topic that holds ``events`` events (one per record for single-event records)."""
    out = dict(result)
    out["events"] = events
    out["events_per_s"] = rate(events, result["seconds"])
    out["cpu_s_per_event"] = result["cpu_s"] / events if events else None
    return out


def kb_per_window(run: Mapping[str, Any], windows: int | None) -> float | None:
    """What each open window added to the worker's peak RSS."""
    peak, start = run.get("rss_peak_mb"), run.get("rss_start_mb")
    if peak is None or start is None or not windows:
        return None
    return float((peak - start) * 1024 / windows)


def median_of(runs: Sequence[Mapping[str, Any]], name: str) -> float | None:
    """The median of ``name`` over the runs that have it (None when none has)."""
    values = [float(run[name]) for run in runs if run.get(name) is not None]
    return percentile(values, 0.5)


def alert_cost(on: Sequence[Mapping[str, Any]], off: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What alert evaluation costs the worker: medians of the runs with the stage on and
    off, and the difference as a share of the figure without it.

    ``throughput_cost_pct`` is the throughput lost (positive: slower with alerts),
    ``cpu_cost_pct`` the CPU per event added (positive: costlier with alerts). Medians,
    not the best run: the cost is a difference of two noisy figures, and a median of each
    side keeps one lucky or unlucky pass from deciding it.
    """
    speed_on, speed_off = median_of(on, "events_per_s"), median_of(off, "events_per_s")
    cpu_on, cpu_off = median_of(on, "cpu_s_per_event"), median_of(off, "cpu_s_per_event")
    lost = ratio(speed_on, speed_off)
    added = ratio(cpu_on, cpu_off)
    return {
        "on": {
            "events_per_s": speed_on,
            "cpu_s_per_event": cpu_on,
            "stage_caught_up_s": median_of(on, "stage_caught_up_s"),
            "evaluations": median_of(on, "evaluations"),
            "passes": [run.get("events_per_s") for run in on],
        },
        "off": {
            "events_per_s": speed_off,
            "cpu_s_per_event": cpu_off,
            "passes": [run.get("events_per_s") for run in off],
        },
        "throughput_cost_pct": (1.0 - lost) * 100 if lost is not None else None,
        "cpu_cost_pct": (added - 1.0) * 100 if added is not None else None,
    }


def slope_mb_per_min(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute; 0.0 when fewer
    than two samples or no time between them give a slope."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 60


def held_figures(
    samples: Sequence[tuple[float, Mapping[str, int]]], *, settle_s: float, end_s: float
) -> dict[str, dict[str, Any]]:
    """What the worker held (``/stats`` "held": windows, dedup ids, posts) over the same
    settled part of a soak as the RSS slope: per name, the first and last settled values,
    the peak and the change in % (None from a start of 0). State that levels off while
    RSS grows points at the allocator, not at something the worker keeps."""
    settled = [(t, held) for t, held in samples if settle_s <= t <= end_s]
    if not settled:
        return {}
    first, last = settled[0][1], settled[-1][1]
    out: dict[str, dict[str, Any]] = {}
    for name in first:
        start, end = first[name], last.get(name, 0)
        out[name] = {
            "settled_start": start,
            "end": end,
            "peak": max(held.get(name, 0) for _, held in settled),
            "change_pct": 100 * (end - start) / start if start else None,
        }
    return out


def soak_figures(
    samples: Sequence[tuple[float, float]],
    *,
    settle_s: float,
    end_s: float,
    tolerance_mb_per_min: float,
    min_settled_s: float,
    min_samples: int,
) -> dict[str, Any]:
    """A soak's memory verdict from RSS samples (seconds since publishing began, MB).

    The slope counts only the samples from ``settle_s`` (state has begun to expire as
    well as to grow) to ``end_s`` (publishing stopped). ``verdict``: ``flat`` when its
    magnitude is at most ``tolerance_mb_per_min``, ``growing`` above it, ``shrinking``
    below minus it, ``too short`` when the settled part spans under ``min_settled_s`` or
    holds fewer than ``min_samples`` samples (the slope is still given where there is one).
    """
    settled = [(t, mb) for t, mb in samples if settle_s <= t <= end_s]
    span = settled[-1][0] - settled[0][0] if len(settled) >= 2 else 0.0
    slope = slope_mb_per_min(settled) if len(settled) >= 2 else None
    # The same fit over the later half of the settled part: a leak grows alike in both
    # halves, memory that is still settling (the allocator's arenas) grows less later.
    # Shown beside the verdict, which it does not change.
    later = [(t, mb) for t, mb in settled if t >= settled[0][0] + span / 2] if span else []
    later_slope = slope_mb_per_min(later) if len(later) >= 2 else None
    if slope is None or span < min_settled_s or len(settled) < min_samples:
        verdict = "too short"
    elif slope > tolerance_mb_per_min:
        verdict = "growing"
    elif slope < -tolerance_mb_per_min:
        verdict = "shrinking"
    else:
        verdict = "flat"
    return {
        "slope_mb_per_min": slope,
        "later_half_slope_mb_per_min": later_slope,
        "verdict": verdict,
        "tolerance_mb_per_min": tolerance_mb_per_min,
        "settle_s": settle_s,
        "settled_s": span,
        "settled_samples": len(settled),
        "samples": len(samples),
        "rss_peak_mb": max((mb for _, mb in samples), default=None),
        "rss_settled_start_mb": settled[0][1] if settled else None,
        "rss_end_mb": settled[-1][1] if settled else None,
    }
