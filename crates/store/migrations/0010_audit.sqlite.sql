-- Custody (issue 17): the per-tenant tamper-evident audit log, its head and signed checkpoints,
-- and tenants' data keys for encryption at rest. SQLite text; the PostgreSQL text differs only
-- in BYTEA for BLOB and in keeping the log a heap table.

-- The log: one row per record, `seq` from 0 without gaps per tenant (the Merkle leaf index).
-- `detail_hash` is SHA-256 of the event's detail JSON, `leaf_hash` the RFC 6962 leaf hash of the
-- record's canonical encoding (crates/audit). Hashes only: erasing content leaves it verifiable.
-- Clustered by (tenant_id, seq), so verification streams it in index order.
CREATE TABLE audit_log (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    item_id     TEXT NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail_hash BLOB NOT NULL,
    leaf_hash   BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
-- An item's history.
CREATE INDEX audit_log_item ON audit_log (tenant_id, item_id, seq);

-- Each tenant's tree head: size, the compact range appends continue from (audit::Frontier
-- bytes) and its root. Appends lock this row, which serialises them per tenant.
CREATE TABLE audit_heads (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants (id),
    size          BIGINT NOT NULL,
    frontier      BLOB NOT NULL,
    root          BLOB NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Signed tree heads (C2SP signed-note text in `note`), one per size.
CREATE TABLE audit_checkpoints (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    size      BIGINT NOT NULL,
    root      BLOB NOT NULL,
    at_ms     BIGINT NOT NULL,
    note      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Tenants' data keys, wrapped by a master key (`master_key_id` names it in the keyring).
-- `state`: active (seals new values; one per tenant), retired (superseded, still opens what it
-- sealed), destroyed (`wrapped` erased: what it sealed can never be read again).
CREATE TABLE tenant_data_keys (
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    key_id           TEXT NOT NULL,
    master_key_id    TEXT NOT NULL,
    wrapped          BLOB,
    created_ms       BIGINT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    state_changed_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);
CREATE UNIQUE INDEX tenant_data_keys_active ON tenant_data_keys (tenant_id) WHERE state = 'active';
