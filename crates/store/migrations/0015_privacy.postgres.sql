-- Differential privacy (issue 20): each tenant's privacy budget, what it spent per period, and
-- the ledger of every release. The PostgreSQL text; the other dialect differs only in how
-- `privacy_ledger.id` is generated. ε is stored as a count of 10⁻⁹ (`epsilon_nanos`) and δ of
-- 10⁻¹⁵ (`delta_femtos`), so sums are exact.

-- A tenant's budget; without a row the default applies (ε 1.0, δ 1e-5 per month).
CREATE TABLE privacy_budgets (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    period        TEXT NOT NULL,
    epsilon_nanos BIGINT NOT NULL,
    delta_femtos  BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT NOT NULL
);

-- What a tenant spent in a period (by the period's first millisecond, UTC). Spending is one
-- conditional UPDATE of this row (it cannot pass the total under concurrency), in the
-- transaction that inserts the release's ledger row.
CREATE TABLE privacy_spend (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    period_start_ms BIGINT NOT NULL,
    epsilon_nanos   BIGINT NOT NULL,
    delta_femtos    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, period_start_ms)
);

-- Every release that spent budget: who, when, what kind (`query` or `report`), the query
-- (small JSON: metric, grouping, window, mechanism; never data) and what it spent.
CREATE TABLE privacy_ledger (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    period_start_ms BIGINT NOT NULL,
    released_at_ms  BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('query', 'report')),
    query           TEXT NOT NULL,
    epsilon_nanos   BIGINT NOT NULL,
    delta_femtos    BIGINT NOT NULL
);
CREATE INDEX privacy_ledger_tenant ON privacy_ledger (tenant_id, period_start_ms, id);
