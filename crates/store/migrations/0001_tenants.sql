-- Tenants and their API keys. Portable SQL: the same text runs on SQLite and PostgreSQL.
-- Times are milliseconds since the Unix epoch (BIGINT) so both backends agree exactly.
CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    tier          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    -- SHA-256 of the secret, hex. The secret itself is never stored.
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    label         TEXT,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
