"""An independent reference for the contract's totals, written as plainly as possible.

Given events in arrival order, it applies the contract's rules literally, one event at a
time:

1. an event more than the allowed skew ahead of the worker's clock is refused (v1.1);
2. late when older than its partition's highest event time seen minus grace (one
   watermark for all events unless ``partition_of`` says which partition a creator is on);
3. the same event_id counts once;
4. snapshot -> delta against the highest totals seen for the post;
5. an event that would take a counter of one of its creator windows past ``max_count``
   is refused (v1.1); its id stays seen and its post keeps the new highest totals.

The pipeline's incremental, crash-safe implementation must agree with it. Nothing here
imports the pipeline: the limits are written out again, as the contract states them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FIELDS = (
    "views",
    "likes",
    "comments",
    "shares",
    "saves",
    "watch_time_ms",
    "completions",
    "replays",
    "clicks",
    "conversions",
    "revenue_cents",
)

#: Contract v1.1: a counter of one creator window never passes 2^53.
MAX_WINDOW_COUNT = 2**53


@dataclass
class Expected:
    creator: dict[tuple[str, str, int, int], list[int]] = field(default_factory=dict)
    late_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    future_ids: list[str] = field(default_factory=list)  # refused: too far ahead of the clock
    over_bound: list[tuple[str, str]] = field(default_factory=list)  # (event_id, counter)
    #: Each partition's highest event time at the end (key None: one watermark for all).
    watermarks: dict[int | None, int] = field(default_factory=dict)
    #: How many events were counted (not late, duplicate, future or over the bound).
    counted: int = 0

    def campaign(self) -> dict[tuple[str, int, int], list[int]]:
        out: dict[tuple[str, int, int], list[int]] = {}
        for (campaign, _creator, size, start), totals in self.creator.items():
            acc = out.setdefault((campaign, size, start), [0] * len(FIELDS))
            for i, value in enumerate(totals):
                acc[i] += value
        return out


def expected_totals(
    events_in_order: Iterable[Mapping[str, Any]],
    *,
    grace_s: int,
    window_sizes_s: Iterable[int] = (60, 3600),
    partition_of: Callable[[str], int] | None = None,
    now_ms: int | None = None,
    future_skew_s: int = 300,
    max_count: int | None = MAX_WINDOW_COUNT,
) -> Expected:
    """Events as dicts with ``ts`` in epoch ms, in arrival order.

    ``partition_of(creator_id)``: each partition then has its own watermark, and the
    events are in the order each partition sees them (a subsequence per partition).
    ``now_ms``: the worker's clock, for the future-skew rule (None: no such rule).
    ``max_count``: the bound of a creator window's counters (None: unbounded).
    """
    sizes = list(window_sizes_s)
    result = Expected()
    highest: dict[int | None, int] = {}
    seen: set[str] = set()
    post_highest: dict[tuple[str, str, str], list[int]] = {}
    totals: dict[tuple[str, str, int, int], list[int]] = defaultdict(lambda: [0] * len(FIELDS))
    counted = 0
    for event in events_in_order:
        ts = int(event["ts"])
        if now_ms is not None and ts > now_ms + future_skew_s * 1000:
            result.future_ids.append(event["event_id"])
            continue
        partition = partition_of(event["creator_id"]) if partition_of is not None else None
        highest_ts = highest.get(partition)
        if highest_ts is not None and ts < highest_ts - grace_s * 1000:
            result.late_ids.append(event["event_id"])
            continue
        highest[partition] = ts if highest_ts is None else max(highest_ts, ts)
        if event["event_id"] in seen:
            result.duplicate_ids.append(event["event_id"])
            continue
        seen.add(event["event_id"])
        counts = [int(event.get(name, 0)) for name in FIELDS]
        if event.get("kind", "delta") == "snapshot":
            post = (event["campaign_id"], event["creator_id"], event["post_id"])
            before = post_highest.get(post, [0] * len(FIELDS))
            delta = [max(0, new - old) for new, old in zip(counts, before)]
            post_highest[post] = [max(new, old) for new, old in zip(counts, before)]
            counts = delta
        counted += 1
        if not any(counts):
            continue
        keys = [
            (event["campaign_id"], event["creator_id"], size, ts - ts % (size * 1000))
            for size in sizes
        ]
        if max_count is not None:
            over = [
                FIELDS[i]
                for key in keys
                for i, value in enumerate(counts)
                if totals.get(key, [0] * len(FIELDS))[i] + value > max_count
            ]
            if over:
                result.over_bound.append((event["event_id"], over[0]))
                counted -= 1
                continue
        for key in keys:
            acc = totals[key]
            for i, value in enumerate(counts):
                acc[i] += value
    result.creator = {k: v for k, v in totals.items() if any(v)}
    result.watermarks = highest
    result.counted = counted
    return result
