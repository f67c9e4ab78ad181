-- Experiments own their flag (issue 21): at most one experiment per (tenant, environment,
-- flag), ever. Experiments created before this migration have no `flag_key` here (NULL, which
-- the unique index does not compare); the service checks those by their definitions.
-- Portable SQL for SQLite and PostgreSQL.
ALTER TABLE experiments ADD COLUMN flag_key TEXT;
CREATE UNIQUE INDEX experiments_flag_owner ON experiments (tenant_id, environment, flag_key);
