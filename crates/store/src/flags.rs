//! Feature flags per tenant and environment: the current definitions (`flags`), optimistic
//! concurrency through a per-flag `version`, an append-only field-level audit (`flag_audit`) and
//! a change feed.
//!
//! The store keeps a flag's definition as JSON text and does not interpret it (the `flags` crate
//! validates it): it only checks that it is a JSON object whose `key`, if present, is the flag's.
//!
//! Change feed: every change in an environment takes the next number of that environment's
//! `change_seq` (1, 2, 3, … without gaps), stored on the audit row and on the flag. The counter
//! row is bumped first in each writing transaction, so it also serialises the writers of one
//! environment and the numbers commit in order: a reader that has seen change `n` has seen every
//! change before it, and resumes with [`Store::flag_changes`] after `n`.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Connection as _, Row, Transaction};

use crate::diff::{json_diff, FieldChange};
use crate::{could_be_stored, now_ms, Operation, Store, StoreError, Table};

/// The largest flag definition accepted, in bytes of JSON text.
pub const MAX_FLAG_DEFINITION_BYTES: usize = 256 * 1024;
/// Longest flag key and environment name.
const MAX_NAME_CHARS: usize = 200;
/// Most audit rows or changes returned by one call.
pub const MAX_FLAG_PAGE: u32 = 1000;

/// A flag's current definition and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRecord {
    /// The owning tenant.
    pub tenant_id: String,
    /// The environment (e.g. `production`); flags of different environments are independent.
    pub environment: String,
    /// The flag key, unique per tenant and environment.
    pub key: String,
    /// The definition as JSON text, exactly as it was written.
    pub definition_json: String,
    /// 1 when created, one more per change: the ETag / If-Match value.
    pub version: i64,
    /// The environment's change sequence number of the last change to this flag.
    pub change_seq: i64,
    /// When the flag was created (epoch milliseconds).
    pub created_at_ms: i64,
    /// When the flag last changed (epoch milliseconds).
    pub updated_at_ms: i64,
    /// Who changed it last (an API key id).
    pub updated_by: String,
}

/// What a change did to a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagAction {
    /// The flag was created (version 1).
    Create,
    /// The definition was replaced.
    Update,
    /// The definition was replaced by the kill switch (the caller decides what "off" is).
    Kill,
    /// The flag was removed.
    Delete,
}

impl FlagAction {
    /// The name stored in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagAction::Create => "create",
            FlagAction::Update => "update",
            FlagAction::Kill => "kill",
            FlagAction::Delete => "delete",
        }
    }

    fn parse(name: &str) -> Option<FlagAction> {
        [
            FlagAction::Create,
            FlagAction::Update,
            FlagAction::Kill,
            FlagAction::Delete,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// One row of the flag audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagAuditRecord {
    /// The environment's change sequence number of this change.
    pub seq: i64,
    /// The environment.
    pub environment: String,
    /// The flag changed.
    pub flag_key: String,
    /// The flag's version after the change (for a delete: one more than the last version).
    pub version: i64,
    /// What the change did.
    pub action: FlagAction,
    /// Who made it (an API key id).
    pub actor: String,
    /// When (epoch milliseconds).
    pub at_ms: i64,
    /// The definition before the change; `None` for a create.
    pub before_json: Option<String>,
    /// The definition after the change; `None` for a delete.
    pub after_json: Option<String>,
    /// Field-level changes from before to after (a missing definition counts as `{}`).
    pub diff: Vec<FieldChange>,
}

const FLAG_COLUMNS: &str = "tenant_id, environment, flag_key, definition, version, change_seq, \
                            created_at_ms, updated_at_ms, updated_by";
const AUDIT_COLUMNS: &str =
    "seq, environment, flag_key, version, action, actor, at_ms, before_json, after_json, diff_json";

/// What the audit row of one change records.
struct Change<'a> {
    tenant_id: &'a str,
    environment: &'a str,
    key: &'a str,
    seq: i64,
    version: i64,
    action: FlagAction,
    actor: &'a str,
    at_ms: i64,
    before: Option<(&'a str, &'a Value)>,
    after: Option<(&'a str, &'a Value)>,
}

impl Store {
    /// Creates a flag at version 1. A flag with the same key in the same tenant and environment
    /// is a [`StoreError::Conflict`]; an unknown tenant is [`StoreError::NotFound`].
    pub async fn create_flag(
        &self,
        tenant_id: &str,
        environment: &str,
        key: &str,
        definition_json: &str,
        actor: &str,
    ) -> Result<FlagRecord, StoreError> {
        validate_ids(tenant_id, environment, key, actor)?;
        let definition = parse_definition(key, definition_json)?;
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Insert, Table::Flags).await?;
        let mut tx = conn.begin().await?;
        let seq = next_change_seq(&mut tx, tenant_id, environment).await?;
        let at_ms = now_ms();
        let record = FlagRecord {
            tenant_id: tenant_id.to_owned(),
            environment: environment.to_owned(),
            key: key.to_owned(),
            definition_json: definition_json.to_owned(),
            version: 1,
            change_seq: seq,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            updated_by: actor.to_owned(),
        };
        sqlx::query(&format!(
            "INSERT INTO flags ({FLAG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&record.tenant_id)
        .bind(&record.environment)
        .bind(&record.key)
        .bind(&record.definition_json)
        .bind(record.version)
        .bind(record.change_seq)
        .bind(record.created_at_ms)
        .bind(record.updated_at_ms)
        .bind(&record.updated_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            crate::conflict_or(e, || format!("flag '{key}' in environment '{environment}'"))
        })?;
        insert_audit(
            &mut tx,
            Change {
                tenant_id,
                environment,
                key,
                seq,
                version: 1,
                action: FlagAction::Create,
                actor,
                at_ms,
                before: None,
                after: Some((definition_json, &definition)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One flag of the tenant; another tenant's flag is `None`, exactly like a missing one.
    pub async fn flag(
        &self,
        tenant_id: &str,
        environment: &str,
        key: &str,
    ) -> Result<Option<FlagRecord>, StoreError> {
        if ![tenant_id, environment, key]
            .into_iter()
            .all(could_be_stored)
        {
            return Ok(None);
        }
        let mut conn = self.acquire(Operation::Select, Table::Flags).await?;
        sqlx::query(&format!(
            "SELECT {FLAG_COLUMNS} FROM flags
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3"
        ))
        .bind(tenant_id)
        .bind(environment)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| flag_from_row(&row))
        .transpose()
    }

    /// The tenant's flags in one environment, in key order (byte order on both backends).
    pub async fn flags(
        &self,
        tenant_id: &str,
        environment: &str,
    ) -> Result<Vec<FlagRecord>, StoreError> {
        if ![tenant_id, environment].into_iter().all(could_be_stored) {
            return Ok(Vec::new());
        }
        let mut conn = self.acquire(Operation::Select, Table::Flags).await?;
        let mut flags = sqlx::query(&format!(
            "SELECT {FLAG_COLUMNS} FROM flags WHERE tenant_id = $1 AND environment = $2"
        ))
        .bind(tenant_id)
        .bind(environment)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(flag_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        // Sorted here: PostgreSQL's collation and SQLite's byte order disagree on mixed case.
        flags.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(flags)
    }

    /// Replaces a flag's definition and bumps its version. With `expected_version`, the write
    /// happens only if the flag is still at that version, otherwise it is a
    /// [`StoreError::VersionMismatch`]; without it, the current version is overwritten (a
    /// concurrent change between the read and the write is still a mismatch). A missing flag is
    /// [`StoreError::NotFound`].
    pub async fn update_flag(
        &self,
        tenant_id: &str,
        environment: &str,
        key: &str,
        definition_json: &str,
        expected_version: Option<i64>,
        actor: &str,
    ) -> Result<FlagRecord, StoreError> {
        self.update_flag_as(
            FlagAction::Update,
            tenant_id,
            environment,
            key,
            definition_json,
            expected_version,
            actor,
        )
        .await
    }

    /// [`Store::update_flag`], recorded in the audit as `action`: [`FlagAction::Update`] or
    /// [`FlagAction::Kill`] (anything else is [`StoreError::Invalid`] for `action`).
    #[allow(clippy::too_many_arguments)] // mirrors update_flag plus the action
    pub async fn update_flag_as(
        &self,
        action: FlagAction,
        tenant_id: &str,
        environment: &str,
        key: &str,
        definition_json: &str,
        expected_version: Option<i64>,
        actor: &str,
    ) -> Result<FlagRecord, StoreError> {
        if !matches!(action, FlagAction::Update | FlagAction::Kill) {
            return Err(StoreError::Invalid {
                field: "action",
                reason: format!("'{}' is not an update", action.as_str()),
            });
        }
        validate_ids(tenant_id, environment, key, actor)?;
        let definition = parse_definition(key, definition_json)?;
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Update, Table::Flags).await?;
        let mut tx = conn.begin().await?;
        let seq = next_change_seq(&mut tx, tenant_id, environment).await?;
        let current = current_flag(&mut tx, tenant_id, environment, key, expected_version).await?;
        let previous = parse_stored(&current.definition_json)?;
        let at_ms = now_ms();
        let version = current.version + 1;
        // The version in the WHERE makes check-and-write one atomic statement.
        let updated = sqlx::query(
            "UPDATE flags SET definition = $1, version = $2, change_seq = $3, updated_at_ms = $4,
                              updated_by = $5
             WHERE tenant_id = $6 AND environment = $7 AND flag_key = $8 AND version = $9",
        )
        .bind(definition_json)
        .bind(version)
        .bind(seq)
        .bind(at_ms)
        .bind(actor)
        .bind(tenant_id)
        .bind(environment)
        .bind(key)
        .bind(current.version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(lost_race(key, expected_version, current.version));
        }
        insert_audit(
            &mut tx,
            Change {
                tenant_id,
                environment,
                key,
                seq,
                version,
                action,
                actor,
                at_ms,
                before: Some((&current.definition_json, &previous)),
                after: Some((definition_json, &definition)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(FlagRecord {
            definition_json: definition_json.to_owned(),
            version,
            change_seq: seq,
            updated_at_ms: at_ms,
            updated_by: actor.to_owned(),
            ..current
        })
    }

    /// Removes a flag, under the same version rules as [`Store::update_flag`], and returns its
    /// last state. The audit keeps its history; a flag created again later starts at version 1.
    pub async fn delete_flag(
        &self,
        tenant_id: &str,
        environment: &str,
        key: &str,
        expected_version: Option<i64>,
        actor: &str,
    ) -> Result<FlagRecord, StoreError> {
        validate_ids(tenant_id, environment, key, actor)?;
        let _turn = self.write_turn().await;
        let mut conn = self.acquire(Operation::Delete, Table::Flags).await?;
        let mut tx = conn.begin().await?;
        let seq = next_change_seq(&mut tx, tenant_id, environment).await?;
        let current = current_flag(&mut tx, tenant_id, environment, key, expected_version).await?;
        let previous = parse_stored(&current.definition_json)?;
        let deleted = sqlx::query(
            "DELETE FROM flags
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3 AND version = $4",
        )
        .bind(tenant_id)
        .bind(environment)
        .bind(key)
        .bind(current.version)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() != 1 {
            return Err(lost_race(key, expected_version, current.version));
        }
        insert_audit(
            &mut tx,
            Change {
                tenant_id,
                environment,
                key,
                seq,
                version: current.version + 1,
                action: FlagAction::Delete,
                actor,
                at_ms: now_ms(),
                before: Some((&current.definition_json, &previous)),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(current)
    }

    /// A flag's audit trail, newest first: at most `limit` rows (capped at [`MAX_FLAG_PAGE`])
    /// with `seq` below `before_seq` when given (pass the last row's `seq` for the next page).
    /// The cursor is the change sequence rather than the version because a flag deleted and
    /// created again starts its versions over.
    pub async fn flag_audit(
        &self,
        tenant_id: &str,
        environment: &str,
        key: &str,
        limit: u32,
        before_seq: Option<i64>,
    ) -> Result<Vec<FlagAuditRecord>, StoreError> {
        if ![tenant_id, environment, key]
            .into_iter()
            .all(could_be_stored)
        {
            return Ok(Vec::new());
        }
        let mut conn = self
            .acquire_read(Operation::Select, Table::FlagAudit)
            .await?;
        sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM flag_audit
             WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3 AND seq < $4
             ORDER BY seq DESC LIMIT $5"
        ))
        .bind(tenant_id)
        .bind(environment)
        .bind(key)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(MAX_FLAG_PAGE)))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    /// The change feed: the environment's changes with `seq` above `after_seq`, oldest first,
    /// at most `limit` (capped at [`MAX_FLAG_PAGE`]). Start from 0; resume from the last `seq`
    /// seen. Sequence numbers have no gaps and commit in order (see the module docs).
    pub async fn flag_changes(
        &self,
        tenant_id: &str,
        environment: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<FlagAuditRecord>, StoreError> {
        if ![tenant_id, environment].into_iter().all(could_be_stored) {
            return Ok(Vec::new());
        }
        let mut conn = self.acquire(Operation::Select, Table::FlagAudit).await?;
        sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM flag_audit
             WHERE tenant_id = $1 AND environment = $2 AND seq > $3
             ORDER BY seq LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(environment)
        .bind(after_seq)
        .bind(i64::from(limit.min(MAX_FLAG_PAGE)))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }

    /// The names of the tenant's environments that have ever held a flag, in byte order, at
    /// most `limit` (for pickers; an environment is known from its first change on).
    pub async fn flag_environment_names(
        &self,
        tenant_id: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        if !could_be_stored(tenant_id) {
            return Ok(Vec::new());
        }
        let mut conn = self
            .acquire(Operation::Select, Table::FlagEnvironments)
            .await?;
        let mut names = sqlx::query(
            "SELECT environment FROM flag_environments WHERE tenant_id = $1 ORDER BY environment LIMIT $2",
        )
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<Vec<_>, _>>()?;
        // Sorted here: PostgreSQL's collation and SQLite's byte order disagree on mixed case.
        names.sort();
        Ok(names)
    }

    /// The environment's latest change sequence number (0 before its first change): where a
    /// new subscriber to the change feed starts after loading [`Store::flags`]. Read it
    /// before the flags so that no change falls between the two.
    pub async fn flag_change_seq(
        &self,
        tenant_id: &str,
        environment: &str,
    ) -> Result<i64, StoreError> {
        if ![tenant_id, environment].into_iter().all(could_be_stored) {
            return Ok(0);
        }
        let mut conn = self
            .acquire(Operation::Select, Table::FlagEnvironments)
            .await?;
        let row = sqlx::query(
            "SELECT change_seq FROM flag_environments WHERE tenant_id = $1 AND environment = $2",
        )
        .bind(tenant_id)
        .bind(environment)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }
}

/// Takes the environment's next change number. The row lock this upsert holds until commit
/// serialises the environment's writers (see the module docs).
async fn next_change_seq(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &str,
    environment: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO flag_environments (tenant_id, environment, change_seq) VALUES ($1, $2, 1)
         ON CONFLICT (tenant_id, environment)
         DO UPDATE SET change_seq = flag_environments.change_seq + 1
         RETURNING change_seq",
    )
    .bind(tenant_id)
    .bind(environment)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| crate::weber::foreign_key_or(e, tenant_id))?;
    Ok(row.try_get(0)?)
}

/// The flag as the writing transaction sees it, checked against the expected version.
async fn current_flag(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &str,
    environment: &str,
    key: &str,
    expected_version: Option<i64>,
) -> Result<FlagRecord, StoreError> {
    let current = sqlx::query(&format!(
        "SELECT {FLAG_COLUMNS} FROM flags
         WHERE tenant_id = $1 AND environment = $2 AND flag_key = $3"
    ))
    .bind(tenant_id)
    .bind(environment)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| flag_from_row(&row))
    .transpose()?
    .ok_or_else(|| StoreError::NotFound {
        what: format!("flag '{key}' in environment '{environment}'"),
    })?;
    match expected_version {
        Some(expected) if expected != current.version => Err(StoreError::VersionMismatch {
            what: format!("flag '{key}'"),
            expected,
            current: Some(current.version),
        }),
        _ => Ok(current),
    }
}

/// The conditional write matched no row: another writer changed the flag after it was read.
fn lost_race(key: &str, expected_version: Option<i64>, read_version: i64) -> StoreError {
    StoreError::VersionMismatch {
        what: format!("flag '{key}'"),
        expected: expected_version.unwrap_or(read_version),
        current: None,
    }
}

async fn insert_audit(tx: &mut Transaction<'_, Any>, change: Change<'_>) -> Result<(), StoreError> {
    let empty = Value::Object(serde_json::Map::new());
    let diff = json_diff(
        change.before.map_or(&empty, |(_, v)| v),
        change.after.map_or(&empty, |(_, v)| v),
    );
    let diff_json = serde_json::to_string(&diff).map_err(|e| StoreError::Invalid {
        field: "definition",
        reason: format!("cannot encode its changes: {e}"),
    })?;
    sqlx::query(
        "INSERT INTO flag_audit (tenant_id, environment, seq, flag_key, version, action, actor,
                                 at_ms, before_json, after_json, diff_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(change.tenant_id)
    .bind(change.environment)
    .bind(change.seq)
    .bind(change.key)
    .bind(change.version)
    .bind(change.action.as_str())
    .bind(change.actor)
    .bind(change.at_ms)
    .bind(change.before.map(|(text, _)| text))
    .bind(change.after.map(|(text, _)| text))
    .bind(diff_json)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn flag_from_row(row: &AnyRow) -> Result<FlagRecord, StoreError> {
    Ok(FlagRecord {
        tenant_id: row.try_get(0)?,
        environment: row.try_get(1)?,
        key: row.try_get(2)?,
        definition_json: row.try_get(3)?,
        version: row.try_get(4)?,
        change_seq: row.try_get(5)?,
        created_at_ms: row.try_get(6)?,
        updated_at_ms: row.try_get(7)?,
        updated_by: row.try_get(8)?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<FlagAuditRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "flag_audit",
        reason,
    };
    let action: String = row.try_get(4)?;
    let diff_json: String = row.try_get(9)?;
    Ok(FlagAuditRecord {
        seq: row.try_get(0)?,
        environment: row.try_get(1)?,
        flag_key: row.try_get(2)?,
        version: row.try_get(3)?,
        action: FlagAction::parse(&action)
            .ok_or_else(|| corrupt(format!("unknown action '{action}'")))?,
        actor: row.try_get(5)?,
        at_ms: row.try_get(6)?,
        before_json: row.try_get(7)?,
        after_json: row.try_get(8)?,
        diff: serde_json::from_str(&diff_json).map_err(|e| corrupt(format!("diff: {e}")))?,
    })
}

fn validate_ids(
    tenant_id: &str,
    environment: &str,
    key: &str,
    actor: &str,
) -> Result<(), StoreError> {
    if !could_be_stored(tenant_id) {
        return Err(StoreError::NotFound {
            what: format!("tenant '{}'", tenant_id.escape_debug()),
        });
    }
    validate_name("environment", environment)?;
    validate_name("key", key)?;
    if actor.is_empty()
        || actor.chars().count() > MAX_NAME_CHARS
        || actor.contains(char::is_control)
    {
        return Err(StoreError::Invalid {
            field: "actor",
            reason: format!("must be 1 to {MAX_NAME_CHARS} printable characters"),
        });
    }
    Ok(())
}

/// Flag keys and environment names: the flags crate's key alphabet, `[A-Za-z0-9_.-]`.
pub(crate) fn validate_name(field: &'static str, value: &str) -> Result<(), StoreError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_CHARS
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            field,
            reason: format!("use 1 to {MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '_', '.', '-'"),
        })
    }
}

/// Checks what the store relies on: a JSON object of bounded size whose `key`, if it has one,
/// is the flag's key.
fn parse_definition(key: &str, json: &str) -> Result<Value, StoreError> {
    let invalid = |reason: String| StoreError::Invalid {
        field: "definition",
        reason,
    };
    if json.len() > MAX_FLAG_DEFINITION_BYTES {
        return Err(invalid(format!(
            "is {} bytes, more than the {MAX_FLAG_DEFINITION_BYTES} allowed",
            json.len()
        )));
    }
    let value: Value =
        serde_json::from_str(json).map_err(|e| invalid(format!("is not JSON: {e}")))?;
    let Value::Object(members) = &value else {
        return Err(invalid("must be a JSON object".to_owned()));
    };
    match members.get("key") {
        None => {}
        Some(Value::String(k)) if k == key => {}
        Some(other) => {
            return Err(invalid(format!(
                "has key {other}, but the flag's key is \"{key}\""
            )))
        }
    }
    // No NUL check needed (PostgreSQL text cannot hold one): JSON rejects raw control
    // characters, and an escaped `\u0000` is plain text.
    Ok(value)
}

fn parse_stored(json: &str) -> Result<Value, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        table: "flags",
        reason: format!("definition is not JSON: {e}"),
    })
}
