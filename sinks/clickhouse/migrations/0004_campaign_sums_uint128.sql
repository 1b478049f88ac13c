-- campaign_metrics sums the windows of every creator of a campaign. Each creator's
-- counters are UInt64 and bounded upstream (2^53 per window and metric), but their sum
-- is not: 30 creators near the bound, or a few thousand at 2^53, pass 2^64, and a UInt64
-- wraps silently. So the campaign counters and the version (their sum) are UInt128, and
-- the sink sums in UInt128 (sum(toUInt128(x))). MODIFY COLUMN to the type a column
-- already has is a no-op, so the statement is safe to run again.
--
-- The BI views that sum creator windows over a range (a whole campaign, an hour, a day)
-- are redefined to sum in UInt128 too, and campaign_metrics_rates is recreated so its
-- columns take the new types (a view keeps the column types it was created with).
-- Their definitions are otherwise those of 0002.

ALTER TABLE {database}.campaign_metrics
    MODIFY COLUMN views UInt128,
    MODIFY COLUMN likes UInt128,
    MODIFY COLUMN comments UInt128,
    MODIFY COLUMN shares UInt128,
    MODIFY COLUMN saves UInt128,
    MODIFY COLUMN watch_time_ms UInt128,
    MODIFY COLUMN completions UInt128,
    MODIFY COLUMN replays UInt128,
    MODIFY COLUMN clicks UInt128,
    MODIFY COLUMN conversions UInt128,
    MODIFY COLUMN revenue_cents UInt128,
    MODIFY COLUMN version UInt128;

-- As in 0002; recreated for the UInt128 columns.
CREATE OR REPLACE VIEW {database}.campaign_metrics_rates AS
SELECT
    campaign_id,
    window_size_s,
    window_start,
    window_end,
    creators,
    views,
    likes,
    comments,
    shares,
    saves,
    watch_time_ms,
    completions,
    replays,
    clicks,
    conversions,
    revenue_cents,
    likes + comments + shares + saves AS engagements,
    engagements / nullIf(views, 0) AS engagement_rate,
    (likes + comments + shares) / nullIf(views, 0) AS engagement_rate_tiktok,
    clicks / nullIf(views, 0) AS ctr,
    conversions / nullIf(clicks, 0) AS conversion_rate,
    watch_time_ms / 1000 / nullIf(views, 0) AS avg_watch_time_s,
    completions / nullIf(views, 0) AS completion_rate,
    replays / nullIf(views, 0) AS replay_rate,
    revenue_cents / 100 AS revenue,
    updated_at
FROM {database}.campaign_metrics FINAL;

-- As in 0002 (a creator's hourly windows over the campaign), summing in UInt128.
CREATE OR REPLACE VIEW {database}.creator_roi AS
SELECT
    t.campaign_id AS campaign_id,
    t.creator_id AS creator_id,
    p.handle AS handle,
    p.tier AS tier,
    t.first_window_start AS first_window_start,
    t.last_window_end AS last_window_end,
    t.views AS views,
    t.engagements AS engagements,
    t.clicks AS clicks,
    t.conversions AS conversions,
    t.revenue_cents AS revenue_cents,
    t.revenue_cents / 100 AS revenue,
    c.fee AS fee,
    c.currency AS currency,
    t.engagements / nullIf(t.views, 0) AS engagement_rate,
    c.fee / nullIf(t.engagements, 0) AS cost_per_engagement,
    c.fee / nullIf(t.views, 0) AS cost_per_view,
    c.fee / nullIf(t.conversions, 0) AS cost_per_acquisition,
    (t.revenue_cents / 100) / nullIf(c.fee, 0) AS roas
FROM
(
    SELECT
        campaign_id,
        creator_id,
        min(window_start) AS first_window_start,
        max(window_end) AS last_window_end,
        sum(toUInt128(views)) AS views,
        sum(toUInt128(likes) + comments + shares + saves) AS engagements,
        sum(toUInt128(clicks)) AS clicks,
        sum(toUInt128(conversions)) AS conversions,
        sum(toUInt128(revenue_cents)) AS revenue_cents
    FROM {database}.creator_metrics FINAL
    WHERE window_size_s = 3600
    GROUP BY campaign_id, creator_id
) AS t
-- toNullable: an unmatched LEFT JOIN row then reads NULL, not 0 / ''.
LEFT JOIN
(
    SELECT campaign_id, creator_id, toNullable(fee) AS fee, toNullable(currency) AS currency
    FROM {database}.campaign_contracts FINAL
) AS c ON c.campaign_id = t.campaign_id AND c.creator_id = t.creator_id
LEFT JOIN
(
    SELECT creator_id, toNullable(handle) AS handle, toNullable(tier) AS tier
    FROM {database}.creator_profiles FINAL
) AS p ON p.creator_id = t.creator_id;

-- As in 0002 (the last hour of 60 s windows), summing in UInt128.
CREATE OR REPLACE VIEW {database}.creator_last_1h AS
SELECT
    t.campaign_id AS campaign_id,
    t.creator_id AS creator_id,
    p.handle AS handle,
    p.tier AS tier,
    t.windows AS windows,
    t.first_window_start AS first_window_start,
    t.last_window_end AS last_window_end,
    t.views AS views,
    t.likes AS likes,
    t.comments AS comments,
    t.shares AS shares,
    t.saves AS saves,
    t.watch_time_ms AS watch_time_ms,
    t.completions AS completions,
    t.replays AS replays,
    t.clicks AS clicks,
    t.conversions AS conversions,
    t.revenue_cents AS revenue_cents,
    t.likes + t.comments + t.shares + t.saves AS engagements,
    engagements / nullIf(t.views, 0) AS engagement_rate,
    (t.likes + t.comments + t.shares) / nullIf(t.views, 0) AS engagement_rate_tiktok,
    t.clicks / nullIf(t.views, 0) AS ctr,
    t.conversions / nullIf(t.clicks, 0) AS conversion_rate,
    t.watch_time_ms / 1000 / nullIf(t.views, 0) AS avg_watch_time_s,
    t.completions / nullIf(t.views, 0) AS completion_rate,
    t.replays / nullIf(t.views, 0) AS replay_rate,
    t.revenue_cents / 100 AS revenue
FROM
(
    SELECT
        campaign_id,
        creator_id,
        count() AS windows,
        min(window_start) AS first_window_start,
        max(window_end) AS last_window_end,
        sum(toUInt128(views)) AS views,
        sum(toUInt128(likes)) AS likes,
        sum(toUInt128(comments)) AS comments,
        sum(toUInt128(shares)) AS shares,
        sum(toUInt128(saves)) AS saves,
        sum(toUInt128(watch_time_ms)) AS watch_time_ms,
        sum(toUInt128(completions)) AS completions,
        sum(toUInt128(replays)) AS replays,
        sum(toUInt128(clicks)) AS clicks,
        sum(toUInt128(conversions)) AS conversions,
        sum(toUInt128(revenue_cents)) AS revenue_cents
    FROM {database}.creator_metrics FINAL
    WHERE window_size_s = 60
      -- max(window_end) needs no FINAL: every version of a window has the same end.
      AND window_start >= (
          SELECT max(window_end) FROM {database}.creator_metrics WHERE window_size_s = 60
      ) - INTERVAL 1 HOUR
    GROUP BY campaign_id, creator_id
) AS t
LEFT JOIN
(
    SELECT creator_id, toNullable(handle) AS handle, toNullable(tier) AS tier
    FROM {database}.creator_profiles FINAL
) AS p ON p.creator_id = t.creator_id;

-- As in 0002 (the last day of 3600 s windows), summing in UInt128.
CREATE OR REPLACE VIEW {database}.creator_last_24h AS
SELECT
    t.campaign_id AS campaign_id,
    t.creator_id AS creator_id,
    p.handle AS handle,
    p.tier AS tier,
    t.windows AS windows,
    t.first_window_start AS first_window_start,
    t.last_window_end AS last_window_end,
    t.views AS views,
    t.likes AS likes,
    t.comments AS comments,
    t.shares AS shares,
    t.saves AS saves,
    t.watch_time_ms AS watch_time_ms,
    t.completions AS completions,
    t.replays AS replays,
    t.clicks AS clicks,
    t.conversions AS conversions,
    t.revenue_cents AS revenue_cents,
    t.likes + t.comments + t.shares + t.saves AS engagements,
    engagements / nullIf(t.views, 0) AS engagement_rate,
    (t.likes + t.comments + t.shares) / nullIf(t.views, 0) AS engagement_rate_tiktok,
    t.clicks / nullIf(t.views, 0) AS ctr,
    t.conversions / nullIf(t.clicks, 0) AS conversion_rate,
    t.watch_time_ms / 1000 / nullIf(t.views, 0) AS avg_watch_time_s,
    t.completions / nullIf(t.views, 0) AS completion_rate,
    t.replays / nullIf(t.views, 0) AS replay_rate,
    t.revenue_cents / 100 AS revenue
FROM
(
    SELECT
        campaign_id,
        creator_id,
        count() AS windows,
        min(window_start) AS first_window_start,
        max(window_end) AS last_window_end,
        sum(toUInt128(views)) AS views,
        sum(toUInt128(likes)) AS likes,
        sum(toUInt128(comments)) AS comments,
        sum(toUInt128(shares)) AS shares,
        sum(toUInt128(saves)) AS saves,
        sum(toUInt128(watch_time_ms)) AS watch_time_ms,
        sum(toUInt128(completions)) AS completions,
        sum(toUInt128(replays)) AS replays,
        sum(toUInt128(clicks)) AS clicks,
        sum(toUInt128(conversions)) AS conversions,
        sum(toUInt128(revenue_cents)) AS revenue_cents
    FROM {database}.creator_metrics FINAL
    WHERE window_size_s = 3600
      AND window_start >= (
          SELECT max(window_end) FROM {database}.creator_metrics WHERE window_size_s = 3600
      ) - INTERVAL 24 HOUR
    GROUP BY campaign_id, creator_id
) AS t
LEFT JOIN
(
    SELECT creator_id, toNullable(handle) AS handle, toNullable(tier) AS tier
    FROM {database}.creator_profiles FINAL
) AS p ON p.creator_id = t.creator_id;
