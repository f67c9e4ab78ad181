-- Dual-write (issue 20): which feedback items have been forwarded to the tenant's legacy
-- endpoint. One row per item, written once, in the transaction that records the
-- `forwarded_legacy` history and audit event: a retried forwarding job reads these rows and
-- skips what an earlier attempt delivered. `outcome` is `delivered` (the endpoint answered 2xx
-- or 409) or `skipped_purged` (the item was purged before it could be sent); `status_code` is
-- the endpoint's answer (null when skipped). The forwarding jobs themselves live in `jobs`.
-- Portable SQL: the same text runs on SQLite and PostgreSQL.
CREATE TABLE feedback_forwards (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    item_id     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    status_code BIGINT,
    job_id      TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, item_id)
);
CREATE INDEX feedback_forwards_time ON feedback_forwards (tenant_id, at_ms);
