-- Guarded rollouts (issue 21): a flag's rollout raised step by step while guardrails are
-- watched, per (tenant, environment, flag), and the history of each ramp. Portable SQL for
-- SQLite and PostgreSQL.

-- One ramp per flag and environment. `generation` counts the plans written for the flag (a new
-- plan replaces a stopped one); `version` counts this ramp's state changes, and every change
-- applies only at the version it read (fencing), so two replicas checking the same period
-- change the ramp once. `plan` is the validated plan's JSON (crates/flags guard::RolloutPlan).
-- `status` is active, completed, rolled_back, killed or aborted; `step` the highest step
-- reached; `last_safe_step` the last step that passed (NULL: none); `step_started_ms` when the
-- current step began; `last_check` the last check's decision with its figures (JSON, NULL
-- before the first); `baseline` the HTTP counters the next check takes its deltas from (JSON,
-- one replica's view).
CREATE TABLE flag_rollouts (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    environment     TEXT NOT NULL,
    flag_key        TEXT NOT NULL,
    generation      BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    plan            TEXT NOT NULL,
    status          TEXT NOT NULL,
    step            BIGINT NOT NULL,
    last_safe_step  BIGINT,
    step_started_ms BIGINT NOT NULL,
    last_check_ms   BIGINT,
    last_check      TEXT,
    baseline        TEXT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    updated_by      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, environment, flag_key)
);

-- Every action on a ramp, in order: `event` is planned, advance, rollback, kill, complete or
-- abort; `rollout_bp` the rollout served after it; `detail` a JSON object (the reason, the
-- guardrails' figures and verdicts, or `{"manual": true}`).
CREATE TABLE flag_rollout_history (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    environment TEXT NOT NULL,
    flag_key    TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    event       TEXT NOT NULL,
    step        BIGINT,
    rollout_bp  BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, environment, flag_key, generation, seq)
);
