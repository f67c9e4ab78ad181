//! The audit log's storage: records, each tenant's tree head, signed checkpoints.
//!
//! Appends go through [`append_audit_in`], which works inside any transaction: a store module
//! that changes an item calls it in the same transaction, so the change and its audit record
//! commit together or not at all. Appends to one tenant's log are serialised by its
//! `audit_heads` row (`FOR UPDATE` on PostgreSQL; on SQLite the transaction's first statement
//! writes that row, which takes the database's write lock): each append reads the head's size
//! and frontier, numbers its records from there, extends the frontier and writes it back. The
//! Merkle arithmetic is the pure `audit` crate's.
//!
//! Reads for verification stream the log in `seq` order inside one read transaction
//! ([`Store::audit_log_reader`]), so the head, the checkpoints and the records are one snapshot
//! even while the server appends.

use audit::{AuditRecord, Frontier, Hash, EMPTY_ROOT};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};

use crate::{now_ms, Backend, Conn, Operation, Store, StoreError, Table};

/// Most records [`Store::audit_records`] returns at once.
pub const MAX_AUDIT_PAGE: u32 = 10_000;
/// Longest item id or actor an audit record takes, in bytes.
pub const MAX_AUDIT_TEXT_BYTES: usize = 256;
/// Rows per multi-row INSERT: 8 parameters each, far below either backend's limit.
const INSERT_CHUNK: usize = 100;

/// A record to append; the store numbers it and hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditRecord {
    pub at_ms: i64,
    pub item_id: String,
    pub event: audit::Event,
    pub actor: String,
    /// SHA-256 of the event's detail JSON ([`audit::detail_hash`]); never content.
    pub detail_hash: Hash,
}

impl NewAuditRecord {
    /// A record whose detail hash is [`audit::detail_hash`] of `detail`.
    pub fn new(
        at_ms: i64,
        item_id: impl Into<String>,
        event: audit::Event,
        actor: impl Into<String>,
        detail: &serde_json::Value,
    ) -> NewAuditRecord {
        NewAuditRecord {
            at_ms,
            item_id: item_id.into(),
            event,
            actor: actor.into(),
            detail_hash: audit::detail_hash(detail),
        }
    }
}

/// A stored record and the leaf hash stored beside it (which verification recomputes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditRecord {
    pub record: AuditRecord,
    pub leaf_hash: Hash,
}

/// A tenant's tree head: how many records its log has and their Merkle root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub size: u64,
    pub root: Hash,
    /// When the last append wrote it (0 for a log never written).
    pub updated_at_ms: i64,
}

impl AuditHead {
    fn empty() -> AuditHead {
        AuditHead {
            size: 0,
            root: EMPTY_ROOT,
            updated_at_ms: 0,
        }
    }
}

/// A signed checkpoint as stored: its size and root, and the signed note text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub at_ms: i64,
    /// The C2SP signed-note text ([`audit::SignedCheckpoint::to_note`]).
    pub note: String,
}

/// A tenant's head next to its latest checkpoint, for the checkpointing loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHeadStatus {
    pub tenant_id: String,
    pub head: AuditHead,
    pub latest_checkpoint_size: Option<u64>,
}

fn validate(record: &NewAuditRecord) -> Result<(), StoreError> {
    for (field, value) in [("item_id", &record.item_id), ("actor", &record.actor)] {
        if value.is_empty() || value.len() > MAX_AUDIT_TEXT_BYTES || value.contains('\0') {
            return Err(StoreError::Invalid {
                field,
                reason: format!("must be 1 to {MAX_AUDIT_TEXT_BYTES} bytes without NUL"),
            });
        }
    }
    Ok(())
}

fn to_u64(value: i64, table: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("negative size {value}"),
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn hash_from(bytes: &[u8], table: &'static str) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("a hash of {} bytes", bytes.len()),
    })
}

/// A stored hash of the wrong length reads as all zeros: verification then reports the record
/// as edited, which is what it is, instead of stopping at a read error.
fn hash_or_zero(bytes: &[u8]) -> Hash {
    Hash::try_from(bytes).unwrap_or([0; 32])
}

/// Appends `records` to `tenant_id`'s log on `conn`, which must be inside a transaction the
/// caller commits (and, on SQLite, holding the store's write turn). Returns the first record's
/// `seq`; the others follow it in order. Nothing to append returns the current size.
pub(crate) async fn append_audit_in(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    records: &[NewAuditRecord],
) -> Result<u64, StoreError> {
    for record in records {
        validate(record)?;
    }
    let now = now_ms();
    // A write first: on SQLite it takes the write lock before anything is read, so the head
    // read below cannot go stale; on PostgreSQL it makes the row the lock below needs.
    sqlx::query(
        "INSERT INTO audit_heads (tenant_id, size, frontier, root, updated_at_ms)
         VALUES ($1, 0, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(Frontier::new().to_bytes())
    .bind(EMPTY_ROOT.to_vec())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "SELECT size, frontier FROM audit_heads WHERE tenant_id = $1{lock}"
    ))
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await?;
    let size = to_u64(row.try_get(0)?, "audit_heads")?;
    let mut frontier =
        Frontier::from_bytes(&row.try_get::<Vec<u8>, _>(1)?).map_err(|e| StoreError::Corrupt {
            table: "audit_heads",
            reason: e.to_string(),
        })?;
    if frontier.size() != size {
        return Err(StoreError::Corrupt {
            table: "audit_heads",
            reason: format!(
                "tenant {tenant_id}: size {size} but a frontier of {}",
                frontier.size()
            ),
        });
    }
    if records.is_empty() {
        return Ok(size);
    }
    let mut seq = size;
    for chunk in records.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO audit_log (tenant_id, seq, at_ms, item_id, event, actor, detail_hash, leaf_hash) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = i * 8;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8
            ));
        }
        let mut query = sqlx::query(&sql);
        for new in chunk {
            let record = AuditRecord {
                tenant_id: tenant_id.to_owned(),
                seq,
                at_ms: new.at_ms,
                item_id: new.item_id.clone(),
                event: new.event.as_str().to_owned(),
                actor: new.actor.clone(),
                detail_hash: new.detail_hash,
            };
            let leaf = record.leaf_hash();
            frontier.append(leaf);
            query = query
                .bind(tenant_id)
                .bind(to_i64(seq))
                .bind(record.at_ms)
                .bind(record.item_id)
                .bind(record.event)
                .bind(record.actor)
                .bind(record.detail_hash.to_vec())
                .bind(leaf.to_vec());
            seq += 1;
        }
        query.execute(&mut *conn).await?;
    }
    sqlx::query(
        "UPDATE audit_heads SET size = $2, frontier = $3, root = $4, updated_at_ms = $5
         WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .bind(to_i64(frontier.size()))
    .bind(frontier.to_bytes())
    .bind(frontier.root().to_vec())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(size)
}

/// The tenant is not read back: every query binds it, and a string less per row saves a
/// good part of the time of reading a long log.
const RECORD_COLUMNS: &str = "seq, at_ms, item_id, event, actor, detail_hash, leaf_hash";

fn record_from_row(tenant_id: &str, row: &AnyRow) -> Result<StoredAuditRecord, StoreError> {
    let seq: i64 = row.try_get(0)?;
    Ok(StoredAuditRecord {
        record: AuditRecord {
            tenant_id: tenant_id.to_owned(),
            // A negative seq can only be written around the store; it reads as a seq no log
            // reaches, so verification reports the gap it leaves.
            seq: u64::try_from(seq).unwrap_or(u64::MAX),
            at_ms: row.try_get(1)?,
            item_id: row.try_get(2)?,
            event: row.try_get(3)?,
            actor: row.try_get(4)?,
            detail_hash: hash_or_zero(&row.try_get::<Vec<u8>, _>(5)?),
        },
        leaf_hash: hash_or_zero(&row.try_get::<Vec<u8>, _>(6)?),
    })
}

fn head_from_row(row: &AnyRow, first: usize) -> Result<AuditHead, StoreError> {
    Ok(AuditHead {
        size: to_u64(row.try_get(first)?, "audit_heads")?,
        root: hash_from(&row.try_get::<Vec<u8>, _>(first + 1)?, "audit_heads")?,
        updated_at_ms: row.try_get(first + 2)?,
    })
}

fn checkpoint_from_row(row: &AnyRow) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: to_u64(row.try_get(0)?, "audit_checkpoints")?,
        root: hash_from(&row.try_get::<Vec<u8>, _>(1)?, "audit_checkpoints")?,
        at_ms: row.try_get(2)?,
        note: row.try_get(3)?,
    })
}

async fn records_page(
    conn: &mut AnyConnection,
    tenant_id: &str,
    from_seq: u64,
    limit: u32,
) -> Result<Vec<StoredAuditRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit_log WHERE tenant_id = $1 AND seq >= $2
         ORDER BY seq LIMIT $3"
    ))
    .bind(tenant_id)
    .bind(to_i64(from_seq))
    .bind(i64::from(limit.clamp(1, MAX_AUDIT_PAGE)))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| record_from_row(tenant_id, row))
    .collect()
}

async fn head_in(
    conn: &mut AnyConnection,
    tenant_id: &str,
) -> Result<Option<AuditHead>, StoreError> {
    sqlx::query("SELECT size, root, updated_at_ms FROM audit_heads WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| head_from_row(&row, 0))
        .transpose()
}

async fn checkpoints_in(
    conn: &mut AnyConnection,
    tenant_id: &str,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    sqlx::query(
        "SELECT size, root, at_ms, note FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY size",
    )
    .bind(tenant_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(checkpoint_from_row)
    .collect()
}

impl Store {
    /// Appends `records` to `tenant_id`'s audit log in a transaction of its own; returns the
    /// first record's `seq`. (Store modules that change an item append in the change's own
    /// transaction instead.)
    pub async fn append_audit(
        &self,
        tenant_id: &str,
        records: &[NewAuditRecord],
    ) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Insert, Table::AuditLog).await?;
        let mut tx = conn.begin().await?;
        let first = append_audit_in(&mut tx, self.backend, tenant_id, records).await?;
        tx.commit().await?;
        Ok(first)
    }

    /// Up to `limit` (at most [`MAX_AUDIT_PAGE`]) records from `from_seq` on, in `seq` order.
    pub async fn audit_records(
        &self,
        tenant_id: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredAuditRecord>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::AuditLog).await?;
        records_page(&mut conn, tenant_id, from_seq, limit).await
    }

    /// The tenant's tree head; the empty tree's when it has no log yet.
    pub async fn audit_head(&self, tenant_id: &str) -> Result<AuditHead, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::AuditHeads).await?;
        Ok(head_in(&mut conn, tenant_id)
            .await?
            .unwrap_or_else(AuditHead::empty))
    }

    /// The stored leaf hashes of records `0..size`, for proofs. Fails when the log has fewer.
    pub async fn audit_leaf_hashes(
        &self,
        tenant_id: &str,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::AuditLog).await?;
        let rows = sqlx::query(
            "SELECT seq, leaf_hash FROM audit_log WHERE tenant_id = $1 AND seq < $2 ORDER BY seq",
        )
        .bind(tenant_id)
        .bind(to_i64(size))
        .fetch_all(&mut *conn)
        .await?;
        if rows.len() as u64 != size {
            return Err(StoreError::NotFound {
                what: format!(
                    "audit records 0..{size} of tenant '{tenant_id}' (the log holds {} of them)",
                    rows.len()
                ),
            });
        }
        rows.iter()
            .map(|row| hash_from(&row.try_get::<Vec<u8>, _>(1)?, "audit_log"))
            .collect()
    }

    /// Stores a signed checkpoint; `false` when one of that size is already stored (a head is
    /// signed once per size).
    pub async fn insert_audit_checkpoint(
        &self,
        tenant_id: &str,
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        let mut conn = self
            .acquire(Operation::Insert, Table::AuditCheckpoints)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, size, root, at_ms, note)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, size) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(to_i64(checkpoint.size))
        .bind(checkpoint.root.to_vec())
        .bind(checkpoint.at_ms)
        .bind(&checkpoint.note)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Every stored checkpoint of the tenant, smallest first.
    pub async fn audit_checkpoints(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::AuditCheckpoints)
            .await?;
        checkpoints_in(&mut conn, tenant_id).await
    }

    /// The tenant's largest stored checkpoint.
    pub async fn latest_audit_checkpoint(
        &self,
        tenant_id: &str,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::AuditCheckpoints)
            .await?;
        sqlx::query(
            "SELECT size, root, at_ms, note FROM audit_checkpoints WHERE tenant_id = $1
             ORDER BY size DESC LIMIT 1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
    }

    /// The tenant's checkpoint of exactly `size` records, if one was signed.
    pub async fn audit_checkpoint(
        &self,
        tenant_id: &str,
        size: u64,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::AuditCheckpoints)
            .await?;
        sqlx::query(
            "SELECT size, root, at_ms, note FROM audit_checkpoints WHERE tenant_id = $1 AND size = $2",
        )
        .bind(tenant_id)
        .bind(to_i64(size))
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| checkpoint_from_row(&row))
        .transpose()
    }

    /// Operator view for the checkpointing loop: every tenant with a log, its head and its
    /// latest checkpoint's size.
    pub async fn operator_audit_heads(&self) -> Result<Vec<AuditHeadStatus>, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::AuditHeads).await?;
        sqlx::query(
            "SELECT h.tenant_id, h.size, h.root, h.updated_at_ms,
                    (SELECT MAX(c.size) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id)
             FROM audit_heads h ORDER BY h.tenant_id",
        )
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditHeadStatus {
                tenant_id: row.try_get(0)?,
                head: head_from_row(row, 1)?,
                latest_checkpoint_size: row
                    .try_get::<Option<i64>, _>(4)?
                    .map(|s| to_u64(s, "audit_checkpoints"))
                    .transpose()?,
            })
        })
        .collect()
    }

    /// Opens one consistent snapshot of the tenant's log for verification: its head and
    /// checkpoints now, and its records page by page from the same snapshot.
    pub async fn audit_log_reader(&self, tenant_id: &str) -> Result<AuditLogReader, StoreError> {
        let mut conn = self.acquire(Operation::Select, Table::AuditLog).await?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        sqlx::raw_sql(begin).execute(&mut *conn).await?;
        let mut reader = AuditLogReader {
            conn: Some(conn),
            tenant_id: tenant_id.to_owned(),
            head: None,
            checkpoints: Vec::new(),
            next_seq: 0,
        };
        let conn = reader.conn()?;
        let head = head_in(conn, tenant_id).await?;
        let checkpoints = checkpoints_in(conn, tenant_id).await?;
        reader.head = head;
        reader.checkpoints = checkpoints;
        Ok(reader)
    }
}

impl Store {
    /// Verifies the tenant's whole log offline-style ([`audit::LogVerifier`]) from one
    /// snapshot: every record, the stored head, every stored checkpoint (signatures checked
    /// with `key`) and the `trusted` checkpoints kept outside the database. The outer error is
    /// the database's; the inner one names the first bad record.
    pub async fn verify_audit_log(
        &self,
        tenant_id: &str,
        origin: &str,
        key: &audit::VerifyingKey,
        trusted: &[audit::SignedCheckpoint],
    ) -> Result<Result<audit::VerifiedLog, audit::VerifyError>, StoreError> {
        let mut reader = self.audit_log_reader(tenant_id).await?;
        let head = reader.head().map(|h| (h.size, h.root));
        let checkpoints = reader.checkpoints().to_vec();
        let mut stored = Vec::with_capacity(checkpoints.len());
        for cp in &checkpoints {
            match audit::SignedCheckpoint::parse(&cp.note) {
                Ok(signed) => stored.push(signed),
                Err(reason) => {
                    reader.finish().await?;
                    return Ok(Err(audit::VerifyError {
                        seq: None,
                        failure: audit::VerifyFailure::BadCheckpoint {
                            size: cp.size,
                            kind: audit::CheckpointSource::Stored,
                            reason,
                        },
                    }));
                }
            }
        }
        let mut verifier =
            match audit::LogVerifier::new(tenant_id, origin, key, head, &stored, trusted) {
                Ok(v) => v,
                Err(e) => {
                    reader.finish().await?;
                    return Ok(Err(e));
                }
            };
        loop {
            let page = reader.next_page(MAX_AUDIT_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for stored in &page {
                if let Err(e) = verifier.push(&stored.record, &stored.leaf_hash) {
                    reader.finish().await?;
                    return Ok(Err(e));
                }
            }
        }
        reader.finish().await?;
        Ok(verifier.finish())
    }
}

/// A read snapshot of one tenant's log ([`Store::audit_log_reader`]). Call
/// [`AuditLogReader::finish`] at the end; dropped without it, its connection is closed rather
/// than returned to the pool mid-transaction.
pub struct AuditLogReader {
    conn: Option<Conn>,
    tenant_id: String,
    head: Option<AuditHead>,
    checkpoints: Vec<StoredCheckpoint>,
    next_seq: u64,
}

impl AuditLogReader {
    fn conn(&mut self) -> Result<&mut AnyConnection, StoreError> {
        self.conn
            .as_deref_mut()
            .ok_or(StoreError::Database(sqlx::Error::PoolClosed))
    }

    /// The head as stored (`None`: the tenant never appended).
    pub fn head(&self) -> Option<&AuditHead> {
        self.head.as_ref()
    }

    /// The stored checkpoints, smallest first.
    pub fn checkpoints(&self) -> &[StoredCheckpoint] {
        &self.checkpoints
    }

    /// The next up to `limit` records in `seq` order; empty at the end. Pages continue after
    /// the last `seq` read, so a gap or a negative `seq` is passed on, not skipped.
    pub async fn next_page(&mut self, limit: u32) -> Result<Vec<StoredAuditRecord>, StoreError> {
        let tenant_id = self.tenant_id.clone();
        let from = self.next_seq;
        let conn = self.conn()?;
        let rows = if from == 0 {
            // The first page starts below 0 too, so rows written with a negative seq show up.
            sqlx::query(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_log WHERE tenant_id = $1 ORDER BY seq LIMIT $2"
            ))
            .bind(&tenant_id)
            .bind(i64::from(limit.clamp(1, MAX_AUDIT_PAGE)))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| record_from_row(&tenant_id, row))
            .collect::<Result<Vec<_>, _>>()?
        } else {
            records_page(conn, &tenant_id, from, limit).await?
        };
        if let Some(last) = rows.last() {
            self.next_seq = last.record.seq.saturating_add(1);
        }
        Ok(rows)
    }

    /// Ends the read transaction and returns the connection to the pool.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        if let Some(mut conn) = self.conn.take() {
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
        }
        Ok(())
    }
}

impl Drop for AuditLogReader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.conn.close_on_drop();
        }
    }
}
