-- App logs and platform events (issue 10): one table, partitioned by day so expiry drops whole
-- partitions instead of deleting rows. The server creates the partitions it needs (from the
-- retention window to two days ahead) at start and every hour, and drops those past retention.

-- Trigram indexes make `q` (substring search, case-insensitive) an index scan.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE log_lines (
    id           bigserial,
    team_id      uuid NOT NULL,
    app_id       uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    ts           timestamptz NOT NULL,
    -- NULL for an event of the whole app.
    instance_id  uuid,
    release      integer,
    stream       text NOT NULL CHECK (stream IN ('stdout', 'stderr', 'event')),
    line         text NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX log_lines_app_idx ON log_lines (app_id, ts, id);
CREATE INDEX log_lines_line_idx ON log_lines USING gin (line gin_trgm_ops);

-- Per instance, the last line stored (agents number each instance's lines): a line at or below
-- it is a resend and is skipped. It also says where a line's app and release are once the
-- instance's row is gone (a resend after the instance was removed).
CREATE TABLE log_cursors (
    instance_id  uuid PRIMARY KEY,
    node_id      uuid NOT NULL,
    team_id      uuid NOT NULL,
    app_id       uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    release      integer,
    seq          bigint NOT NULL,
    ts           timestamptz NOT NULL
);
CREATE INDEX log_cursors_node_idx ON log_cursors (node_id);

-- A team may keep its logs for less than the platform's retention.
ALTER TABLE teams ADD COLUMN log_retention_days integer
    CHECK (log_retention_days BETWEEN 1 AND 3650);

-- Metric points per app and release (issue 10): 5-second points for the last hour, 1-minute
-- points for a week (the sampler expires older ones).
CREATE TABLE metric_points (
    app_id               uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    step_seconds         integer NOT NULL CHECK (step_seconds IN (5, 60)),
    ts                   timestamptz NOT NULL,
    release              integer NOT NULL,
    instances            integer NOT NULL,
    cpu_millis           integer,
    memory_bytes         bigint,
    rx_bytes_per_second  bigint,
    tx_bytes_per_second  bigint,
    requests_per_second  double precision NOT NULL,
    error_percent        double precision,
    p50_ms               double precision,
    p99_ms               double precision,
    PRIMARY KEY (app_id, step_seconds, ts, release)
);
CREATE INDEX metric_points_expiry_idx ON metric_points (step_seconds, ts);
