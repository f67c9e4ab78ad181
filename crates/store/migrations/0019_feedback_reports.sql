-- Signed research reports (issue 20). `body` is the exact signed file (canonical JSON and a
-- newline), served again byte for byte without spending privacy budget; the other columns are
-- copies of its fields for listing. Portable SQL for SQLite and PostgreSQL.
CREATE TABLE feedback_reports (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    id              TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    period_from     TEXT NOT NULL,
    period_to       TEXT NOT NULL,
    epsilon_nanos   BIGINT NOT NULL,
    delta_femtos    BIGINT NOT NULL,
    ledger_entry_id TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    signature       TEXT NOT NULL,
    body            TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Listing newest first.
CREATE INDEX feedback_reports_created ON feedback_reports (tenant_id, created_at_ms, id);
