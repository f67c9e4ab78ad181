-- Feedback engine (issue 17): feedback items, their processing history, and each tenant's
-- feedback configuration. One text for both dialects.

-- A feedback item from ingest to purge. The original free text is only ever stored sealed
-- (`text_sealed`: the base64 of a vault envelope, AES-256-GCM under the tenant's data key
-- `text_key_id`, bound to tenant, item and field); analysis reads `text_redacted`. `status` is
-- received, processing, processed, needs_review, failed or purged. `revision` counts state
-- changes: a processing result or a re-encryption applies only at the revision it read
-- (fencing), so a retried job cannot apply twice. `content_hash` is the SHA-256 of the item's
-- canonical form, so a repeated post of the same item is a duplicate and a different item under
-- the same id a conflict. `violations` lists the violated principles as `,P1,P2,` for the
-- principle filter; `has_pii` is 0 or 1.
CREATE TABLE feedback_items (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    id            TEXT NOT NULL,
    user_id       TEXT,
    kind          TEXT NOT NULL,
    channel       TEXT,
    rating        BIGINT,
    locale        TEXT,
    region        TEXT,
    metadata      TEXT,
    occurred_ms   BIGINT NOT NULL,
    received_ms   BIGINT NOT NULL,
    tier          TEXT NOT NULL,
    mode          TEXT NOT NULL,
    status        TEXT NOT NULL,
    revision      BIGINT NOT NULL,
    content_hash  TEXT NOT NULL,
    text_sealed   TEXT,
    text_key_id   TEXT,
    text_redacted TEXT,
    has_pii       BIGINT NOT NULL DEFAULT 0,
    pii           TEXT,
    sentiment     DOUBLE PRECISION,
    toxicity      TEXT,
    alignment     DOUBLE PRECISION,
    risk          DOUBLE PRECISION,
    route         TEXT,
    violations    TEXT,
    trace         TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    processed_ms  BIGINT,
    PRIMARY KEY (tenant_id, id)
);
-- Listing newest first by time (keyset on (occurred_ms, id)), and the filters that narrow most.
CREATE INDEX feedback_items_time ON feedback_items (tenant_id, occurred_ms, id);
CREATE INDEX feedback_items_status ON feedback_items (tenant_id, status, occurred_ms, id);
CREATE INDEX feedback_items_user ON feedback_items (tenant_id, user_id, occurred_ms, id);
CREATE INDEX feedback_items_alignment ON feedback_items (tenant_id, alignment);
-- Re-encryption after a key rotation finds the items still sealed under the old key.
CREATE INDEX feedback_items_key ON feedback_items (tenant_id, text_key_id, id);

-- Every event of an item, in order: `revision` is the item's revision after the change, `step`
-- orders the events of one revision (a realtime item is received, redacted, scored, routed and
-- processed in one). `detail` is a small JSON object (never the item's text).
CREATE TABLE feedback_history (
    tenant_id TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    revision  BIGINT NOT NULL,
    step      BIGINT NOT NULL,
    at_ms     BIGINT NOT NULL,
    status    TEXT NOT NULL,
    event     TEXT NOT NULL,
    detail    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, item_id, revision, step),
    FOREIGN KEY (tenant_id, item_id) REFERENCES feedback_items (tenant_id, id) ON DELETE CASCADE
);

-- A tenant's feedback configuration (TOML, validated by the server before it is stored).
CREATE TABLE feedback_configs (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    config        TEXT NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
