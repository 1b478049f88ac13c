-- Core tables of contract section 2.
--
-- {database} is replaced by a validated identifier. Statements end with ';' at the
-- end of a line. Every statement is idempotent (IF NOT EXISTS): ClickHouse DDL is not
-- transactional, so a file that failed half-way must be safe to run again.
--
-- Window tables are ReplacingMergeTree(version): a window is always written as its
-- full totals, version = sum of the totals grows with them, so FINAL (or a merge)
-- keeps the most complete row whatever order the writes arrive in.

CREATE TABLE IF NOT EXISTS {database}.creator_metrics
(
    campaign_id   LowCardinality(String),
    creator_id    LowCardinality(String),
    window_size_s UInt32,
    window_start  DateTime('UTC'),
    window_end    DateTime('UTC'),
    views         UInt64,
    likes         UInt64,
    comments      UInt64,
    shares        UInt64,
    saves         UInt64,
    watch_time_ms UInt64,
    completions   UInt64,
    replays       UInt64,
    clicks        UInt64,
    conversions   UInt64,
    revenue_cents UInt64,
    version       UInt64,
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
-- The partition key is derived from a sorting-key column, so rows of one window
-- always share a partition and replace each other.
PARTITION BY toYYYYMM(window_start)
ORDER BY (campaign_id, creator_id, window_size_s, window_start);

-- Always re-derived from creator_metrics FINAL by the sink (never incremented), so it
-- is exact and idempotent. creators = how many creators had rows in the window.
CREATE TABLE IF NOT EXISTS {database}.campaign_metrics
(
    campaign_id   LowCardinality(String),
    window_size_s UInt32,
    window_start  DateTime('UTC'),
    window_end    DateTime('UTC'),
    creators      UInt32,
    views         UInt64,
    likes         UInt64,
    comments      UInt64,
    shares        UInt64,
    saves         UInt64,
    watch_time_ms UInt64,
    completions   UInt64,
    replays       UInt64,
    clicks        UInt64,
    conversions   UInt64,
    revenue_cents UInt64,
    version       UInt64,
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (campaign_id, window_size_s, window_start);

-- (topic, partition, offset, idx) identifies the input element, so a replay that
-- dead-letters the same element again collapses into one row.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    received_at DateTime64(3, 'UTC'),
    topic       LowCardinality(String),
    partition   UInt32,
    offset      UInt64,
    idx         UInt32,
    reason      String,
    payload     String
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, idx);

-- Contract section 3. Keyed by alert_id alone, so an alert written twice (a retried
-- batch, a replay) collapses; the alerting code decides what makes two alerts the same.
CREATE TABLE IF NOT EXISTS {database}.alerts
(
    alert_id      String,
    fired_at      DateTime64(3, 'UTC'),
    rule          LowCardinality(String),
    campaign_id   LowCardinality(String),
    creator_id    String,
    window_size_s UInt32,
    window_start  DateTime('UTC'),
    metric        LowCardinality(String),
    value         Float64,
    baseline      Float64,
    payload       String
)
ENGINE = ReplacingMergeTree
ORDER BY alert_id;

-- Reference data from the compacted topics: the newest write per key wins.
CREATE TABLE IF NOT EXISTS {database}.creator_profiles
(
    creator_id     String,
    handle         String,
    follower_count UInt64,
    niche          LowCardinality(String),
    tier           LowCardinality(String),
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY creator_id;

CREATE TABLE IF NOT EXISTS {database}.campaign_contracts
(
    campaign_id LowCardinality(String),
    creator_id  String,
    fee         Float64,
    currency    LowCardinality(String),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (campaign_id, creator_id);
