-- Alerts, their notifications (the durable outbox) and every delivery attempt.
--
-- `alerts` was created by 0001 and nothing wrote it before this version. It is rebuilt
-- with a version, so the newest state of an alert (firing with fresh numbers, then
-- resolved) wins under FINAL whatever order a replay writes them in; the contract's
-- columns stay, each meaning what it did.
DROP TABLE IF EXISTS {database}.alerts;

CREATE TABLE IF NOT EXISTS {database}.alerts
(
    alert_id        String,
    fired_at        DateTime64(3, 'UTC'),   -- event time the episode started firing
    rule            LowCardinality(String),
    campaign_id     LowCardinality(String),
    creator_id      String,
    window_size_s   UInt32,                 -- the trailing window evaluated
    window_start    DateTime('UTC'),
    metric          LowCardinality(String),
    value           Float64,
    baseline        Float64,
    payload         String,                 -- the alert as JSON (schemas.alerts.Alert)
    fingerprint     String,
    status          LowCardinality(String), -- firing or resolved
    window_end      DateTime('UTC'),
    resolved_at     Nullable(DateTime64(3, 'UTC')),
    resolved_reason LowCardinality(String),
    z               Float64,
    lift            Float64,
    probability     Nullable(Float64),
    tier            LowCardinality(String),
    cohort_size     UInt32,
    views           UInt64,
    handle          String,
    explanation     String,
    -- Grows with the alert's state: later numbers, and resolved after firing.
    version         UInt64,
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id;

-- The outbox: one row per notification the policy decided, with the decision
-- (pending: for the hooks; silenced or suppressed: recorded, never sent).
CREATE TABLE IF NOT EXISTS {database}.alert_notifications
(
    notification_id String,
    kind            LowCardinality(String),  -- firing, repeat or resolved
    type            LowCardinality(String),
    campaign_id     LowCardinality(String),
    rule            LowCardinality(String),
    alert_ids       Array(String),
    -- What each alert was notified as: "<alert_id>:<kind>" (":<window_end_ms>" for a
    -- reminder), so a replay that groups alerts differently still sends none twice.
    alert_keys      Array(String),
    delivery        LowCardinality(String),
    hooks           Array(String),           -- the hooks it was for
    body            String,                  -- the notification as JSON
    created_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY notification_id;

-- Every delivery attempt, and every decision that ended one without an attempt.
CREATE TABLE IF NOT EXISTS {database}.alert_deliveries
(
    notification_id String,
    hook            LowCardinality(String),
    attempt         UInt32,
    status          LowCardinality(String),  -- delivered, retry, failed, disabled
    http_status     Nullable(UInt16),
    error           String,
    attempted_at    DateTime64(3, 'UTC'),
    next_attempt_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree
ORDER BY (notification_id, hook, attempt, status);

-- Silences set with `creatorpulse alerts silence`; read by the alert sink.
CREATE TABLE IF NOT EXISTS {database}.alert_silences
(
    silence_id  String,
    campaign_id String,
    creator_id  String,
    rule        String,
    comment     String,
    created_at  DateTime64(3, 'UTC'),
    expires_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY silence_id;
