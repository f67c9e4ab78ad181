//! # vault: encryption at rest
//!
//! Envelope encryption for free text: AES-256-GCM with random 96-bit nonces, the owner (tenant,
//! record, field) bound as associated data so ciphertexts cannot be moved between rows, per-tenant
//! data keys wrapped by a master key from a [`Keyring`], and a key id on every envelope so keys can
//! be rotated and retired.
//!
//! - [`Keyring`]: master keys from TOML or the environment, validated (32-byte keys, unique ids,
//!   exactly one active); secrets never appear in `Debug` output;
//! - [`wrap_data_key`] / [`unwrap_data_key`]: a tenant's data key sealed under a master key, the
//!   tenant and data key id as associated data;
//! - [`seal`] / [`Envelope::open`]: a field's value sealed under a data key, the tenant, record id
//!   and field name as associated data.
//!
//! Every failure is an error that says which: [`VaultError::UnknownKey`],
//! [`VaultError::AuthenticationFailed`] (wrong key, or tampered bytes) or [`VaultError::Malformed`];
//! never garbage plaintext.
//!
//! ```
//! use vault::{seal, Envelope, SecretKey, Owner};
//! let key = SecretKey::from_bytes([7; 32]);
//! let owner = Owner { tenant_id: "tn_1", record_id: "fb_1", field: "text" };
//! let sealed = seal("dk_1", &key, &owner, b"call me at 555-0100", [1; 12]).unwrap();
//! let envelope = Envelope::parse(sealed.as_bytes()).unwrap();
//! assert_eq!(envelope.key_id(), "dk_1");
//! assert_eq!(envelope.open(&key, &owner).unwrap(), b"call me at 555-0100");
//! let elsewhere = Owner { record_id: "fb_2", ..owner };
//! assert!(envelope.open(&key, &elsewhere).is_err());
//! ```
//!
//! Pure: no I/O and no randomness of its own; callers pass nonces and fresh keys in.
#![forbid(unsafe_code)]

mod envelope;
mod keyring;

pub use envelope::{seal, unwrap_data_key, wrap_data_key, Envelope, Owner, Sealed, NONCE_LEN};
pub use keyring::{valid_key_id, Keyring, KeyringError, MasterKey, SecretKey, KEY_LEN};

/// Why a key could not be unwrapped or a value opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The bytes name a key this keyring or tenant does not have (removed, or never known).
    #[error("key '{key_id}' is not available")]
    UnknownKey { key_id: String },
    /// The key is not the one the bytes were sealed with, or the bytes (or the row they were
    /// bound to) were changed.
    #[error("authentication failed: wrong key, or the ciphertext was altered or moved")]
    AuthenticationFailed,
    /// The bytes are not an envelope of a version this release reads.
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
}
