//! Offline verification of a whole log.
//!
//! Given a tenant's records in `seq` order with their stored leaf hashes, the log head the
//! store keeps, the checkpoints it signed, and checkpoints kept outside (by witnesses, or
//! exported earlier with `signalbox audit checkpoint`), [`LogVerifier`] recomputes every leaf
//! hash, checks that `seq` runs 0, 1, 2, … without gaps or repeats, rebuilds the tree, compares
//! its root with every checkpoint at that checkpoint's size, and finally checks that the log is
//! at least as long as every checkpoint says. The first failure stops it and names the record:
//!
//! | tampering                                  | caught as                               |
//! |--------------------------------------------|-----------------------------------------|
//! | a field edited in place                    | [`VerifyFailure::Edited`] at that seq   |
//! | a field edited, leaf hash recomputed       | [`VerifyFailure::RootMismatch`] at the first checkpoint after it |
//! | a row deleted                              | [`VerifyFailure::Missing`] at its seq   |
//! | a row inserted past the head               | [`VerifyFailure::BeyondHead`]           |
//! | two rows' seq swapped                      | [`VerifyFailure::Edited`] at the lower seq (seq is in the leaf) |
//! | the tail cut off, head and checkpoints too | [`VerifyFailure::Truncated`] against a trusted checkpoint |
//! | a checkpoint forged                        | [`VerifyFailure::BadCheckpoint`]        |
//!
//! Memory is O(log n) plus the checkpoints, so it streams logs of any length.

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::merkle::{Frontier, Hash, EMPTY_ROOT};
use crate::record::AuditRecord;

/// Where a tree head the log is checked against came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointSource {
    /// The head the store keeps (`audit_heads`): size and root, unsigned.
    Head,
    /// A checkpoint signed by the log and stored beside it.
    Stored,
    /// A checkpoint kept outside the database (a witness's copy, an exported file).
    Trusted,
}

impl std::fmt::Display for CheckpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckpointSource::Head => "stored head",
            CheckpointSource::Stored => "stored checkpoint",
            CheckpointSource::Trusted => "trusted checkpoint",
        })
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("it belongs to tenant '{found}', not this log's")]
    WrongTenant { found: String },
    #[error("its content does not match its stored leaf hash (edited)")]
    Edited,
    #[error("it is missing: the records run on at seq {next_found} (deleted)")]
    Missing { next_found: u64 },
    #[error("it appears again after record {after} (inserted or reordered)")]
    Duplicate { after: u64 },
    #[error("it lies beyond the log head of {head_size} records (inserted outside the log)")]
    BeyondHead { head_size: u64 },
    #[error("the tree of the first {size} records does not match the {kind} of that size: a record from this one on was changed and its leaf hash rewritten")]
    RootMismatch { size: u64, kind: CheckpointSource },
    #[error(
        "it is missing: the log ends here but a {kind} vouches for {size} records (truncated)"
    )]
    Truncated { size: u64, kind: CheckpointSource },
    #[error("the {kind} of size {size} is not valid: {reason}")]
    BadCheckpoint {
        size: u64,
        kind: CheckpointSource,
        reason: CheckpointError,
    },
    #[error("the {kind} of size {size} is for log '{origin}', not this one")]
    WrongOrigin {
        size: u64,
        kind: CheckpointSource,
        origin: String,
    },
    #[error("it cannot be read: {reason}")]
    Corrupt { reason: String },
}

/// The first problem found, and the record it is about (`None`: a checkpoint, before any
/// record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct VerifyError {
    pub seq: Option<u64>,
    pub failure: VerifyFailure,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "record {seq}: {}", self.failure),
            None => write!(f, "{}", self.failure),
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    pub records: u64,
    pub root: Hash,
    /// Tree heads compared (head, stored and trusted checkpoints).
    pub heads_checked: usize,
    /// The largest trusted checkpoint the log was checked against.
    pub largest_trusted: Option<u64>,
}

/// Streams a log through the checks; see the module docs.
pub struct LogVerifier {
    tenant_id: String,
    frontier: Frontier,
    head_size: Option<u64>,
    /// (size, root, source), sorted by size.
    heads: Vec<(u64, Hash, CheckpointSource)>,
    cursor: usize,
    /// Size of the last tree head that matched: the first record a root mismatch can blame.
    last_matched: u64,
    largest_trusted: Option<u64>,
}

impl LogVerifier {
    /// Checks the checkpoints' signatures and origins with `key` and prepares the run.
    /// `head` is the store's (size, root) when it has one.
    pub fn new(
        tenant_id: &str,
        origin: &str,
        key: &VerifyingKey,
        head: Option<(u64, Hash)>,
        stored: &[SignedCheckpoint],
        trusted: &[SignedCheckpoint],
    ) -> Result<LogVerifier, VerifyError> {
        let mut heads = Vec::with_capacity(stored.len() + trusted.len() + 1);
        if let Some((size, root)) = head {
            heads.push((size, root, CheckpointSource::Head));
        }
        for (list, source) in [
            (stored, CheckpointSource::Stored),
            (trusted, CheckpointSource::Trusted),
        ] {
            for signed in list {
                let cp = &signed.checkpoint;
                if cp.origin != origin {
                    return Err(VerifyError {
                        seq: None,
                        failure: VerifyFailure::WrongOrigin {
                            size: cp.size,
                            kind: source,
                            origin: cp.origin.clone(),
                        },
                    });
                }
                signed.verify(key).map_err(|reason| VerifyError {
                    seq: None,
                    failure: VerifyFailure::BadCheckpoint {
                        size: cp.size,
                        kind: source,
                        reason,
                    },
                })?;
                heads.push((cp.size, cp.root, source));
            }
        }
        heads.sort_by_key(|(size, _, _)| *size);
        let largest_trusted = trusted.iter().map(|c| c.checkpoint.size).max();
        let mut verifier = LogVerifier {
            tenant_id: tenant_id.to_owned(),
            frontier: Frontier::new(),
            head_size: head.map(|(size, _)| size),
            heads,
            cursor: 0,
            last_matched: 0,
            largest_trusted,
        };
        verifier.check_heads()?;
        Ok(verifier)
    }

    /// How many records have passed so far.
    pub fn records(&self) -> u64 {
        self.frontier.size()
    }

    /// The next record, in `seq` order, with the leaf hash stored beside it.
    pub fn push(&mut self, record: &AuditRecord, stored_leaf: &Hash) -> Result<(), VerifyError> {
        let expected = self.frontier.size();
        let fail = |seq, failure| {
            Err(VerifyError {
                seq: Some(seq),
                failure,
            })
        };
        if record.seq != expected {
            return if record.seq > expected {
                fail(
                    expected,
                    VerifyFailure::Missing {
                        next_found: record.seq,
                    },
                )
            } else {
                fail(
                    record.seq,
                    VerifyFailure::Duplicate {
                        after: expected.saturating_sub(1),
                    },
                )
            };
        }
        if let Some(head_size) = self.head_size {
            if expected >= head_size {
                return fail(expected, VerifyFailure::BeyondHead { head_size });
            }
        }
        if record.tenant_id != self.tenant_id {
            return fail(
                expected,
                VerifyFailure::WrongTenant {
                    found: record.tenant_id.clone(),
                },
            );
        }
        let leaf = record.leaf_hash();
        if &leaf != stored_leaf {
            return fail(expected, VerifyFailure::Edited);
        }
        self.frontier.append(leaf);
        self.check_heads()
    }

    /// Compares the tree with every head of its current size.
    fn check_heads(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        let mut root = None;
        while let Some(&(cp_size, cp_root, source)) = self.heads.get(self.cursor) {
            if cp_size != size {
                break;
            }
            let root = *root.get_or_insert_with(|| {
                if size == 0 {
                    EMPTY_ROOT
                } else {
                    self.frontier.root()
                }
            });
            if root != cp_root {
                return Err(VerifyError {
                    seq: Some(self.last_matched),
                    failure: VerifyFailure::RootMismatch {
                        size: cp_size,
                        kind: source,
                    },
                });
            }
            self.cursor += 1;
        }
        if root.is_some() {
            self.last_matched = size;
        }
        Ok(())
    }

    /// Ends the run: every head must have been reached.
    pub fn finish(self) -> Result<VerifiedLog, VerifyError> {
        let size = self.frontier.size();
        // The largest head not reached names the truncation; trusted ones first, since a
        // truncation that also rewrote the head and stored checkpoints is only visible there.
        let unreached = &self.heads[self.cursor..];
        let worst = unreached
            .iter()
            .filter(|(_, _, s)| *s == CheckpointSource::Trusted)
            .chain(unreached.iter())
            .next();
        if let Some(&(cp_size, _, source)) = worst {
            return Err(VerifyError {
                seq: Some(size),
                failure: VerifyFailure::Truncated {
                    size: cp_size,
                    kind: source,
                },
            });
        }
        Ok(VerifiedLog {
            records: size,
            root: self.frontier.root(),
            heads_checked: self.heads.len(),
            largest_trusted: self.largest_trusted,
        })
    }
}

/// Verifies a whole log held in memory: records in `seq` order, each with its stored leaf
/// hash. See [`LogVerifier`] to stream one instead.
pub fn verify_log(
    tenant_id: &str,
    origin: &str,
    key: &VerifyingKey,
    records: &[(AuditRecord, Hash)],
    head: Option<(u64, Hash)>,
    stored: &[SignedCheckpoint],
    trusted: &[SignedCheckpoint],
) -> Result<VerifiedLog, VerifyError> {
    let mut verifier = LogVerifier::new(tenant_id, origin, key, head, stored, trusted)?;
    for (record, leaf) in records {
        verifier.push(record, leaf)?;
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    const ORIGIN: &str = "signalbox/audit/tn_1";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn log(n: u64) -> Vec<(AuditRecord, Hash)> {
        (0..n)
            .map(|seq| {
                let r = AuditRecord {
                    tenant_id: "tn_1".into(),
                    seq,
                    at_ms: 1_000 + seq as i64,
                    item_id: format!("fb_{}", seq / 3),
                    event: ["received", "redacted", "scored"][seq as usize % 3].into(),
                    actor: "key_1".into(),
                    detail_hash: [seq as u8; 32],
                };
                let leaf = r.leaf_hash();
                (r, leaf)
            })
            .collect()
    }

    fn head_of(records: &[(AuditRecord, Hash)]) -> (u64, Hash) {
        let leaves: Vec<Hash> = records.iter().map(|(_, l)| *l).collect();
        (leaves.len() as u64, crate::merkle::root_of(&leaves))
    }

    fn signed(records: &[(AuditRecord, Hash)], size: usize) -> SignedCheckpoint {
        let (_, root) = head_of(&records[..size]);
        Checkpoint {
            origin: ORIGIN.into(),
            size: size as u64,
            root,
            at_ms: 9,
        }
        .sign(&key())
        .unwrap()
    }

    fn verify(
        records: &[(AuditRecord, Hash)],
        head: Option<(u64, Hash)>,
        stored: &[SignedCheckpoint],
        trusted: &[SignedCheckpoint],
    ) -> Result<VerifiedLog, VerifyError> {
        verify_log(
            "tn_1",
            ORIGIN,
            &key().verifying_key(),
            records,
            head,
            stored,
            trusted,
        )
    }

    #[test]
    fn an_untouched_log_verifies_against_all_its_heads() {
        let records = log(20);
        let stored = [signed(&records, 5), signed(&records, 20)];
        let trusted = [signed(&records, 13)];
        let ok = verify(&records, Some(head_of(&records)), &stored, &trusted).unwrap();
        assert_eq!(ok.records, 20);
        assert_eq!(ok.heads_checked, 4);
        assert_eq!(ok.largest_trusted, Some(13));
        assert_eq!(verify(&[], None, &[], &[]).unwrap().root, EMPTY_ROOT);
    }

    #[test]
    fn each_kind_of_tampering_names_its_record() {
        let records = log(20);
        let head = Some(head_of(&records));
        let stored = [signed(&records, 20)];
        let seq_of = |r: Result<VerifiedLog, VerifyError>| r.unwrap_err().seq;

        let mut edited = records.clone();
        edited[7].0.event = "purged".into();
        assert_eq!(seq_of(verify(&edited, head, &stored, &[])), Some(7));

        let mut rehashed = records.clone();
        rehashed[7].0.at_ms += 1;
        rehashed[7].1 = rehashed[7].0.leaf_hash();
        let with_cp = [signed(&records, 5), signed(&records, 20)];
        let err = verify(&rehashed, head, &with_cp, &[]).unwrap_err();
        assert_eq!(
            err.seq,
            Some(5),
            "blames from the last matching head on: {err}"
        );
        assert!(matches!(
            err.failure,
            VerifyFailure::RootMismatch { size: 20, .. }
        ));

        let mut deleted = records.clone();
        deleted.remove(11);
        let err = verify(&deleted, head, &stored, &[]).unwrap_err();
        assert_eq!(err.seq, Some(11));
        assert_eq!(err.failure, VerifyFailure::Missing { next_found: 12 });

        let mut inserted = records.clone();
        let mut extra = records[19].0.clone();
        extra.seq = 20;
        let extra_leaf = extra.leaf_hash();
        inserted.push((extra, extra_leaf));
        let err = verify(&inserted, head, &stored, &[]).unwrap_err();
        assert_eq!(err.seq, Some(20));
        assert_eq!(err.failure, VerifyFailure::BeyondHead { head_size: 20 });

        let mut swapped = records.clone();
        swapped[3].0.seq = 9;
        swapped[9].0.seq = 3;
        swapped.sort_by_key(|(r, _)| r.seq);
        assert_eq!(seq_of(verify(&swapped, head, &stored, &[])), Some(3));

        let mut twice = records.clone();
        twice.insert(5, records[4].clone());
        let err = verify(&twice, head, &stored, &[]).unwrap_err();
        assert_eq!(err.seq, Some(4));
        assert!(matches!(err.failure, VerifyFailure::Duplicate { .. }));

        let mut foreign = records.clone();
        foreign[2].0.tenant_id = "tn_2".into();
        assert_eq!(seq_of(verify(&foreign, head, &stored, &[])), Some(2));
    }

    #[test]
    fn truncation_is_caught_only_by_a_checkpoint_kept_outside() {
        let records = log(20);
        let exported = signed(&records, 18);
        let cut = &records[..12];
        // The attacker rewrote the head and the stored checkpoints to match the cut log.
        let forged_stored = [signed(&records, 12)];
        assert!(verify(cut, Some(head_of(cut)), &forged_stored, &[]).is_ok());
        let err = verify(cut, Some(head_of(cut)), &forged_stored, &[exported]).unwrap_err();
        assert_eq!(err.seq, Some(12));
        assert_eq!(
            err.failure,
            VerifyFailure::Truncated {
                size: 18,
                kind: CheckpointSource::Trusted
            }
        );
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_is_rejected() {
        let records = log(8);
        let mut forged = signed(&records, 8);
        forged.checkpoint.size = 9;
        let err = verify(&records, None, &[], &[forged]).unwrap_err();
        assert!(matches!(
            err.failure,
            VerifyFailure::BadCheckpoint {
                reason: CheckpointError::BadSignature,
                ..
            }
        ));
        let other_key = Checkpoint {
            origin: ORIGIN.into(),
            size: 8,
            root: head_of(&records).1,
            at_ms: 1,
        }
        .sign(&SigningKey::from_bytes(&[4; 32]))
        .unwrap();
        assert!(verify(&records, None, &[other_key], &[]).is_err());
        let foreign = Checkpoint {
            origin: "signalbox/audit/tn_2".into(),
            ..signed(&records, 8).checkpoint
        }
        .sign(&key())
        .unwrap();
        assert!(matches!(
            verify(&records, None, &[], &[foreign]).unwrap_err().failure,
            VerifyFailure::WrongOrigin { .. }
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Editing any field of any record (without fixing the leaf hash) fails at that record.
        #[test]
        fn any_edit_fails_at_its_record(n in 1u64..60, pick in any::<prop::sample::Index>(), field in 0usize..5) {
            let records = log(n);
            let i = pick.index(n as usize);
            let mut bad = records.clone();
            let r = &mut bad[i].0;
            match field {
                0 => r.at_ms += 1,
                1 => r.event.push('x'),
                2 => r.item_id.push('x'),
                3 => r.actor.push('x'),
                _ => r.detail_hash[5] ^= 0x10,
            }
            let err = verify(&bad, Some(head_of(&records)), &[], &[]).unwrap_err();
            prop_assert_eq!(err.seq, Some(i as u64));
        }
    }
}
