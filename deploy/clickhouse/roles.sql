-- A read-only ClickHouse user for Grafana and BI tools (deploy/grafana/).
--
-- It may read every table and view of the creatorpulse database and nothing else, and it
-- cannot write, create or drop anything, nor change settings but the ones a client needs.
-- Run it once as an administrator, with the database and a password of your choosing
-- (placeholders as in the migrations; the README shows the command):
--
--   sed -e "s/{database}/creatorpulse/g" -e "s/{password}/$PASSWORD/" deploy/clickhouse/roles.sql \
--     | clickhouse-client --multiquery
--
-- Grants, and why each:
--   SELECT ON {database}.*   the tables the panels read (creator_metrics, campaign_metrics,
--                            dead_letters, alerts, creator_profiles ...) and the BI views
--                            (creator_metrics_rates, campaign_metrics_rates, creator_roi,
--                            creator_last_1h ...); views run with the reader's rights
--                            (SQL SECURITY INVOKER, the default), so it needs the tables too.
--   nothing else             no INSERT/ALTER/CREATE/DROP, no other database; the system
--                            tables it sees are filtered to what it may read.
-- readonly = 1 refuses any write or DDL even if a grant is added by mistake;
-- max_execution_time stays changeable because the Grafana plugin's client sets it.

CREATE SETTINGS PROFILE IF NOT EXISTS creatorpulse_readonly SETTINGS
    readonly = 1,
    max_execution_time = 60 CHANGEABLE_IN_READONLY,
    max_result_rows = 1000000,
    max_memory_usage = 4000000000;

CREATE ROLE IF NOT EXISTS creatorpulse_reader;

GRANT SELECT ON {database}.* TO creatorpulse_reader;

CREATE USER IF NOT EXISTS creatorpulse_grafana
    IDENTIFIED WITH sha256_password BY '{password}'
    SETTINGS PROFILE 'creatorpulse_readonly';

GRANT creatorpulse_reader TO creatorpulse_grafana;

SET DEFAULT ROLE creatorpulse_reader TO creatorpulse_grafana;
