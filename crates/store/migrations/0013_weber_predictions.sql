-- Weber predictions (issue 19): purchases, fitted lifetime models and per-customer predictions.
-- Portable SQL for SQLite and PostgreSQL.

-- One purchase per (tenant, order). `occurred_at_ms` is when the order was placed (epoch ms, UTC),
-- `amount` its net value in the tenant's currency (>= 0; refunds are sent as the net amount).
-- `customer_id` is the same identifier as the user ids of interactions and profiles, but no
-- foreign key ties them: a customer may buy without ever reviewing.
CREATE TABLE weber_transactions (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    order_id       TEXT NOT NULL,
    customer_id    TEXT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    amount         DOUBLE PRECISION NOT NULL,
    currency       TEXT,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
-- Fitting reads a tenant's purchases customer by customer; erasure finds a customer's orders.
CREATE INDEX weber_transactions_customer
    ON weber_transactions (tenant_id, customer_id, occurred_at_ms);

-- Every fitted model of a tenant; `version` counts fits per tenant (1, 2, ...). The served
-- predictions belong to the newest version whose rows are complete (see weber_business_metrics).
CREATE TABLE weber_prediction_models (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    version             BIGINT NOT NULL,
    fitted_at_ms        BIGINT NOT NULL,
    observation_end_day BIGINT NOT NULL,
    model_json          TEXT NOT NULL,
    evaluation_json     TEXT,
    customers           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- The seed's business metrics: one row per (tenant, customer), from the model version that
-- wrote it. A refit writes all its rows and its model in one transaction, so readers see one
-- version's rows or the next one's, never a mix.
CREATE TABLE weber_business_metrics (
    tenant_id                 TEXT NOT NULL REFERENCES tenants (id),
    user_id                   TEXT NOT NULL,
    model_version             BIGINT NOT NULL,
    predicted_clv             DOUBLE PRECISION NOT NULL,
    clv_low                   DOUBLE PRECISION NOT NULL,
    clv_high                  DOUBLE PRECISION NOT NULL,
    clv_confidence            DOUBLE PRECISION NOT NULL,
    churn_risk_score          DOUBLE PRECISION NOT NULL,
    churn_risk_timing         DOUBLE PRECISION NOT NULL,
    risk_level                TEXT NOT NULL,
    p_alive                   DOUBLE PRECISION NOT NULL,
    expected_purchases        DOUBLE PRECISION NOT NULL,
    expected_average_value    DOUBLE PRECISION NOT NULL,
    churn_prediction_date     BIGINT NOT NULL,
    engagement_score          DOUBLE PRECISION NOT NULL,
    recommendation_strategy   TEXT,
    risk_factors_json         TEXT NOT NULL,
    last_prediction_update_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX weber_business_metrics_clv ON weber_business_metrics (tenant_id, predicted_clv);
CREATE INDEX weber_business_metrics_churn ON weber_business_metrics (tenant_id, churn_risk_score);
CREATE INDEX weber_business_metrics_strategy
    ON weber_business_metrics (tenant_id, recommendation_strategy);
