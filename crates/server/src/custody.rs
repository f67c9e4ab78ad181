//! Custody: encryption at rest and the tamper-evident audit log, for every service that keeps
//! personal data (the feedback service first).
//!
//! # API (stable; the feedback service builds on it)
//!
//! - [`Custody::seal_text`]`(tenant, record_id, field, text) -> Result<Sealed, CustodyError>`:
//!   AES-256-GCM under the tenant's active data key (created on first use, wrapped by the
//!   keyring's active master key), bound to tenant, record and field. Store
//!   [`Sealed::as_bytes`] and, for rotation, [`Sealed::key_id`].
//! - [`Custody::open_text`]`(tenant, record_id, field, bytes) -> Result<String, CustodyError>`:
//!   the clear text, or an error that says why not: [`CustodyError::Erased`] (the key was
//!   destroyed), [`CustodyError::UnknownMasterKey`], [`CustodyError::AuthenticationFailed`], ….
//! - [`Custody::rotate_data_key`]`(tenant, actor)`: a new active data key; older ones keep
//!   opening what they sealed until re-encryption has moved it and [`Custody::retire_data_key`]
//!   / [`Custody::destroy_data_keys`] is called.
//! - [`Custody::destroy_data_keys`]`(tenant, key_ids, actor)`: crypto-shredding.
//! - [`Custody::rewrap_all`]: after a new master key became active (`signalbox keyring rewrap`).
//! - [`Custody::checkpoint`]`(tenant)`: sign the tenant's log head and store it.
//! - [`Custody::verify`]`(tenant, trusted)`: check the whole log ([`store::Store::verify_audit_log`]).
//! - Audit records are appended by the store, in the transaction of the change they record:
//!   `store::NewAuditRecord` and `crate::audit::append_audit_in` inside `store`, or
//!   [`store::Store::append_audit`] on its own.
//!
//! Key material comes from [`CustodySettings`]: the binary reads `SIGNALBOX_KEYRING` (a
//! keyring file), `SIGNALBOX_MASTER_KEY` (`id:base64`) and `SIGNALBOX_AUDIT_SIGNING_KEY` (a
//! signing key file), or generates both files once in the data directory
//! ([`load_or_generate_keys`]). Secrets never reach a log: the types holding them print
//! `<redacted>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use audit::{Checkpoint, Event, SignedCheckpoint, SigningKey, VerifyingKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use moka::sync::Cache;
use rand::RngCore;
use store::{DataKeyState, NewAuditRecord, NewDataKey, Store, StoreError, StoredCheckpoint};
use vault::{Envelope, Keyring, MasterKey, Owner, SecretKey, VaultError};

pub use vault::Sealed;

use crate::problem::{ApiError, ProblemKind};

/// Where custody's keys come from and how often heads are signed.
#[derive(Clone)]
pub struct CustodySettings {
    /// The keyring and the audit signing key; `None` generates throwaway ones in memory at
    /// start (tests and embedders that never restart on the same data), with a warning.
    pub keys: Option<CustodyKeys>,
    /// How often the checkpointer signs the heads that moved.
    pub checkpoint_interval: Duration,
    /// The first part of every log's origin: `<prefix>/<tenant id>`.
    pub origin_prefix: String,
}

impl Default for CustodySettings {
    fn default() -> Self {
        CustodySettings {
            keys: None,
            checkpoint_interval: Duration::from_secs(60),
            origin_prefix: DEFAULT_ORIGIN_PREFIX.to_owned(),
        }
    }
}

impl std::fmt::Debug for CustodySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodySettings")
            .field("keys", &self.keys)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("origin_prefix", &self.origin_prefix)
            .finish()
    }
}

/// The origin prefix unless configured.
pub const DEFAULT_ORIGIN_PREFIX: &str = "signalbox/audit";

/// The master keys and the audit log's signing key.
#[derive(Clone)]
pub struct CustodyKeys {
    pub keyring: Keyring,
    pub signing_key: SigningKey,
}

impl std::fmt::Debug for CustodyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodyKeys")
            .field("keyring", &self.keyring)
            .field("signing_key", &"<redacted>")
            .field(
                "public_key",
                &B64.encode(self.signing_key.verifying_key().as_bytes()),
            )
            .finish()
    }
}

impl CustodyKeys {
    /// Fresh keys from the OS generator: one master key (`id`) and a signing key.
    pub fn generate(master_key_id: &str) -> Result<CustodyKeys, vault::KeyringError> {
        let keyring = Keyring::new(vec![MasterKey {
            id: master_key_id.to_owned(),
            key: random_key(),
            active: true,
        }])?;
        Ok(CustodyKeys {
            keyring,
            signing_key: SigningKey::from_bytes(random_key().expose()),
        })
    }
}

/// Why sealing, opening or a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// The data key was destroyed (crypto-shredding): the value can never be read again.
    #[error("the value was erased: its data key {key_id} was destroyed")]
    Erased { key_id: String },
    /// The envelope names a data key the tenant does not have.
    #[error("data key {key_id} is not one of this tenant's keys")]
    UnknownDataKey { key_id: String },
    /// The data key is wrapped by a master key that is not in the keyring.
    #[error("master key {master_key_id} (which wraps data key {key_id}) is not in the keyring; add it back to read this value")]
    UnknownMasterKey {
        master_key_id: String,
        key_id: String,
    },
    /// The keyring has a master key of that id, but it does not unwrap the data key.
    #[error("master key {master_key_id} does not unwrap data key {key_id}: the keyring holds another secret under that id, or the wrapped key was altered")]
    WrongMasterKey {
        master_key_id: String,
        key_id: String,
    },
    /// The value does not authenticate: altered, or moved from another record or field.
    #[error(
        "the value does not authenticate: it was altered, or belongs to another record or field"
    )]
    AuthenticationFailed,
    /// The bytes are not an envelope, or not text.
    #[error("the stored value is malformed: {0}")]
    Malformed(String),
    #[error("cannot sign the checkpoint: {0}")]
    Checkpoint(#[from] audit::CheckpointError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CustodyError> for ApiError {
    fn from(e: CustodyError) -> ApiError {
        match e {
            CustodyError::Store(e) => ApiError::from(e),
            CustodyError::Erased { .. } => ApiError::new(ProblemKind::Gone, e.to_string()),
            other => {
                tracing::error!(error = %other, "custody failure");
                ApiError::internal()
            }
        }
    }
}

/// What [`Custody::rewrap_all`] did.
#[derive(Debug, Default)]
pub struct RewrapReport {
    pub rewrapped: u64,
    /// (tenant, data key, why) for each key left as it was.
    pub failed: Vec<(String, String, CustodyError)>,
}

/// Encryption at rest and the audit log's signatures; see the module docs. Cheap to share
/// behind an `Arc`.
pub struct Custody {
    store: Store,
    keyring: Keyring,
    signing_key: SigningKey,
    origin_prefix: String,
    /// (tenant, data key id) -> unwrapped key. Short-lived, so a key destroyed through another
    /// replica stops opening here within a minute; this replica's own destructions evict at
    /// once.
    keys: Cache<(String, String), Arc<SecretKey>>,
    /// tenant -> its active data key id.
    active: Cache<String, String>,
    /// Serialises first-use key creation in this process, so concurrent first seals of a
    /// tenant make one key.
    creating: tokio::sync::Mutex<()>,
}

const KEY_CACHE_TTL: Duration = Duration::from_secs(60);

fn random_key() -> SecretKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretKey::from_bytes(bytes)
}

fn random_nonce() -> [u8; vault::NONCE_LEN] {
    let mut nonce = [0u8; vault::NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

impl Custody {
    /// Custody over `store` with `settings`' keys, or throwaway ones.
    pub fn new(store: Store, settings: &CustodySettings) -> Result<Custody, vault::KeyringError> {
        let keys = match &settings.keys {
            Some(keys) => keys.clone(),
            None => {
                tracing::warn!(
                    "custody: no keyring or audit signing key configured; using throwaway keys \
                     held in memory, so values sealed now cannot be read after a restart"
                );
                CustodyKeys::generate("ephemeral")?
            }
        };
        Ok(Custody {
            store,
            keyring: keys.keyring,
            signing_key: keys.signing_key,
            origin_prefix: settings.origin_prefix.clone(),
            keys: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            active: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            creating: tokio::sync::Mutex::new(()),
        })
    }

    /// The log's origin for `tenant_id` (the checkpoint's first line).
    pub fn origin(&self, tenant_id: &str) -> String {
        format!("{}/{tenant_id}", self.origin_prefix)
    }

    /// The key checkpoints are verified with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// Signs a research report with the audit signing key (the key of
    /// `GET /api/v1/audit/public-key`); the canonical report file.
    pub fn sign_research_report(
        &self,
        report: &::feedback::report::Report,
    ) -> Result<String, ::feedback::report::ReportError> {
        ::feedback::report::sign(report, &self.signing_key)
    }

    /// The keyring (ids and which is active; `Debug` redacts secrets).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals `text` as the value of `field` of `record_id`, under the tenant's active data key
    /// (made on first use).
    pub async fn seal_text(
        &self,
        tenant_id: &str,
        record_id: &str,
        field: &str,
        text: &str,
    ) -> Result<Sealed, CustodyError> {
        let (key_id, key) = self.active_key(tenant_id).await?;
        vault::seal(
            &key_id,
            &key,
            &Owner {
                tenant_id,
                record_id,
                field,
            },
            text.as_bytes(),
            random_nonce(),
        )
        .map_err(|e| CustodyError::Malformed(e.to_string()))
    }

    /// Opens what [`Custody::seal_text`] sealed for the same tenant, record and field.
    pub async fn open_text(
        &self,
        tenant_id: &str,
        record_id: &str,
        field: &str,
        sealed: &[u8],
    ) -> Result<String, CustodyError> {
        let envelope =
            Envelope::parse(sealed).map_err(|e| CustodyError::Malformed(e.to_string()))?;
        let key = self.data_key(tenant_id, envelope.key_id()).await?;
        let bytes = envelope
            .open(
                &key,
                &Owner {
                    tenant_id,
                    record_id,
                    field,
                },
            )
            .map_err(|e| match e {
                VaultError::Malformed(m) => CustodyError::Malformed(m.to_owned()),
                _ => CustodyError::AuthenticationFailed,
            })?;
        String::from_utf8(bytes).map_err(|_| CustodyError::Malformed("not UTF-8 text".into()))
    }

    /// The data key id a sealed value names (for re-encryption and "which key" columns).
    pub fn sealed_key_id(sealed: &[u8]) -> Result<String, CustodyError> {
        Envelope::parse(sealed)
            .map(|e| e.key_id().to_owned())
            .map_err(|e| CustodyError::Malformed(e.to_string()))
    }

    /// The tenant's active data key, created on first use.
    async fn active_key(&self, tenant_id: &str) -> Result<(String, Arc<SecretKey>), CustodyError> {
        if let Some(key_id) = self.active.get(tenant_id) {
            if let Ok(key) = self.data_key(tenant_id, &key_id).await {
                return Ok((key_id, key));
            }
        }
        let _creating = self.creating.lock().await;
        let record = match self.store.active_data_key(tenant_id).await? {
            Some(record) => record,
            None => {
                self.add_key(
                    tenant_id,
                    "system",
                    serde_json::json!({"reason": "first_use"}),
                )
                .await?
            }
        };
        let key = self.unwrap_record(&record)?;
        self.active
            .insert(tenant_id.to_owned(), record.key_id.clone());
        Ok((record.key_id, key))
    }

    async fn add_key(
        &self,
        tenant_id: &str,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<store::DataKeyRecord, CustodyError> {
        let key_id = format!("dk_{}", uuid::Uuid::now_v7().simple());
        let master = self.keyring.active();
        let key = random_key();
        let wrapped = vault::wrap_data_key(master, tenant_id, &key_id, &key, random_nonce());
        let mut detail = detail;
        if let Some(map) = detail.as_object_mut() {
            map.insert("master_key_id".into(), master.id.clone().into());
        }
        let audit = [NewAuditRecord::new(
            now_ms(),
            key_id.clone(),
            Event::KeyRotated,
            actor,
            &detail,
        )];
        let record = self
            .store
            .add_data_key(
                tenant_id,
                NewDataKey {
                    key_id: &key_id,
                    master_key_id: &master.id,
                    wrapped: &wrapped,
                },
                &audit,
            )
            .await?;
        self.keys
            .insert((tenant_id.to_owned(), key_id), Arc::new(key));
        Ok(record)
    }

    fn unwrap_record(&self, record: &store::DataKeyRecord) -> Result<Arc<SecretKey>, CustodyError> {
        if let Some(key) = self
            .keys
            .get(&(record.tenant_id.clone(), record.key_id.clone()))
        {
            return Ok(key);
        }
        let wrapped = match (&record.state, &record.wrapped) {
            (DataKeyState::Destroyed, _) | (_, None) => {
                return Err(CustodyError::Erased {
                    key_id: record.key_id.clone(),
                })
            }
            (_, Some(wrapped)) => wrapped,
        };
        let key = vault::unwrap_data_key(
            &self.keyring,
            &record.master_key_id,
            &record.tenant_id,
            &record.key_id,
            wrapped,
        )
        .map_err(|e| match e {
            VaultError::UnknownKey { .. } => CustodyError::UnknownMasterKey {
                master_key_id: record.master_key_id.clone(),
                key_id: record.key_id.clone(),
            },
            VaultError::AuthenticationFailed => CustodyError::WrongMasterKey {
                master_key_id: record.master_key_id.clone(),
                key_id: record.key_id.clone(),
            },
            VaultError::Malformed(m) => CustodyError::Malformed(m.to_owned()),
        })?;
        let key = Arc::new(key);
        self.keys.insert(
            (record.tenant_id.clone(), record.key_id.clone()),
            key.clone(),
        );
        Ok(key)
    }

    async fn data_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<Arc<SecretKey>, CustodyError> {
        if let Some(key) = self.keys.get(&(tenant_id.to_owned(), key_id.to_owned())) {
            return Ok(key);
        }
        let record = self
            .store
            .data_key(tenant_id, key_id)
            .await?
            .ok_or_else(|| CustodyError::UnknownDataKey {
                key_id: key_id.to_owned(),
            })?;
        self.unwrap_record(&record)
    }

    /// Makes a new active data key for the tenant (the old one is retired: it still opens
    /// what it sealed). Returns the new key's id. The re-encryption job then moves values to
    /// it.
    pub async fn rotate_data_key(
        &self,
        tenant_id: &str,
        actor: &str,
    ) -> Result<String, CustodyError> {
        let _creating = self.creating.lock().await;
        let previous = self.store.active_data_key(tenant_id).await?;
        let record = self
            .add_key(
                tenant_id,
                actor,
                serde_json::json!({
                    "reason": "rotation",
                    "previous": previous.map(|p| p.key_id),
                }),
            )
            .await?;
        self.active
            .insert(tenant_id.to_owned(), record.key_id.clone());
        Ok(record.key_id)
    }

    /// Marks an active key retired (nothing new is sealed with it). Returns whether it
    /// changed.
    pub async fn retire_data_key(
        &self,
        tenant_id: &str,
        key_id: &str,
    ) -> Result<bool, CustodyError> {
        let changed = self.store.retire_data_key(tenant_id, key_id).await?;
        self.active.invalidate(tenant_id);
        Ok(changed)
    }

    /// Crypto-shredding: destroys the tenant's data keys `key_ids` (their wrapped bytes are
    /// erased), so every value sealed with them reads as [`CustodyError::Erased`] from now on.
    /// One `key_destroyed` audit record per key. Returns how many were destroyed.
    pub async fn destroy_data_keys(
        &self,
        tenant_id: &str,
        key_ids: &[String],
        actor: &str,
    ) -> Result<u64, CustodyError> {
        let now = now_ms();
        let audit: Vec<NewAuditRecord> = key_ids
            .iter()
            .map(|key_id| {
                NewAuditRecord::new(
                    now,
                    key_id.clone(),
                    Event::KeyDestroyed,
                    actor,
                    &serde_json::json!({"reason": "crypto_shredding"}),
                )
            })
            .collect();
        let destroyed = self
            .store
            .destroy_data_keys(tenant_id, key_ids, &audit)
            .await?;
        for key_id in key_ids {
            self.keys
                .invalidate(&(tenant_id.to_owned(), key_id.clone()));
        }
        self.active.invalidate(tenant_id);
        Ok(destroyed)
    }

    /// Master key rotation: rewraps every tenant's live data keys that are not wrapped by the
    /// keyring's active master key. Keys whose master key is missing or wrong are reported, not
    /// changed.
    pub async fn rewrap_all(&self) -> Result<RewrapReport, CustodyError> {
        let active = self.keyring.active();
        let mut report = RewrapReport::default();
        for record in self
            .store
            .operator_data_keys_not_wrapped_by(&active.id)
            .await?
        {
            let key = match self.unwrap_record(&record) {
                Ok(key) => key,
                Err(e) => {
                    report
                        .failed
                        .push((record.tenant_id.clone(), record.key_id.clone(), e));
                    continue;
                }
            };
            let wrapped = vault::wrap_data_key(
                active,
                &record.tenant_id,
                &record.key_id,
                &key,
                random_nonce(),
            );
            if self
                .store
                .rewrap_data_key(
                    &record.tenant_id,
                    &record.key_id,
                    &record.master_key_id,
                    &active.id,
                    &wrapped,
                )
                .await?
            {
                report.rewrapped += 1;
            }
        }
        Ok(report)
    }

    /// Signs the tenant's current head and stores the checkpoint, unless one of that size is
    /// stored already (then that one is returned).
    pub async fn checkpoint(&self, tenant_id: &str) -> Result<StoredCheckpoint, CustodyError> {
        let head = self.store.audit_head(tenant_id).await?;
        if let Some(existing) = self.store.audit_checkpoint(tenant_id, head.size).await? {
            return Ok(existing);
        }
        let at_ms = now_ms();
        let signed = Checkpoint {
            origin: self.origin(tenant_id),
            size: head.size,
            root: head.root,
            at_ms,
        }
        .sign(&self.signing_key)?;
        let stored = StoredCheckpoint {
            size: head.size,
            root: head.root,
            at_ms,
            note: signed.to_note(),
        };
        if self
            .store
            .insert_audit_checkpoint(tenant_id, &stored)
            .await?
        {
            Ok(stored)
        } else {
            // Another replica signed this size a moment ago; its note is the stored one.
            Ok(self
                .store
                .audit_checkpoint(tenant_id, head.size)
                .await?
                .unwrap_or(stored))
        }
    }

    /// Verifies the tenant's whole log against its stored head and checkpoints and the
    /// `trusted` ones kept outside. The outer error is the database's; the inner one names the
    /// first bad record.
    pub async fn verify(
        &self,
        tenant_id: &str,
        trusted: &[SignedCheckpoint],
    ) -> Result<Result<audit::VerifiedLog, audit::VerifyError>, CustodyError> {
        Ok(self
            .store
            .verify_audit_log(
                tenant_id,
                &self.origin(tenant_id),
                &self.verifying_key(),
                trusted,
            )
            .await?)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Signs a checkpoint for every tenant whose head moved since its last one, every
/// `checkpoint_interval`, until `stopped` resolves. Witnesses fetch the latest with
/// `GET /api/v1/audit/checkpoint`.
pub async fn run_audit_checkpointer(
    state: crate::AppState,
    stopped: impl std::future::Future<Output = ()>,
) {
    let interval = state.config().custody.checkpoint_interval;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        let heads = match state.store().operator_audit_heads().await {
            Ok(heads) => heads,
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpointer: cannot read the log heads");
                continue;
            }
        };
        for status in heads {
            if status.latest_checkpoint_size == Some(status.head.size) {
                continue;
            }
            match state.custody().checkpoint(&status.tenant_id).await {
                Ok(cp) => {
                    tracing::debug!(tenant_id = %status.tenant_id, size = cp.size, "audit checkpoint signed")
                }
                Err(e) => {
                    tracing::warn!(tenant_id = %status.tenant_id, error = %e, "audit checkpointer: cannot sign")
                }
            }
        }
    }
}

// ---- key files ------------------------------------------------------------------------------

/// The keyring file generated in the data directory when none is configured.
pub const KEYRING_FILE: &str = "keyring.toml";
/// The signing key file generated in the data directory when none is configured.
pub const SIGNING_KEY_FILE: &str = "audit-signing.key";

/// Why key material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Keyring {
        path: String,
        source: vault::KeyringError,
    },
    #[error("{path}: an audit signing key file holds the base64 of a 32-byte Ed25519 seed")]
    SigningKey { path: PathBuf },
}

/// Where each key came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Environment,
    Generated(PathBuf),
}

/// Reads a signing key file: the base64 of the 32-byte seed, one line.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_signing_key(&text).ok_or_else(|| KeyFileError::SigningKey {
        path: path.to_owned(),
    })
}

/// The text of a signing key file.
pub fn signing_key_text(key: &SigningKey) -> String {
    format!("{}\n", B64.encode(key.to_bytes()))
}

fn parse_signing_key(text: &str) -> Option<SigningKey> {
    let bytes = B64.decode(text.trim()).ok()?;
    let seed = <[u8; 32]>::try_from(bytes.as_slice()).ok()?;
    Some(SigningKey::from_bytes(&seed))
}

/// Reads a keyring file (TOML).
pub fn read_keyring(path: &Path) -> Result<Keyring, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    Keyring::from_toml(&text).map_err(|source| KeyFileError::Keyring {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `contents` to a new file only its owner can read; an existing file is an error
/// (key files are never overwritten).
pub fn write_private_new(path: &Path, contents: &str) -> Result<(), KeyFileError> {
    use std::io::Write;
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The custody keys from configuration, generating what is missing in `data_dir` once:
///
/// - keyring: the file `keyring_path`, else `master_key_env` (`id:base64[,id:base64…]`), else
///   `data_dir/keyring.toml`, generated (mode 0600) if missing;
/// - signing key: the file `signing_key_path`, else `data_dir/audit-signing.key`, generated
///   (mode 0600) if missing.
///
/// Returns the keys and where each came from; never logs or returns secrets in text.
pub fn load_or_generate_keys(
    keyring_path: Option<&Path>,
    master_key_env: Option<&str>,
    signing_key_path: Option<&Path>,
    data_dir: &Path,
) -> Result<(CustodyKeys, KeySource, KeySource), KeyFileError> {
    let (keyring, keyring_source) = match (keyring_path, master_key_env) {
        (Some(path), _) => (read_keyring(path)?, KeySource::File(path.to_owned())),
        (None, Some(value)) => (
            Keyring::from_env_value(value).map_err(|source| KeyFileError::Keyring {
                path: "SIGNALBOX_MASTER_KEY".to_owned(),
                source,
            })?,
            KeySource::Environment,
        ),
        (None, None) => {
            let path = data_dir.join(KEYRING_FILE);
            if path.exists() {
                (read_keyring(&path)?, KeySource::File(path))
            } else {
                let keyring = CustodyKeys::generate(&default_master_key_id())
                    .map_err(|source| KeyFileError::Keyring {
                        path: path.display().to_string(),
                        source,
                    })?
                    .keyring;
                write_private_new(&path, &keyring.to_toml())?;
                (keyring, KeySource::Generated(path))
            }
        }
    };
    let (signing_key, signing_source) = match signing_key_path {
        Some(path) => (read_signing_key(path)?, KeySource::File(path.to_owned())),
        None => {
            let path = data_dir.join(SIGNING_KEY_FILE);
            if path.exists() {
                (read_signing_key(&path)?, KeySource::File(path))
            } else {
                let key = SigningKey::from_bytes(random_key().expose());
                write_private_new(&path, &signing_key_text(&key))?;
                (key, KeySource::Generated(path))
            }
        }
    };
    Ok((
        CustodyKeys {
            keyring,
            signing_key,
        },
        keyring_source,
        signing_source,
    ))
}

/// A master key id from the current month (`k2026-12`): ids say when a key was made.
pub fn default_master_key_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("k{}-{:02}", now.year(), u8::from(now.month()))
}

/// A keyring of one fresh active master key, as TOML (`signalbox keyring generate`).
pub fn generate_keyring_toml(master_key_id: &str) -> Result<String, vault::KeyringError> {
    Ok(CustodyKeys::generate(master_key_id)?.keyring.to_toml())
}

/// The base64 of a public key, as `GET /api/v1/audit/public-key` gives it.
pub fn public_key_text(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

/// Reads a public key: base64 of its 32 bytes.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let bytes = B64.decode(text.trim()).ok()?;
    VerifyingKey::from_bytes(&<[u8; 32]>::try_from(bytes.as_slice()).ok()?).ok()
}
