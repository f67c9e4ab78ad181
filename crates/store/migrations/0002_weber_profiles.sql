-- Weber sensitivity profiles, one per (tenant, user). Portable SQL for SQLite and PostgreSQL.
CREATE TABLE weber_profiles (
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    user_id                TEXT NOT NULL,
    weber_constant         DOUBLE PRECISION NOT NULL,
    calculation_confidence DOUBLE PRECISION NOT NULL,
    sensitivity_segment    TEXT NOT NULL,
    bias_ratio             DOUBLE PRECISION,
    review_count           BIGINT NOT NULL,
    window_len             BIGINT NOT NULL,
    newest_event_ms        BIGINT,
    updated_at_ms          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- Segment listings page through users of one segment in user_id order.
CREATE INDEX weber_profiles_segment ON weber_profiles (tenant_id, sensitivity_segment, user_id);
