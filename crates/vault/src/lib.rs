//! # vault: encryption at rest
//!
//! Envelope encryption for free text: AES-256-GCM with random 96-bit nonces, the owner (tenant,
//! record, field) bound as associated data so ciphertexts cannot be moved between rows, per-tenant
//! data keys wrapped by a master key from a keyring, and a key id on every envelope so keys can
//! be rotated and retired.
//!
//! Pure: no I/O and no randomness of its own; callers pass nonces and fresh keys in.
#![forbid(unsafe_code)]
