-- Interactions (the weber engine's input history) and the per-event calculation audit.
-- PostgreSQL text; the SQLite text differs only in how `seq`/`id` are generated.

-- `seq` is the arrival order: it breaks ties between events with equal times, and the profile
-- worker records the highest one it has applied (weber_profiles.applied_seq).
CREATE TABLE interactions (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    event_id          TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    event_time_ms     BIGINT NOT NULL,
    sentiment         DOUBLE PRECISION NOT NULL,
    rating            DOUBLE PRECISION,
    review_text       TEXT,
    item_id           TEXT,
    verified_purchase BOOLEAN,
    helpful_votes     BIGINT,
    channel           TEXT,
    received_at_ms    BIGINT NOT NULL,
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX interactions_user_time ON interactions (tenant_id, user_id, event_time_ms, seq);

CREATE TABLE weber_calculations (
    id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    user_id                TEXT NOT NULL,
    event_seq              BIGINT NOT NULL,
    review_sequence        BIGINT NOT NULL,
    sentiment_value        DOUBLE PRECISION NOT NULL,
    baseline_sentiment     DOUBLE PRECISION NOT NULL,
    weber_ratio            DOUBLE PRECISION NOT NULL,
    weber_constant         DOUBLE PRECISION NOT NULL,
    calculation_confidence DOUBLE PRECISION NOT NULL,
    sensitivity_segment    TEXT NOT NULL,
    cause                  TEXT NOT NULL,
    calculated_at_ms       BIGINT NOT NULL
);
CREATE INDEX weber_calculations_user ON weber_calculations (tenant_id, user_id, id);

ALTER TABLE weber_profiles ADD COLUMN applied_seq BIGINT NOT NULL DEFAULT 0;
