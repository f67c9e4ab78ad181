//! Tenants' data keys for encryption at rest, as stored: wrapped by a master key (the `vault`
//! crate wraps and unwraps; the store never sees a key in clear).
//!
//! A tenant has at most one `active` key (new values are sealed with it; a partial unique
//! index holds this), any number of `retired` ones (superseded by a rotation, still opening
//! what they sealed until re-encryption has moved it), and `destroyed` ones, whose wrapped
//! bytes are erased: crypto-shredding, after which what they sealed can never be read. Each
//! change can append its audit records in the same transaction.

use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

use crate::audit::{append_audit_in, NewAuditRecord};
use crate::{now_ms, Operation, Store, StoreError, Table};

/// Where a data key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKeyState {
    Active,
    Retired,
    Destroyed,
}

impl DataKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKeyState::Active => "active",
            DataKeyState::Retired => "retired",
            DataKeyState::Destroyed => "destroyed",
        }
    }

    fn parse(text: &str) -> Result<DataKeyState, StoreError> {
        match text {
            "active" => Ok(DataKeyState::Active),
            "retired" => Ok(DataKeyState::Retired),
            "destroyed" => Ok(DataKeyState::Destroyed),
            other => Err(StoreError::Corrupt {
                table: "tenant_data_keys",
                reason: format!("unknown state '{other}'"),
            }),
        }
    }
}

/// A stored data key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub tenant_id: String,
    pub key_id: String,
    /// The keyring master key that wrapped it.
    pub master_key_id: String,
    /// The wrapped key (`vault::wrap_data_key`); `None` once destroyed.
    pub wrapped: Option<Vec<u8>>,
    pub created_ms: i64,
    pub state: DataKeyState,
    pub state_changed_ms: i64,
}

impl std::fmt::Debug for DataKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Wrapped bytes are ciphertext, but there is no reason to print them.
        f.debug_struct("DataKeyRecord")
            .field("tenant_id", &self.tenant_id)
            .field("key_id", &self.key_id)
            .field("master_key_id", &self.master_key_id)
            .field("wrapped", &self.wrapped.as_ref().map(|w| w.len()))
            .field("created_ms", &self.created_ms)
            .field("state", &self.state)
            .field("state_changed_ms", &self.state_changed_ms)
            .finish()
    }
}

/// A data key to add as the tenant's active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDataKey<'a> {
    pub key_id: &'a str,
    pub master_key_id: &'a str,
    pub wrapped: &'a [u8],
}

const COLUMNS: &str =
    "tenant_id, key_id, master_key_id, wrapped, created_ms, state, state_changed_ms";

fn key_from_row(row: &AnyRow) -> Result<DataKeyRecord, StoreError> {
    Ok(DataKeyRecord {
        tenant_id: row.try_get(0)?,
        key_id: row.try_get(1)?,
        master_key_id: row.try_get(2)?,
        wrapped: row.try_get(3)?,
        created_ms: row.try_get(4)?,
        state: DataKeyState::parse(&row.try_get::<String, _>(5)?)?,
        state_changed_ms: row.try_get(6)?,
    })
}

fn valid_key_id(id: &str) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            field: "key_id",
            reason: "use 1 to 64 of A-Z a-z 0-9 . _ -".to_owned(),
        })
    }
}

impl Store {
    /// Adds `key` as the tenant's active data key, retiring the active one if any, and appends
    /// `audit` to the tenant's log, all in one transaction.
    pub async fn add_data_key(
        &self,
        tenant_id: &str,
        key: NewDataKey<'_>,
        audit: &[NewAuditRecord],
    ) -> Result<DataKeyRecord, StoreError> {
        valid_key_id(key.key_id)?;
        valid_key_id(key.master_key_id)?;
        let now = now_ms();
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Insert, Table::TenantDataKeys)
            .await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "UPDATE tenant_data_keys SET state = 'retired', state_changed_ms = $2
             WHERE tenant_id = $1 AND state = 'active'",
        )
        .bind(tenant_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO tenant_data_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'active', $5)"
        ))
        .bind(tenant_id)
        .bind(key.key_id)
        .bind(key.master_key_id)
        .bind(key.wrapped.to_vec())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            crate::conflict_or(e, || {
                format!("data key '{}' of tenant '{tenant_id}'", key.key_id)
            })
        })?;
        append_audit_in(&mut tx, self.backend, tenant_id, audit).await?;
        tx.commit().await?;
        Ok(DataKeyRecord {
            tenant_id: tenant_id.to_owned(),
            key_id: key.key_id.to_owned(),
            master_key_id: key.master_key_id.to_owned(),
            wrapped: Some(key.wrapped.to_vec()),
            created_ms: now,
            state: DataKeyState::Active,
            state_changed_ms: now,
        })
    }

    /// The tenant's data keys, oldest first, destroyed ones included.
    pub async fn data_keys(&self, tenant_id: &str) -> Result<Vec<DataKeyRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::TenantDataKeys)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tenant_data_keys WHERE tenant_id = $1 ORDER BY created_ms, key_id"
        ))
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// One data key of the tenant.
    pub async fn data_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<Option<DataKeyRecord>, StoreError> {
        if !crate::could_be_stored(key_id) {
            return Ok(None);
        }
        let mut conn = self
            .acquire(Operation::Select, Table::TenantDataKeys)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tenant_data_keys WHERE tenant_id = $1 AND key_id = $2"
        ))
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
    }

    /// The tenant's active data key, if it has one.
    pub async fn active_data_key(
        &self,
        tenant_id: &str,
    ) -> Result<Option<DataKeyRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::TenantDataKeys)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tenant_data_keys WHERE tenant_id = $1 AND state = 'active'"
        ))
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| key_from_row(&row))
        .transpose()
    }

    /// Retires an active data key (nothing new is sealed with it; it still opens what it
    /// sealed). Returns whether it changed; retired and destroyed keys stay as they are.
    pub async fn retire_data_key(&self, tenant_id: &str, key_id: &str) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::TenantDataKeys)
            .await?;
        let changed = sqlx::query(
            "UPDATE tenant_data_keys SET state = 'retired', state_changed_ms = $3
             WHERE tenant_id = $1 AND key_id = $2 AND state = 'active'",
        )
        .bind(tenant_id)
        .bind(key_id)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Crypto-shredding: erases the wrapped bytes of the tenant's data keys named in `key_ids`
    /// and marks them destroyed, appending `audit` in the same transaction. Returns how many
    /// keys were destroyed by this call (already destroyed ones are not counted).
    pub async fn destroy_data_keys(
        &self,
        tenant_id: &str,
        key_ids: &[String],
        audit: &[NewAuditRecord],
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::TenantDataKeys)
            .await?;
        let mut tx = conn.begin().await?;
        let mut destroyed = 0;
        for key_id in key_ids {
            destroyed += sqlx::query(
                "UPDATE tenant_data_keys SET state = 'destroyed', wrapped = NULL, state_changed_ms = $3
                 WHERE tenant_id = $1 AND key_id = $2 AND state <> 'destroyed'",
            )
            .bind(tenant_id)
            .bind(key_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        append_audit_in(&mut tx, self.backend, tenant_id, audit).await?;
        tx.commit().await?;
        Ok(destroyed)
    }

    /// Replaces a data key's wrapping (master key rotation) if it is still wrapped by
    /// `expected_master_key_id`; returns whether it changed.
    pub async fn rewrap_data_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        expected_master_key_id: &str,
        master_key_id: &str,
        wrapped: &[u8],
    ) -> Result<bool, StoreError> {
        valid_key_id(master_key_id)?;
        let _turn = self.write_turn().await;
        let mut conn = self
            .acquire(Operation::Update, Table::TenantDataKeys)
            .await?;
        let changed = sqlx::query(
            "UPDATE tenant_data_keys SET master_key_id = $4, wrapped = $5
             WHERE tenant_id = $1 AND key_id = $2 AND master_key_id = $3 AND state <> 'destroyed'",
        )
        .bind(tenant_id)
        .bind(key_id)
        .bind(expected_master_key_id)
        .bind(master_key_id)
        .bind(wrapped.to_vec())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Operator view for master key rotation: every tenant's live data keys not wrapped by
    /// `master_key_id`.
    pub async fn operator_data_keys_not_wrapped_by(
        &self,
        master_key_id: &str,
    ) -> Result<Vec<DataKeyRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::TenantDataKeys)
            .await?;
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tenant_data_keys
             WHERE master_key_id <> $1 AND state <> 'destroyed' ORDER BY tenant_id, key_id"
        ))
        .bind(master_key_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }
}
