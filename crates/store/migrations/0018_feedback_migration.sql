-- Staged traffic shift from a legacy feedback system (issue 20): each tenant's shift plan and
-- the history of its stages. Portable SQL for SQLite and PostgreSQL.

-- One plan per tenant. `generation` counts the plans written (a new plan replaces a finished
-- one); `version` counts this plan's state changes, and every change applies only at the
-- version it read (fencing), so two replicas judging the same window change the plan once.
-- `stages` is the validated stages' JSON (crates/feedback migration::Stage). `status` is
-- pending, running, completed, rolled_back or aborted; `stage` the live (or last) stage's
-- index; `stage_started_ms` when the live stage's window began; `last_healthy_percent` the
-- share of the last stage that passed.
CREATE TABLE feedback_migration_plans (
    tenant_id            TEXT PRIMARY KEY REFERENCES tenants (id),
    generation           BIGINT NOT NULL,
    version              BIGINT NOT NULL,
    environment          TEXT NOT NULL,
    flag_key             TEXT NOT NULL,
    stages               TEXT NOT NULL,
    status               TEXT NOT NULL,
    stage                BIGINT,
    stage_started_ms     BIGINT,
    last_healthy_percent BIGINT NOT NULL,
    created_at_ms        BIGINT NOT NULL,
    updated_at_ms        BIGINT NOT NULL,
    updated_by           TEXT NOT NULL
);

-- Every change of a plan, in order: `event` is planned, started, passed, extended,
-- advanced, rolled_back, aborted or completed; `new_percent` the share served after it;
-- `detail` a small JSON object (the verdict with its figures and the thresholds crossed).
CREATE TABLE feedback_migration_history (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    generation  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    event       TEXT NOT NULL,
    stage       BIGINT,
    new_percent BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, generation, seq)
);

-- The window's figures: items by time received, and dead jobs of a handler by time finished.
CREATE INDEX feedback_items_received ON feedback_items (tenant_id, received_ms);
