-- Background jobs (issue 16): the job queue itself, recurring schedules, and the canary
-- handler's receipts. PostgreSQL text; the SQLite text lacks only the autovacuum settings.

-- A job: one row from enqueue to retention. `priority_rank` is jobs::Priority::rank (0 critical
-- .. 4 bulk) so the claim index orders by it; `status` is a jobs::JobStatus name. `attempts`
-- counts claims (a job runs at most `max_attempts` times). While running, `worker_id`,
-- `attempts` and `lease_until_ms` are the lease: a worker's writes apply only when all three
-- still match (fencing). `finished_at_ms` is set when the job reaches a final status and is what
-- retention deletes by; `last_failed_at_ms` is the time of its latest failed attempt (stats).
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    handler           TEXT NOT NULL,
    payload           TEXT NOT NULL,
    priority_rank     BIGINT NOT NULL,
    status            TEXT NOT NULL,
    attempts          BIGINT NOT NULL,
    max_attempts      BIGINT NOT NULL,
    run_at_ms         BIGINT NOT NULL,
    expires_at_ms     BIGINT,
    timeout_ms        BIGINT NOT NULL,
    idempotency_key   TEXT,
    schedule          TEXT,
    created_at_ms     BIGINT NOT NULL,
    started_at_ms     BIGINT,
    finished_at_ms    BIGINT,
    lease_until_ms    BIGINT,
    worker_id         TEXT,
    result            TEXT,
    last_error        TEXT,
    last_failed_at_ms BIGINT,
    cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE
);
-- Idempotency: a key once per tenant. Partial (keyless jobs have no entry), as the retention
-- index below: every claim and finish writes a new row version, which on PostgreSQL needs an
-- entry in every index whose predicate it meets, so the fewer the cheaper the queue.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Claim: the due jobs of one queue in (run_at_ms, id) order. Only claimable rows are indexed, so
-- the index stays as small as the backlog however many finished jobs are kept. (The predicate's
-- text is the one the claim query uses, so SQLite's planner matches it too.)
CREATE INDEX jobs_claim ON jobs (priority_rank, run_at_ms, id) WHERE status IN ('pending','retrying');
-- The expiry sweep.
CREATE INDEX jobs_expiry ON jobs (expires_at_ms) WHERE status IN ('pending','retrying');
-- The lease rescuer: running jobs by lease end.
CREATE INDEX jobs_lease ON jobs (lease_until_ms) WHERE status = 'running';
-- A tenant's listing (newest first), by status too, and its purges and stats.
CREATE INDEX jobs_tenant ON jobs (tenant_id, id);
CREATE INDEX jobs_tenant_status ON jobs (tenant_id, status, id);
-- Retention of finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at_ms) WHERE finished_at_ms IS NOT NULL;

-- Recurring jobs: one row per (tenant, name). `next_run_ms` is the next tick to enqueue; the
-- scheduler moves it forward with a compare-and-set in the transaction that enqueues the tick,
-- so each tick is enqueued once whatever the number of replicas.
CREATE TABLE job_schedules (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    cron          TEXT NOT NULL,
    handler       TEXT NOT NULL,
    payload       TEXT NOT NULL,
    priority_rank BIGINT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    next_run_ms   BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX job_schedules_due ON job_schedules (next_run_ms);

-- The `jobs.canary` handler's effect: one row per job however often it ran (`deliveries`
-- counts the runs), which is how a deployment and the tests check effectively-once execution.
CREATE TABLE job_receipts (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    job_id     TEXT NOT NULL,
    worker_id  TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    deliveries BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, job_id)
);

-- Retention purges of the engine's history (the `retention.purge` job) go by age per tenant.
CREATE INDEX interactions_tenant_time ON interactions (tenant_id, event_time_ms);
CREATE INDEX weber_calculations_tenant_time ON weber_calculations (tenant_id, calculated_at_ms);

-- Every claim, heartbeat and finish rewrites a job row, so a busy queue makes dead tuples fast;
-- vacuum it after 1 % of its rows changed instead of 20 %, or claims wade through them.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02);
