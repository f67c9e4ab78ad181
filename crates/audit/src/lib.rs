//! # audit: tamper-evident logs
//!
//! A per-tenant append-only log whose integrity anyone can check offline: an RFC 6962 Merkle
//! tree over SHA-256 of each record's canonical encoding, inclusion and consistency proofs, and
//! Ed25519-signed checkpoints (tree size and root) that can be handed to outside witnesses,
//! because a bare hash chain cannot reveal that its tail was cut off. The log holds hashes and
//! event metadata, never content, so erasing content (crypto-shredding) keeps it verifiable.
//!
//! - [`record`]: the audit record and its canonical, versioned encoding ([`AuditRecord::leaf_hash`]);
//! - [`merkle`]: RFC 6962 hashing, the [`Frontier`] (O(log n) append state), tree heads,
//!   inclusion and consistency proofs and their verifiers (RFC 9162 §2.1.3, §2.1.4);
//! - [`checkpoint`]: signed tree heads in the C2SP signed-note text format;
//! - [`verify`]: offline verification of a whole log that names the first bad record.
//!
//! ```
//! use audit::{AuditRecord, Frontier};
//! let mut frontier = Frontier::new();
//! for seq in 0..3 {
//!     let record = AuditRecord {
//!         tenant_id: "tn_1".into(), seq, at_ms: 1_700_000_000_000, item_id: "fb_1".into(),
//!         event: "received".into(), actor: "key_1".into(), detail_hash: [0; 32],
//!     };
//!     frontier.append(record.leaf_hash());
//! }
//! assert_eq!(frontier.size(), 3);
//! ```
//!
//! Pure: no I/O, no clock. Storage lives in `store`.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod merkle;
pub mod record;
pub mod verify;

/// The Ed25519 key types checkpoints are signed and verified with.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

pub use checkpoint::{key_id, Checkpoint, CheckpointError, NoteSignature, SignedCheckpoint};
pub use merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_of, verify_consistency,
    verify_inclusion, Frontier, FrontierError, Hash, ProofError, EMPTY_ROOT,
};
pub use record::{detail_hash, AuditRecord, Event, ParseEventError, RECORD_VERSION};
pub use verify::{
    verify_log, CheckpointSource, LogVerifier, VerifiedLog, VerifyError, VerifyFailure,
};
