//! # audit: tamper-evident logs
//!
//! A per-tenant append-only log whose integrity anyone can check offline: an RFC 6962 Merkle
//! tree over SHA-256 of each record's canonical encoding, inclusion and consistency proofs, and
//! Ed25519-signed checkpoints (tree size and root) that can be handed to outside witnesses,
//! because a bare hash chain cannot reveal that its tail was cut off. The log holds hashes and
//! event metadata, never content, so erasing content (crypto-shredding) keeps it verifiable.
//!
//! Pure: no I/O, no clock. Storage lives in `store`.
#![forbid(unsafe_code)]
