-- Feedback import from a legacy system (issue 20): one row per import of a source file into a
-- tenant, with its checkpoint, and the rows it refused. One text for both dialects.

-- An import: `import_id` is derived from the file's SHA-256, so importing the same file again
-- into the same tenant finds this row and resumes at its checkpoint (`next_line`, the 1-based
-- line of the next unread row, and `byte_offset`, where that row starts). Each batch's items,
-- rejects and the advanced checkpoint commit in one transaction. `status` is running,
-- interrupted, completed or failed. `mapping_sha256` is the SHA-256 of the mapping file: a
-- resume with another mapping is refused (the checkpoint would mix two mappings).
CREATE TABLE feedback_imports (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    import_id      TEXT NOT NULL,
    source_name    TEXT NOT NULL,
    file_sha256    TEXT NOT NULL,
    mapping_sha256 TEXT NOT NULL,
    status         TEXT NOT NULL,
    next_line      BIGINT NOT NULL,
    byte_offset    BIGINT NOT NULL,
    stored         BIGINT NOT NULL DEFAULT 0,
    duplicates     BIGINT NOT NULL DEFAULT 0,
    rejected       BIGINT NOT NULL DEFAULT 0,
    started_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    PRIMARY KEY (tenant_id, import_id)
);

-- A refused row of an import: its line, the item field and the reason (`seq` orders several
-- reasons of one line). Written with the batch that read the row, so never twice.
CREATE TABLE feedback_import_rejects (
    tenant_id TEXT NOT NULL,
    import_id TEXT NOT NULL,
    line      BIGINT NOT NULL,
    seq       BIGINT NOT NULL,
    field     TEXT NOT NULL,
    reason    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, import_id, line, seq),
    FOREIGN KEY (tenant_id, import_id) REFERENCES feedback_imports (tenant_id, import_id)
        ON DELETE CASCADE
);
