-- LLM and chatbot observability (seed 003): raw model calls and other events, daily rollups,
-- budgets with the thresholds crossed per month, and per-tenant price overrides.
-- PostgreSQL text; the SQLite text adds overflow CHECKs (PostgreSQL's bigint arithmetic fails on
-- overflow by itself) and clusters the rollups on their key (WITHOUT ROWID).

-- One row per model call. Token columns are exclusive (llm::TokenCounts). Costs are integer
-- picodollars: `cost_pico` is the effective one (the client's, else the computed one), NULL
-- when the call is unpriced. `day` is the UTC day number of `time_ms` and `latency_bucket` is
-- llm::latency::bucket_of(duration_us), kept so per-conversation usage needs no recomputation.
CREATE TABLE llm_model_calls (
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    event_id           TEXT NOT NULL,
    time_ms            BIGINT NOT NULL,
    day                BIGINT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    operation          TEXT NOT NULL,
    conversation_id    TEXT,
    duration_us        BIGINT NOT NULL,
    latency_bucket     BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    status             TEXT NOT NULL,
    error_type         TEXT,
    client_cost_pico   BIGINT,
    computed_cost_pico BIGINT,
    cost_pico          BIGINT,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX llm_model_calls_time ON llm_model_calls (tenant_id, time_ms);
CREATE INDEX llm_model_calls_conversation ON llm_model_calls (tenant_id, conversation_id, time_ms);

-- Every other event kind in one table: `kind` says which, and the columns it does not use are NULL.
CREATE TABLE llm_events (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    event_id          TEXT NOT NULL,
    kind              TEXT NOT NULL,
    time_ms           BIGINT NOT NULL,
    conversation_id   TEXT,
    channel           TEXT,
    resolution_status TEXT,
    direction         TEXT,
    message_type      TEXT,
    integration_id    TEXT,
    integration_type  TEXT,
    status            TEXT,
    duration_us       BIGINT,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX llm_events_time ON llm_events (tenant_id, time_ms);
CREATE INDEX llm_events_conversation ON llm_events (tenant_id, conversation_id, time_ms);

-- Daily sums per (tenant, day, provider, model, operation), incremented in the transaction that
-- inserts the calls, by the calls actually inserted. `cost_pico` sums the priced calls only;
-- `unpriced_calls` counts the others. Kept when raw rows are purged.
CREATE TABLE llm_usage_daily (
    tenant_id          TEXT NOT NULL,
    day                BIGINT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    operation          TEXT NOT NULL,
    calls              BIGINT NOT NULL,
    errors             BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_pico          BIGINT NOT NULL,
    unpriced_calls     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, provider, model, operation)
);

-- Latency histogram of the same groups: calls per llm::latency bucket index.
CREATE TABLE llm_usage_latency (
    tenant_id TEXT NOT NULL,
    day       BIGINT NOT NULL,
    provider  TEXT NOT NULL,
    model     TEXT NOT NULL,
    operation TEXT NOT NULL,
    bucket    BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, provider, model, operation, bucket)
);

-- The same histograms per tenant and day only (all providers, models and operations): usage
-- grouped by day or not at all reads these, about 40 rows a day instead of hundreds.
CREATE TABLE llm_usage_latency_by_day (
    tenant_id TEXT NOT NULL,
    day       BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, bucket)
);

-- The groups' histograms per calendar month (`month`: the day number of its first day): usage
-- not grouped by day reads whole months from here and only the edge days from
-- llm_usage_latency, so a year is a few dozen rows per group instead of hundreds.
CREATE TABLE llm_usage_latency_monthly (
    tenant_id TEXT NOT NULL,
    month     BIGINT NOT NULL,
    provider  TEXT NOT NULL,
    model     TEXT NOT NULL,
    operation TEXT NOT NULL,
    bucket    BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, month, provider, model, operation, bucket)
);

-- A tenant's monthly budget (picodollars) and its thresholds in percent ("50,80,100").
CREATE TABLE llm_budgets (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    monthly_pico  BIGINT NOT NULL,
    thresholds    TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Each threshold crossed, once per tenant and month ('YYYY-MM'): the primary key makes a second
-- recording (another replica, a restart) a no-op.
CREATE TABLE llm_budget_crossings (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    period        TEXT NOT NULL,
    threshold     BIGINT NOT NULL,
    crossed_at_ms BIGINT NOT NULL,
    spent_pico    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, period, threshold)
);

-- A tenant's own price table (the text as the tenant sent it) and whether the shipped
-- defaults still apply to models it does not list.
CREATE TABLE llm_prices (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    price_table   TEXT NOT NULL,
    use_defaults  BOOLEAN NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
