-- Voided metric events: kept for the record (when, and by which API key), left out of every
-- analysis. Portable SQL for SQLite and PostgreSQL.
ALTER TABLE experiment_events ADD COLUMN voided_at_ms BIGINT;
ALTER TABLE experiment_events ADD COLUMN voided_by TEXT;
