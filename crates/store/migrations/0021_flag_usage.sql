-- Flag usage analytics: evaluations counted per hour, and each flag's last evaluation.
-- Portable SQL for SQLite and PostgreSQL.

-- Evaluations of a flag per (environment, hour, variant), added to by every batch the server's
-- counter writes. `hour_ms` is the start of the UTC hour (epoch milliseconds); `variant` is ''
-- when the answer had no variant (an error). One row per flag, variant and hour keeps the table
-- small: 24 rows a day per variant actually served.
CREATE TABLE flag_evaluations (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    environment TEXT NOT NULL,
    flag_key    TEXT NOT NULL,
    hour_ms     BIGINT NOT NULL,
    variant     TEXT NOT NULL,
    evaluations BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, environment, flag_key, hour_ms, variant)
);
CREATE INDEX flag_evaluations_hour ON flag_evaluations (tenant_id, environment, hour_ms);

-- When each flag was last evaluated (epoch milliseconds): what the stale-flag report reads.
CREATE TABLE flag_last_evaluated (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    environment       TEXT NOT NULL,
    flag_key          TEXT NOT NULL,
    last_evaluated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, environment, flag_key)
);
