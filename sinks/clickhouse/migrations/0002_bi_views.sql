-- Views with derived rates for BI (contract section 2, metric definitions in
-- DESIGN.md). Every view reads its tables with FINAL, so BI never sees a window
-- twice. Rates are NULL where the denominator is 0 (nullIf), never inf or NaN.
--
--   engagement_rate        = (likes + comments + shares + saves) / views
--                            (saves count: the seed material names them a key signal)
--   engagement_rate_tiktok = (likes + comments + shares) / views
--                            (what TikTok's own campaign reporting calls ER)
--   ctr                    = clicks / views (views stand in for impressions)
--   conversion_rate        = conversions / clicks
--   avg_watch_time_s       = watch_time_ms / 1000 / views
--   completion_rate        = completions / views
--   replay_rate            = replays / views
--   revenue                = revenue_cents / 100 (campaign currency, major unit)
--
-- CREATE OR REPLACE keeps each statement idempotent and lets a later migration
-- redefine a view by repeating it.

CREATE OR REPLACE VIEW {database}.creator_metrics_rates AS
SELECT
    campaign_id,
    creator_id,
    window_size_s,
    window_start,
    window_end,
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
FROM {database}.creator_metrics FINAL;

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

-- One row per creator and campaign over the whole campaign: the sum of its 3600 s
-- windows (each holds an hour's full totals), with the contract fee where one is
-- known. Creators without a contract are listed with NULL fee-based columns.
--   cost_per_engagement = fee / engagements
--   cost_per_view       = fee / views
--   cost_per_acquisition = fee / conversions
--   roas                = revenue / fee (return on spend)
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
        sum(views) AS views,
        sum(likes + comments + shares + saves) AS engagements,
        sum(clicks) AS clicks,
        sum(conversions) AS conversions,
        sum(revenue_cents) AS revenue_cents
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

-- Rolling views: per creator and campaign, the sum of the 60 s windows of the last
-- hour (3600 s windows of the last 24 h), relative to the NEWEST window in the table,
-- not the wall clock, so replays of old data and simulations still show. "Last hour"
-- = windows with window_start >= newest window_end - 1 hour (exactly 60 windows).
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
        sum(views) AS views,
        sum(likes) AS likes,
        sum(comments) AS comments,
        sum(shares) AS shares,
        sum(saves) AS saves,
        sum(watch_time_ms) AS watch_time_ms,
        sum(completions) AS completions,
        sum(replays) AS replays,
        sum(clicks) AS clicks,
        sum(conversions) AS conversions,
        sum(revenue_cents) AS revenue_cents
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
        sum(views) AS views,
        sum(likes) AS likes,
        sum(comments) AS comments,
        sum(shares) AS shares,
        sum(saves) AS saves,
        sum(watch_time_ms) AS watch_time_ms,
        sum(completions) AS completions,
        sum(replays) AS replays,
        sum(clicks) AS clicks,
        sum(conversions) AS conversions,
        sum(revenue_cents) AS revenue_cents
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
