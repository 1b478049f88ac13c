"""The SQL behind the dashboard's JSON endpoints (creatorpulse/web/dashboard.py).

Read-only and fixed: ``{database}`` is replaced by the sink's validated identifier, and
every value a caller chooses (campaign, creator, tier, time range, limit) travels as a
server-side ``{name:Type}`` parameter. No endpoint runs SQL text it was sent; sort keys
are checked against a whitelist before anything runs. Times travel as epoch seconds,
converted with an explicit 'UTC' (see sinks/clickhouse/queries.py for why).
"""

from __future__ import annotations

from schemas.metrics import ENGAGEMENTS

#: The dashboard's curves use the short tumbling windows.
SERIES_WINDOW_S = 60

_ENGAGEMENTS = " + ".join(ENGAGEMENTS)

#: The newest 60 s window end of one campaign (or all): "now" of the charts, so replayed
#: or simulated event times far from the wall clock still show.
NEWEST_END_SQL = """
SELECT count(), toUnixTimestamp(max(window_end))
FROM {database}.creator_metrics
WHERE window_size_s = {window_size_s:UInt32} {campaign_filter}
"""

#: One creator's 60 s windows from ``from_s`` on.
CREATOR_SERIES_SQL = f"""
SELECT
    toUnixTimestamp(window_start) AS start_s,
    views,
    {_ENGAGEMENTS} AS engagements,
    watch_time_ms,
    clicks,
    conversions
FROM {{database}}.creator_metrics FINAL
WHERE window_size_s = {{window_size_s:UInt32}}
  AND campaign_id = {{campaign_id:String}}
  AND creator_id = {{creator_id:String}}
  AND window_start >= toDateTime({{from_s:Int64}}, 'UTC')
ORDER BY start_s
"""

#: Per window, the median over the creator's cohort (same campaign and, with
#: ``{tier_filter}``, tier; the creator included) of views, ER and average watch time.
COHORT_SERIES_SQL = f"""
SELECT
    start_s,
    count() AS creators,
    median(views) AS views,
    median(er) AS er,
    median(avg_watch_s) AS avg_watch_s
FROM (
    SELECT
        toUnixTimestamp(m.window_start) AS start_s,
        m.views AS views,
        ({_ENGAGEMENTS}) / nullIf(m.views, 0) AS er,
        m.watch_time_ms / 1000 / nullIf(m.views, 0) AS avg_watch_s
    FROM (
        SELECT *
        FROM {{database}}.creator_metrics FINAL
        WHERE window_size_s = {{window_size_s:UInt32}}
          AND campaign_id = {{campaign_id:String}}
          AND window_start >= toDateTime({{from_s:Int64}}, 'UTC')
    ) AS m
    LEFT JOIN (
        SELECT creator_id, tier FROM {{database}}.creator_profiles FINAL
    ) AS p ON p.creator_id = m.creator_id
    WHERE 1 {{tier_filter}}
)
GROUP BY start_s
ORDER BY start_s
"""

#: Each campaign's views and conversions per 60 s window from ``from_s`` on.
CAMPAIGN_SERIES_SQL = """
SELECT campaign_id, toUnixTimestamp(window_start) AS start_s, views, conversions
FROM {database}.campaign_metrics FINAL
WHERE window_size_s = {window_size_s:UInt32}
  AND window_start >= toDateTime({from_s:Int64}, 'UTC')
  {campaign_filter}
ORDER BY campaign_id, start_s
"""

#: Creators by tier, per campaign, among the creators with windows since ``from_s``.
TIERS_SQL = """
SELECT t.campaign_id, ifNull(p.tier, 'unknown') AS tier, count() AS creators
FROM (
    SELECT DISTINCT campaign_id, creator_id
    FROM {database}.creator_metrics
    WHERE window_size_s = {window_size_s:UInt32}
      AND window_start >= toDateTime({from_s:Int64}, 'UTC')
      {campaign_filter}
) AS t
LEFT JOIN (
    SELECT creator_id, toNullable(tier) AS tier FROM {database}.creator_profiles FINAL
) AS p ON p.creator_id = t.creator_id
GROUP BY t.campaign_id, tier
ORDER BY t.campaign_id, tier
"""

#: Dead letters per minute and reason class (the reason up to its first colon, as
#: ``streams.observability.reason_class`` names it) since ``from_s`` of the wall clock.
DEAD_LETTERS_SQL = """
SELECT
    toUnixTimestamp(toStartOfMinute(received_at)) AS minute_s,
    trimBoth(splitByChar(':', reason)[1]) AS reason_class,
    count() AS n
FROM {database}.dead_letters FINAL
WHERE received_at >= toDateTime64({from_s:Int64}, 3, 'UTC')
GROUP BY minute_s, reason_class
ORDER BY minute_s, reason_class
"""

#: The newest alerts (their latest state), optionally of one campaign or creator.
ALERTS_SQL = """
SELECT
    alert_id, payload, toUnixTimestamp64Milli(fired_at), rule, campaign_id, creator_id, handle,
    tier, metric, value, baseline, status,
    if(isNull(resolved_at), NULL, toUnixTimestamp64Milli(assumeNotNull(resolved_at))),
    resolved_reason, explanation, toUnixTimestamp(window_end), z, lift
FROM {database}.alerts FINAL
WHERE 1 {campaign_filter} {creator_filter}
ORDER BY updated_at DESC, alert_id
LIMIT {limit:UInt32}
"""

#: How each of the given alerts was notified: the outbox decision (pending, silenced,
#: suppressed) and each hook's newest attempt status.
ALERT_DELIVERY_SQL = """
SELECT n.alert_id, n.kind, n.delivery, d.hook, d.status
FROM (
    SELECT notification_id, kind, delivery, arrayJoin(alert_ids) AS alert_id
    FROM {database}.alert_notifications FINAL
    WHERE hasAny(alert_ids, {alert_ids:Array(String)})
) AS n
LEFT JOIN (
    SELECT notification_id, hook, argMax(status, (attempt, attempted_at)) AS status
    FROM {database}.alert_deliveries FINAL
    GROUP BY notification_id, hook
) AS d ON d.notification_id = n.notification_id
WHERE has({alert_ids:Array(String)}, n.alert_id)
ORDER BY n.alert_id, n.kind, d.hook
"""

#: Silences in force at ``now_ms`` (each matcher exact or a glob; ``*`` matches all).
SILENCES_SQL = """
SELECT campaign_id, creator_id, rule
FROM {database}.alert_silences FINAL
WHERE expires_at > fromUnixTimestamp64Milli({now_ms:Int64}, 'UTC')
"""

#: Webhook delivery attempts by outcome since ``from_s`` of the wall clock.
DELIVERIES_SQL = """
SELECT status, count()
FROM {database}.alert_deliveries FINAL
WHERE attempted_at >= toDateTime64({from_s:Int64}, 3, 'UTC')
GROUP BY status
ORDER BY status
"""

CAMPAIGN_FILTER = "AND campaign_id = {campaign_id:String}"
CREATOR_FILTER = "AND creator_id = {creator_id:String}"
TIER_FILTER = "AND p.tier = {tier:String}"
