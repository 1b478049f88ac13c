"""An independent reference for the contract's totals, written as plainly as possible.

Given records in arrival order (per partition), it applies the contract's rules
literally: dedup by event_id, snapshot -> delta against the highest totals seen, late
when older than the highest event time seen minus grace. The pipeline's incremental,
crash-safe implementation must agree with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
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


@dataclass
class Expected:
    creator: dict[tuple[str, str, int, int], list[int]] = field(default_factory=dict)
    late_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)

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
) -> Expected:
    """Events as dicts with ``ts`` in epoch ms, in the order one partition sees them."""
    sizes = list(window_sizes_s)
    result = Expected()
    highest_ts: int | None = None
    seen: set[str] = set()
    post_highest: dict[tuple[str, str, str], list[int]] = {}
    totals: dict[tuple[str, str, int, int], list[int]] = defaultdict(lambda: [0] * len(FIELDS))
    for event in events_in_order:
        ts = int(event["ts"])
        if highest_ts is not None and ts < highest_ts - grace_s * 1000:
            result.late_ids.append(event["event_id"])
            continue
        highest_ts = ts if highest_ts is None else max(highest_ts, ts)
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
        if not any(counts):
            continue
        for size in sizes:
            start = ts - ts % (size * 1000)
            key = (event["campaign_id"], event["creator_id"], size, start)
            acc = totals[key]
            for i, value in enumerate(counts):
                acc[i] += value
    result.creator = {k: v for k, v in totals.items() if any(v)}
    return result
