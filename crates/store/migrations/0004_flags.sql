-- Feature flags per tenant and environment, their change counter and their audit trail.
-- Portable SQL for SQLite and PostgreSQL.

-- One row per (tenant, environment) that has ever had a flag change. `change_seq` is bumped in
-- every flag-changing transaction; the row lock it takes serialises the writers of one
-- environment, so sequence numbers commit in order and a change feed can resume from one.
CREATE TABLE flag_environments (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    environment TEXT NOT NULL,
    change_seq  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, environment)
);

-- The current definition of each flag (JSON text, validated by the flags crate, not here).
-- `version` starts at 1 and grows by one per change (ETag / If-Match).
CREATE TABLE flags (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    environment     TEXT NOT NULL,
    flag_key        TEXT NOT NULL,
    definition      TEXT NOT NULL,
    version         BIGINT NOT NULL,
    change_seq      BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    updated_by      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, environment, flag_key)
);

-- Append-only: one row per change, numbered by the environment's `change_seq`.
CREATE TABLE flag_audit (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    environment TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    flag_key    TEXT NOT NULL,
    version     BIGINT NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    before_json TEXT,
    after_json  TEXT,
    diff_json   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, environment, seq)
);
CREATE INDEX flag_audit_flag ON flag_audit (tenant_id, environment, flag_key, seq);
