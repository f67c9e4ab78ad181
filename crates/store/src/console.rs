//! Web console sessions: an API key exchanged for a cookie.
//!
//! The cookie's value is a random secret the server hands out once; only its SHA-256 is stored,
//! so a database read does not yield a usable session. A session carries no rights of its own:
//! every read goes through the key it was made from, so revoking the key ends its sessions at
//! once, and the key's scopes (as they are now) decide what the session may do.

use sqlx::Row;

use crate::model::Principal;
use crate::observe::{Operation, Table};
use crate::{scopes_from_row, tenant_from_row, Store, StoreError};

/// A live console session as the server checks it on each request.
#[derive(Debug, Clone)]
pub struct ConsoleSessionRecord {
    /// Who the session acts for: the tenant and the key signed in with.
    pub principal: Principal,
    /// The synchronizer token every form of this session must carry.
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
}

/// A session to record at sign-in.
#[derive(Debug, Clone, Copy)]
pub struct NewConsoleSession<'a> {
    /// SHA-256 (hex) of the cookie's value.
    pub id_hash: &'a str,
    pub tenant_id: &'a str,
    pub key_id: &'a str,
    pub csrf_token: &'a str,
    pub now_ms: i64,
}

impl Store {
    /// Records a session made by signing in with `key_id`.
    pub async fn create_console_session(
        &self,
        session: NewConsoleSession<'_>,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .acquire(Operation::Insert, Table::ConsoleSessions)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, tenant_id, key_id, csrf_token, created_at_ms, last_seen_ms)
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(session.id_hash)
        .bind(session.tenant_id)
        .bind(session.key_id)
        .bind(session.csrf_token)
        .bind(session.now_ms)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The session whose cookie hashes to `id_hash`, if its key is still live. Like
    /// [`Store::authenticate_hash`], this read is not keyed by tenant: the hash is the
    /// credential, and the tenant comes from it. Expiry is the caller's rule (it knows the
    /// configured idle and maximum lifetimes).
    pub async fn console_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<ConsoleSessionRecord>, StoreError> {
        let mut conn = self
            .acquire(Operation::Select, Table::ConsoleSessions)
            .await?;
        let row = sqlx::query(
            "SELECT t.id, t.name, t.tier, t.created_at_ms, k.id, k.scopes, k.user_id,
                    s.csrf_token, s.created_at_ms, s.last_seen_ms
             FROM console_sessions s
             JOIN api_keys k ON k.id = s.key_id AND k.tenant_id = s.tenant_id
             JOIN tenants t ON t.id = s.tenant_id
             WHERE s.id_hash = $1 AND k.revoked_at_ms IS NULL",
        )
        .bind(id_hash)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ConsoleSessionRecord {
            principal: Principal {
                tenant: tenant_from_row(&row, 0)?,
                key_id: row.try_get(4)?,
                scopes: scopes_from_row(&row, 5)?,
                user_id: row.try_get(6)?,
            },
            csrf_token: row.try_get(7)?,
            created_at_ms: row.try_get(8)?,
            last_seen_ms: row.try_get(9)?,
        }))
    }

    /// Marks the session used at `now_ms` (the idle timeout counts from here).
    pub async fn touch_console_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .acquire(Operation::Update, Table::ConsoleSessions)
            .await?;
        sqlx::query("UPDATE console_sessions SET last_seen_ms = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Ends one session (sign-out, or an expired one found on use). Ending a missing session is
    /// not an error.
    pub async fn delete_console_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut conn = self
            .acquire(Operation::Delete, Table::ConsoleSessions)
            .await?;
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Removes every session idle since before `idle_before_ms` or made before
    /// `created_before_ms`, of every tenant (housekeeping). Returns how many went.
    pub async fn delete_expired_console_sessions(
        &self,
        idle_before_ms: i64,
        created_before_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .acquire(Operation::Delete, Table::ConsoleSessions)
            .await?;
        let done = sqlx::query(
            "DELETE FROM console_sessions WHERE last_seen_ms < $1 OR created_at_ms < $2",
        )
        .bind(idle_before_ms)
        .bind(created_before_ms)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }

    /// Test support: moves the sessions of `tenant_id` into the past, their creation by
    /// `created_ms` and their last use by `seen_ms`, so expiry can be tested without waiting.
    /// Returns how many sessions moved.
    #[cfg(feature = "test-support")]
    pub async fn backdate_console_sessions(
        &self,
        tenant_id: &str,
        created_ms: i64,
        seen_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .acquire(Operation::Update, Table::ConsoleSessions)
            .await?;
        let done = sqlx::query(
            "UPDATE console_sessions
             SET created_at_ms = created_at_ms - $2, last_seen_ms = last_seen_ms - $3
             WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .bind(created_ms)
        .bind(seen_ms)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }
}
