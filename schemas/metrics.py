"""The counters every event, window and table carries, and the rates derived from them.

One home for the vocabulary: :data:`METRICS` fixes the counters' order everywhere (state,
rows, tables, SQL built from it), and the rate functions are the one definition of each
rate (docs/design.md, "Metric definitions"); the BI views in
``sinks/clickhouse/migrations`` mirror them, and a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field

#: The additive counters of an event, in the order used everywhere (state, rows, tables).
METRICS: tuple[str, ...] = (
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
#: The counters whose sum is a creator's engagements (TikTok's own reporting leaves saves out).
ENGAGEMENTS: tuple[str, ...] = ("likes", "comments", "shares", "saves")

#: A counter of one event, and the total of a counter in one creator window, is at most
#: this: it survives JSON round trips through JavaScript BI exactly, and a window's
#: version (the sum of its 11 counters) stays far inside ClickHouse's UInt64.
MAX_COUNT = 2**53
#: Ids (event, campaign, creator, post) are 1 to this many characters.
MAX_ID_CHARS = 128

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, strict=True)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` where there is nothing to divide by."""
    return numerator / denominator if denominator else None


def engagements(totals: Mapping[str, int]) -> int:
    return sum(totals[name] for name in ENGAGEMENTS)


def engagement_rate(totals: Mapping[str, int]) -> float | None:
    """(likes + comments + shares + saves) / views."""
    return ratio(engagements(totals), totals["views"])


def ctr(totals: Mapping[str, int]) -> float | None:
    """clicks / views: views stand in for impressions on organic posts."""
    return ratio(totals["clicks"], totals["views"])


def conversion_rate(totals: Mapping[str, int]) -> float | None:
    """conversions / clicks."""
    return ratio(totals["conversions"], totals["clicks"])


def avg_watch_time_s(totals: Mapping[str, int]) -> float | None:
    """watch_time_ms / views, in seconds."""
    return ratio(totals["watch_time_ms"] / 1000, totals["views"])


def completion_rate(totals: Mapping[str, int]) -> float | None:
    return ratio(totals["completions"], totals["views"])


def replay_rate(totals: Mapping[str, int]) -> float | None:
    return ratio(totals["replays"], totals["views"])


def cost_per_acquisition(fee: float | None, totals: Mapping[str, int]) -> float | None:
    """fee / conversions, where a fee is known."""
    return None if fee is None else ratio(fee, totals["conversions"])


def cost_per_engagement(fee: float | None, totals: Mapping[str, int]) -> float | None:
    return None if fee is None else ratio(fee, engagements(totals))


def cost_per_view(fee: float | None, totals: Mapping[str, int]) -> float | None:
    return None if fee is None else ratio(fee, totals["views"])


def return_on_spend(fee: float | None, totals: Mapping[str, int]) -> float | None:
    """ROAS: revenue (major currency unit) / fee."""
    return None if fee is None else ratio(totals["revenue_cents"] / 100, fee)
