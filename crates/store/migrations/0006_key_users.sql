-- API keys bound to one user: rate limits key such a key's requests by that user (the `user`
-- scope), whatever X-User-Id says. NULL: not bound (every key before this migration).
-- Portable SQL: the same text runs on SQLite and PostgreSQL.
ALTER TABLE api_keys ADD COLUMN user_id TEXT;
