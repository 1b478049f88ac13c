"""The SQL a ClickHouse sink runs, and what its reads return.

Every template lists the counters from :data:`schemas.metrics.METRICS`, never by hand, so
a new counter reaches every statement at once (the table DDL in ``migrations`` is checked
against it by a test). ``{database}`` is replaced by a validated identifier; ``{name:Type}``
are server-side query parameters, so user data never becomes SQL text. Times travel as
epoch seconds (Int64/UInt32) and are converted with an explicit 'UTC': a datetime
parameter would be formatted in the client's idea of the server zone, which for chDB is
the host's zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas import metrics
from schemas.metrics import ENGAGEMENTS, METRICS
from schemas.rows import WindowKey

#: The leaderboard reads the short tumbling windows (contract default: 60 s).
LEADERBOARD_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class LeaderRow:
    """One creator's totals over the leaderboard's time range, with derived rates.

    Rates are ``None`` where the denominator is 0. ``handle`` and ``tier`` are
    ``None`` when no profile is known for the creator.
    """

    campaign_id: str
    creator_id: str
    handle: str | None
    tier: str | None
    windows: int
    # The counters, in METRICS order (a test holds them together).
    views: int
    likes: int
    comments: int
    shares: int
    saves: int
    watch_time_ms: int
    completions: int
    replays: int
    clicks: int
    conversions: int
    revenue_cents: int
    engagement_rate: float | None
    ctr: float | None
    avg_watch_time_s: float | None
    conversion_rate: float | None

    @property
    def engagements(self) -> int:
        return sum(int(getattr(self, name)) for name in ENGAGEMENTS)

    @property
    def revenue(self) -> float:
        """Revenue in the campaign currency's major unit."""
        return self.revenue_cents / 100


@dataclass(frozen=True, slots=True)
class ContractRow:
    """A stored contract; the flight in epoch seconds, ``None`` when not known."""

    campaign_id: str
    creator_id: str
    fee: float
    currency: str
    flight_start_s: int | None
    flight_end_s: int | None


def contract_row(record: Sequence[Any]) -> ContractRow:
    campaign_id, creator_id, fee, currency, start, end = record
    return ContractRow(
        campaign_id=str(campaign_id),
        creator_id=str(creator_id),
        fee=float(fee),
        currency=str(currency),
        flight_start_s=None if start is None else int(start),
        flight_end_s=None if end is None else int(end),
    )


def leader_row(record: Sequence[Any]) -> LeaderRow:
    """A row of :data:`LEADERBOARD_SQL` as a :class:`LeaderRow`, its rates from
    :mod:`schemas.metrics`."""
    campaign_id, creator_id, handle, tier, windows, *counts = record
    totals = dict(zip(METRICS, (int(c) for c in counts), strict=True))
    return LeaderRow(
        campaign_id=campaign_id,
        creator_id=creator_id,
        handle=handle,
        tier=tier,
        windows=int(windows),
        **totals,
        engagement_rate=metrics.engagement_rate(totals),
        ctr=metrics.ctr(totals),
        avg_watch_time_s=metrics.avg_watch_time_s(totals),
        conversion_rate=metrics.conversion_rate(totals),
    )


# -- SQL --------------------------------------------------------------------------------

# Sums over many creator windows are taken in UInt128: sum() of a UInt64 column is a
# UInt64 that wraps silently, and 30 creators near the per-window bound of 2^53 views
# (or 3000 windows at 2^53, or a few at the UInt64 maximum) already pass 2^64.
# campaign_metrics holds its counters and version as UInt128 (migration 0004).
_SUMS = ",\n        ".join(f"sum(toUInt128({m})) AS {m}" for m in METRICS)

#: Re-derives ``campaign_metrics`` for the written keys from ``creator_metrics FINAL``.
REFRESH_CAMPAIGNS_SQL = f"""
INSERT INTO {{database}}.campaign_metrics
    (campaign_id, window_size_s, window_start, window_end, creators,
     {", ".join(METRICS)}, updated_at, version)
SELECT
    campaign_id, window_size_s, window_start, any(window_end), count(),
    {", ".join(f"sum(toUInt128({m}))" for m in METRICS)}, now64(3), sum(toUInt128(version))
FROM {{database}}.creator_metrics FINAL
WHERE campaign_id IN {{campaign_ids:Array(String)}}
  AND window_start BETWEEN toDateTime({{min_start_s:Int64}}, 'UTC')
                       AND toDateTime({{max_start_s:Int64}}, 'UTC')
  AND (campaign_id, window_size_s, toUnixTimestamp(window_start))
      IN {{keys:Array(Tuple(String, UInt32, UInt32))}}
GROUP BY campaign_id, window_size_s, window_start
"""

#: How many windows there are, and the newest end: the leaderboard's default "now".
NEWEST_WINDOW_END_SQL = """
SELECT count(), toUnixTimestamp(max(window_end))
FROM {database}.creator_metrics
WHERE window_size_s = {window_size_s:UInt32} {campaign_filter}
"""

#: Creators ranked by views over a range of window starts, with their profiles.
LEADERBOARD_SQL = f"""
SELECT
    t.campaign_id, t.creator_id, p.handle, p.tier, t.windows,
    {", ".join(f"t.{m}" for m in METRICS)}
FROM (
    SELECT
        campaign_id,
        creator_id,
        count() AS windows,
        {_SUMS}
    FROM {{database}}.creator_metrics FINAL
    WHERE window_size_s = {{window_size_s:UInt32}}
      AND window_start >= toDateTime({{from_s:Int64}}, 'UTC')
      AND window_start < toDateTime({{to_s:Int64}}, 'UTC')
      {{campaign_filter}}
    GROUP BY campaign_id, creator_id
) AS t
LEFT JOIN (
    SELECT creator_id, toNullable(handle) AS handle, toNullable(tier) AS tier
    FROM {{database}}.creator_profiles FINAL
) AS p ON p.creator_id = t.creator_id
ORDER BY t.views DESC, t.campaign_id, t.creator_id
LIMIT {{limit:UInt32}}
"""

#: Whether a campaign has any window or contract.
CAMPAIGN_KNOWN_SQL = """
SELECT (SELECT count() FROM {database}.campaign_metrics WHERE campaign_id = {campaign_id:String})
     + (SELECT count() FROM {database}.campaign_contracts WHERE campaign_id = {campaign_id:String})
"""

#: The newest contract per key, flights as epoch seconds (NULL: none known).
CONTRACTS_SQL = """
SELECT campaign_id, creator_id, fee, currency,
    toUnixTimestamp(flight_start), toUnixTimestamp(flight_end)
FROM {database}.campaign_contracts FINAL
{campaign_filter}
ORDER BY campaign_id, creator_id
"""

#: ``{campaign_filter}`` of the two above, for one campaign.
CAMPAIGN_FILTER = "AND campaign_id = {campaign_id:String}"


def refresh_parameters(keys: set[tuple[str, int, int]]) -> dict[str, Any]:
    """Parameters of :data:`REFRESH_CAMPAIGNS_SQL` for ``(campaign_id, window_size_s,
    window_start_s)`` keys."""
    # The exact key set decides; the campaign list and start range are redundant but
    # let ClickHouse prune by primary key and partition before it reads FINAL.
    starts = [start for _, _, start in keys]
    return {
        "keys": sorted(keys),
        "campaign_ids": sorted({campaign for campaign, _, _ in keys}),
        "min_start_s": min(starts),
        "max_start_s": max(starts),
    }


#: Creator windows that end after ``{horizon:Int64}`` (epoch ms), as FINAL shows them.
WINDOWS_ENDING_AFTER_SQL = f"""
SELECT campaign_id, creator_id, window_size_s, toUnixTimestamp(window_start) * 1000,
    {", ".join(METRICS)}
FROM {{database}}.creator_metrics FINAL
WHERE toUnixTimestamp(window_end) * 1000 > {{horizon:Int64}}
"""


def window_totals(records: Iterable[Sequence[Any]]) -> dict[WindowKey, tuple[int, ...]]:
    """Rows of :data:`WINDOWS_ENDING_AFTER_SQL` as totals per window, in METRICS order."""
    return {(r[0], r[1], int(r[2]), int(r[3])): tuple(int(v) for v in r[4:]) for r in records}
