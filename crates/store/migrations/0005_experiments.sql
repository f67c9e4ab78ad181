-- Flag exposures, experiments and their metric events. Portable SQL for SQLite and PostgreSQL.

-- One row per user (targeting key) who was shown a flag in an environment. `variant` is the
-- first variant the user saw (assignment), kept when later evaluations disagree; the times and
-- the count follow every exposure.
CREATE TABLE flag_exposures (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    environment    TEXT NOT NULL,
    flag_key       TEXT NOT NULL,
    targeting_key  TEXT NOT NULL,
    variant        TEXT NOT NULL,
    first_seen_ms  BIGINT NOT NULL,
    last_seen_ms   BIGINT NOT NULL,
    exposure_count BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, environment, flag_key, targeting_key)
);

-- An experiment: its definition and lifecycle as JSON text (the flags crate's `Experiment`,
-- not interpreted here), the sequential test's running minimum p-value per variant (a JSON
-- object), and a version for optimistic concurrency.
CREATE TABLE experiments (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    experiment_key  TEXT NOT NULL,
    environment     TEXT NOT NULL,
    definition      TEXT NOT NULL,
    sequential_p    TEXT NOT NULL,
    version         BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, experiment_key)
);

-- Metric events of an experiment's users. A client `event_id` makes a resend harmless: the
-- unique index ignores NULLs on both backends, so events without one are always stored.
CREATE TABLE experiment_events (
    tenant_id      TEXT NOT NULL,
    experiment_key TEXT NOT NULL,
    targeting_key  TEXT NOT NULL,
    metric_key     TEXT NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    at_ms          BIGINT NOT NULL,
    event_id       TEXT,
    received_at_ms BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, experiment_key) REFERENCES experiments (tenant_id, experiment_key)
);
CREATE UNIQUE INDEX experiment_events_id ON experiment_events (tenant_id, experiment_key, event_id);
CREATE INDEX experiment_events_user
    ON experiment_events (tenant_id, experiment_key, metric_key, targeting_key);
