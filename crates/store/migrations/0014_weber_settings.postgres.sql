-- Per-tenant Weber engine settings, and the audit of user erasures.
-- The PostgreSQL text; the other dialect differs only in how `weber_erasures.id` is generated.

-- A tenant without a row uses the server's configured defaults. `window_size`, not `window`:
-- WINDOW is a reserved word in PostgreSQL.
CREATE TABLE weber_settings (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    eps           DOUBLE PRECISION NOT NULL,
    window_size   BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    -- The API key that last changed them (its id, never its secret).
    updated_by    TEXT NOT NULL
);

-- One row per erasure that found something. The user id is not kept: `subject_hash` is the
-- hex SHA-256 of `tenant_id || 0x00 || user_id`, so an operator can answer "was this user
-- erased, and when?" for an id they are given, but cannot list whom.
CREATE TABLE weber_erasures (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    subject_hash         TEXT NOT NULL,
    interactions         BIGINT NOT NULL,
    profiles             BIGINT NOT NULL,
    calculations         BIGINT NOT NULL,
    transactions         BIGINT NOT NULL,
    business_metrics     BIGINT NOT NULL,
    key_id               TEXT NOT NULL,
    erased_at_ms         BIGINT NOT NULL
);
CREATE INDEX weber_erasures_subject ON weber_erasures (tenant_id, subject_hash);
