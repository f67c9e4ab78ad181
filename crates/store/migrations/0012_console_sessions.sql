-- Web console sign-ins: an API key exchanged for a session cookie. Only the SHA-256 of the
-- cookie's value is kept, like API keys; a session dies with its key (the read joins
-- api_keys and skips revoked keys) and after an idle period or a maximum lifetime, both
-- checked by the server against the two times below.
-- Portable SQL: the same text runs on SQLite and PostgreSQL.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    key_id        TEXT NOT NULL REFERENCES api_keys (id),
    -- The synchronizer token every console form carries; random, per session.
    csrf_token    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);

CREATE INDEX console_sessions_created ON console_sessions (created_at_ms);
